"""GPU check for sessions lent a CUDA machine: the CUDA path of the core trainer, measured.

Runs the 9x512 baseline (profile 1xh100: bf16 autocast, torch.compile fullgraph, flash SDPA,
fused Adam, compiled Newton-Schulz) on the embedded dataset for --seconds of training, then
the same with tidal,parallel,gqa, side by side in one process tree, and prints ms/step,
tokens/s, peak memory, whether compile and flash attention were used, the artifact bytes and
the zlib ratio of the int8 payload (the figure `golfplan check` uses for its estimate).

    python benchmarks/gpu_check.py --seconds 45 --out OUTDIR
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import zlib
from pathlib import Path


def run(name: str, plugins: str, seconds: float, out: Path, profile: str) -> dict:
    cmd = [sys.executable, "-m", "golfplan", "run", "--profile", profile, "--no-check", "--json",
           "--out", str(out), "--name", name, "--set", f"max_wallclock_seconds={seconds}",
           "--set", "val_loss_every=0", "--set", "train_log_every=50", "--set", "progress_bar=false"]
    if plugins:
        cmd += ["--plugins", plugins]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    (out / f"{name}.stdout.txt").write_text(proc.stdout)
    (out / f"{name}.stderr.txt").write_text(proc.stderr)
    start = proc.stdout.find("{\n")
    if proc.returncode != 0 or start < 0:
        print(proc.stdout[-3000:], proc.stderr[-3000:])
        return {"name": name, "error": f"exit {proc.returncode}"}
    r = json.loads(proc.stdout[start:])
    blob = next((out / name).glob("final_model.*.ptz")).read_bytes()
    r["zlib_ratio"] = round(len(blob) / len(zlib.decompress(blob)), 4)
    r["process_wall_s"] = round(wall, 1)
    r["name"] = name
    return r


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=45.0)
    ap.add_argument("--out", default="gpu_check_out")
    ap.add_argument("--variants", default="baseline=,stack=tidal+parallel+gqa")
    ap.add_argument("--profile", default="1xh100")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    print(f"torch {torch.__version__} cuda {torch.version.cuda} device {gpu}", flush=True)
    rows = []
    for item in args.variants.split(","):
        name, plugins = item.split("=")
        r = run(name, plugins.replace("+", ","), args.seconds, out, args.profile)
        rows.append(r)
        print(json.dumps({k: r.get(k) for k in ("name", "status", "reason", "steps", "ms_per_step", "tokens_per_s",
                                                 "peak_memory_mib", "compiled", "flash_attention", "val_bpb",
                                                 "untrained_val_bpb", "model_bytes", "artifact_bytes", "zlib_ratio",
                                                 "params", "process_wall_s", "error")}), flush=True)
    (out / "gpu_check.json").write_text(json.dumps(rows, indent=2, default=str))
    print("\n| run | steps | ms/step | tokens/s | peak MiB | compiled | flash | val_bpb | artifact bytes | zlib ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r.get('name')} | {r.get('steps')} | {r.get('ms_per_step')} | {r.get('tokens_per_s')} | "
              f"{r.get('peak_memory_mib')} | {r.get('compiled')} | {r.get('flash_attention')} | "
              f"{r.get('val_bpb')} | {r.get('artifact_bytes')} | {r.get('zlib_ratio')} |")
    ok = [r for r in rows if r.get("ms_per_step")]
    if len(ok) == 2:
        print(f"\nms/step ratio {ok[1]['name']}/{ok[0]['name']}: {ok[1]['ms_per_step'] / ok[0]['ms_per_step']:.3f}")
    return 0 if len(ok) == len(rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
