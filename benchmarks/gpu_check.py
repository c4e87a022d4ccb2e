"""GPU check for sessions lent a CUDA machine: the CUDA path of the core trainer, measured.

Runs the 9x512 baseline (profile 1xh100: bf16 autocast, torch.compile fullgraph, flash SDPA,
fused Adam, compiled Newton-Schulz) on the embedded dataset for --seconds of training, then
the same with tidal,parallel,gqa, side by side in one process tree, and prints ms/step,
tokens/s, peak memory, whether compile and flash attention were used, the artifact bytes and
the zlib ratio of the int8 payload (the figure `golfplan check` uses for its estimate).

With ``--frontier SECONDS`` it then runs ``studies/frontier.yaml`` (the record's whole pipeline:
CaseOps data, the stack, GPTQ calibration after the timer, ZPAQ export, the phased LoRA TTT
evaluation) for SECONDS of training on a slice of the validation set (``--val-tokens``), and prints
each stage's seconds read off the run's own events: training (compile included), calibration,
quantize + compress, the round-trip evaluation with TTT, and the process in all.

    python benchmarks/gpu_check.py --seconds 45 --out OUTDIR [--frontier 90 --val-tokens 262144]
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


def frontier(seconds: float, val_tokens: int, out: Path, profile: str) -> dict:
    """The frontier's pipeline for ``seconds`` of training, its stages timed from its events."""
    name = "frontier"
    cmd = [sys.executable, "-m", "golfplan", "run", "--profile", profile, "--config", "studies/frontier.yaml",
           "--no-check", "--json", "--out", str(out), "--name", name, "--set", f"val_max_tokens={val_tokens}",
           "--set", "progress_bar=false"] + (["--set", f"max_wallclock_seconds={seconds}"] if seconds > 0 else [])
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    (out / f"{name}.stdout.txt").write_text(proc.stdout)
    (out / f"{name}.stderr.txt").write_text(proc.stderr)
    events = [json.loads(line) for line in (out / name / "events.jsonl").read_text().splitlines()] \
        if (out / name / "events.jsonl").exists() else []
    at = {e["event"]: e for e in events}  # the last of each kind
    row: dict = {"process_wall_s": round(wall, 1), "exit": proc.returncode}
    if proc.returncode != 0:
        print(proc.stdout[-3000:], proc.stderr[-3000:])
    stages = [("train_s", "start", "stop"), ("calibration_s", "stop", "calibration"),
              ("quantize_compress_s", "calibration", "export"), ("eval_with_ttt_s", "export", "result")]
    for label, a, b in stages:
        if a in at and b in at:
            row[label] = round(at[b]["t"] - at[a]["t"], 1)
    stop, result = at.get("stop", {}), at.get("result", {})
    row.update(steps=stop.get("step"), train_time_ms=stop.get("train_time_ms"),
               **{k: result.get(k) for k in ("val_bpb", "model_bytes", "code_bytes", "artifact_bytes", "status")})
    return row


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=45.0)
    ap.add_argument("--out", default="gpu_check_out")
    ap.add_argument("--variants", default="baseline=,stack=tidal+parallel+gqa")
    ap.add_argument("--profile", default="1xh100")
    ap.add_argument("--frontier", type=float, default=None, metavar="SECONDS",
                    help="then time studies/frontier.yaml's whole pipeline with this many seconds of training "
                         "(0: the profile's own cap, 40 steps on cpu)")
    ap.add_argument("--val-tokens", type=int, default=262144, help="--frontier: the validation slice scored")
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
    good = len(ok) == len(rows)
    if args.frontier is not None:
        f = frontier(args.frontier, args.val_tokens, out, args.profile)
        (out / "gpu_frontier.json").write_text(json.dumps(f, indent=2, default=str))
        print(f"\nstudies/frontier.yaml on {args.profile}, "
              f"{f'{args.frontier:g} s of training' if args.frontier > 0 else 'training to the profile cap'}, "
              f"{args.val_tokens:,} validation tokens:")
        print("| " + " | ".join(f) + " |\n|" + "---|" * len(f) + "\n| " + " | ".join(str(v) for v in f.values()) + " |")
        good = good and f["exit"] == 0
    return 0 if good else 1


if __name__ == "__main__":
    raise SystemExit(main())
