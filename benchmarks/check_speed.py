"""How long `golfplan check` takes on the CPU (issue 4's targets: all five checks for
tidal,parallel,gqa in under 10 s on 2 cores, the compile trace in under 2 s; each U-wave
technique the checks refuse is refused with its reason in under 5 s).

Each combination runs in a fresh process (as `golfplan check` does), so import and first-trace
costs are counted. Prints one line per combination and the per-check times.

    python benchmarks/check_speed.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

COMBOS = [
    ("tidal,parallel,gqa", []),
    ("", []),
    ("layer_dropout", []),
    ("progressive_growing", []),
    ("layer_dropout", ["--allow-eager"]),
    ("weight_sharing", []),
    ("attention_recycling", []),
    ("mirror_training", []),
    ("head_pruning", []),
]


def main() -> int:
    print(f"{'plugins':<32} {'wall s':>7}  verdict  per-check seconds")
    for plugins, extra in COMBOS:
        cmd = [sys.executable, "-m", "golfplan", "check", "--json", *extra]
        if plugins:
            cmd += ["--plugins", plugins]
        t0 = time.perf_counter()
        p = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        try:
            out = json.loads(p.stdout)
        except json.JSONDecodeError:
            print(f"{plugins:<32} {wall:7.2f}  error: {p.stderr.strip().splitlines()[-1:]}")
            continue
        per = ", ".join(f"{c['name']} {c['seconds']:.2f}" for c in out["checks"])
        verdict = "pass" if out["ok"] else "refused"
        label = (plugins or "(baseline)") + (" " + " ".join(extra) if extra else "")
        print(f"{label:<32} {wall:7.2f}  {verdict:<7}  {per}")
        if not out["ok"]:
            print(f"{'':<42}reason: {out['reason'][:110]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
