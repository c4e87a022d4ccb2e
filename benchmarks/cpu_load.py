"""A cpu-profile run gives the same val_bpb on a quiet machine and on a busy one.

Runs one cpu-profile `golfplan run` (the baseline, or --plugins) alone, then again while
competing CPU-bound processes (plain Python busy loops; one by default, --burners N) run beside
it, and prints both results and times side by side. The profile is capped by steps, so only the time may differ.

    python benchmarks/cpu_load.py [--plugins tidal,parallel,gqa] [--burners 1]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import subprocess
import sys
import tempfile
import time


def burn(stop_at: float) -> None:
    x = 0
    while time.time() < stop_at:
        x = (x * 1103515245 + 12345) % 2**31


def run(out: str, name: str, plugins: str | None) -> tuple[dict, float]:
    cmd = [sys.executable, "-m", "golfplan", "run", "--profile", "cpu", "--json", "--no-check", "--out", out,
           "--name", name, "--set", "progress_bar=false"]
    if plugins:
        cmd += ["--plugins", plugins]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"run failed: {p.stderr.strip().splitlines()[-1] if p.stderr.strip() else p.returncode}")
    return json.loads(p.stdout), wall


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--plugins", default=None)
    ap.add_argument("--burners", type=int, default=1, help="competing busy processes (default 1)")
    args = ap.parse_args()
    cores = args.burners
    with tempfile.TemporaryDirectory() as out:
        quiet, quiet_wall = run(out, "quiet", args.plugins)
        procs = [mp.Process(target=burn, args=(time.time() + 3600,)) for _ in range(cores)]
        for p in procs:
            p.start()
        try:
            busy, busy_wall = run(out, "busy", args.plugins)
        finally:
            for p in procs:
                p.terminate()
    same = quiet["val_bpb"] == busy["val_bpb"] and quiet["steps"] == busy["steps"]
    print(f"{'':8} {'val_bpb':>12} {'steps':>6} {'threads':>7} {'ms/step':>9} {'wall s':>7}")
    for label, r, wall in (("alone", quiet, quiet_wall), (f"+{cores} busy", busy, busy_wall)):
        print(f"{label:8} {r['val_bpb']:12.8f} {r['steps']:6d} {r['threads']!s:>7} {r['ms_per_step']:9.1f} {wall:7.1f}")
    print(f"identical val_bpb and steps: {'yes' if same else 'NO'}; busy/alone wall time: {busy_wall / quiet_wall:.2f}x")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
