"""Did the hooks slow the baseline? CPU ms/step of the baseline at an older revision and now,
measured side by side in one run (alternating, so machine noise hits both alike).

    python benchmarks/hooks_overhead.py [--before 798cad5] [--rounds 3] [--steps 30]

The older revision is checked out into a temporary git worktree and imported in its own
process; both train the cpu profile's baseline with the same seed, threads and step count
(--no-check, no wallclock cap). Prints each round's ms/step and the median ratio now/before.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = """
import json, sys, time, torch
sys.path.insert(0, {root!r})
torch.set_num_threads({threads})
from golfplan.core.config import load_spec
from golfplan.core.train.trainer import train
spec = load_spec("cpu", sets=["max_wallclock_seconds=0", "iterations={steps}", "progress_bar=false",
                              "val_max_tokens=16384", "warmup_steps=0", "train_batch_tokens=4096",
                              "train_seq_len=256", "val_batch_size=16384", "warmdown_iters=10",
                              "muon_momentum_warmup_steps=20", "train_log_every=10"])
r = train(spec.config, [], log=lambda m: None)
print(json.dumps({{"ms_per_step": r.ms_per_step, "val_bpb": r.val_bpb, "steps": r.steps}}))
"""


def run(root: Path, steps: int, threads: int) -> dict:
    env = dict(os.environ, GOLFPLAN_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    env.pop("PYTHONPATH", None)
    out = subprocess.run([sys.executable, "-c", SCRIPT.format(root=str(root), steps=steps, threads=threads)],
                         capture_output=True, text=True, env=env, cwd=tempfile.gettempdir())
    if out.returncode != 0:
        raise SystemExit(f"{root}: {out.stderr.strip().splitlines()[-1]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", default="798cad5", help="the older revision (default: before the hook work)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "before"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(old), args.before],
                       check=True, capture_output=True)
        try:
            rows = []
            for i in range(args.rounds):
                a = run(old, args.steps, args.threads)
                b = run(REPO, args.steps, args.threads)
                rows.append((a, b))
                print(f"round {i + 1}: before {a['ms_per_step']:8.1f} ms/step (val_bpb {a['val_bpb']:.4f})   "
                      f"now {b['ms_per_step']:8.1f} ms/step (val_bpb {b['val_bpb']:.4f})   "
                      f"ratio {b['ms_per_step'] / a['ms_per_step']:.3f}", flush=True)
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(old)], capture_output=True)
    ratio = statistics.median(b["ms_per_step"] / a["ms_per_step"] for a, b in rows)
    print(f"baseline ms/step now/before ({args.before}), median of {args.rounds} rounds, {args.threads} thread(s): "
          f"{ratio:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
