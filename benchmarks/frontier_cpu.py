"""The frontier stack (studies/frontier-pre-ttt.yaml) against the baseline on the cpu profile, seed by seed.

Runs ``golfplan run --config studies/frontier-pre-ttt.yaml --profile cpu --set seed=S`` and the baseline's
``golfplan run --profile cpu --set seed=S`` for the same seeds (both capped at the profile's 40
steps, so both take the same step count), then prints val_bpb (after the artifact round trip) as
mean ± std, the difference with Welch's p and the seed-log verdict (golfplan.planner.stats), and
ms/step side by side.

    GOLFPLAN_THREADS=1 python benchmarks/frontier_cpu.py                      # 3 seeds each
    GOLFPLAN_THREADS=1 python benchmarks/frontier_cpu.py --seeds 5 --jobs 2   # two runs at a time
    GOLFPLAN_THREADS=1 python benchmarks/frontier_cpu.py --set ema.half_life=0.1  # a frontier variant

``--set`` applies to the frontier side only. ``--jobs N`` runs N processes at once: faster, but
each run's ms/step then includes the others' load. A run that fails is listed with its reason and
left out of the statistics.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FRONTIER = REPO / "studies" / "frontier-pre-ttt.yaml"  # the stack; frontier.yaml adds CaseOps and the TTT


def run(args: list[str], out: str) -> dict:
    """One ``golfplan run --json``; its result mapping (status, val_bpb, steps, ms_per_step, ...)."""
    env = dict(os.environ)
    env.setdefault("GOLFPLAN_THREADS", "1")
    cmd = [sys.executable, "-m", "golfplan", "run", "--profile", "cpu", "--json", "--out", out,
           "--set", "progress_bar=false", *args]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO)
    try:
        return json.loads(p.stdout[p.stdout.index("{"):])
    except ValueError:
        tail = (p.stderr.strip().splitlines() or ["no output"])[-1]
        return {"status": "failed", "reason": f"exit {p.returncode}: {tail}"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=3, help="seeds per side (default 3: 1337, 1338, 1339)")
    ap.add_argument("--first-seed", type=int, default=1337)
    ap.add_argument("--jobs", type=int, default=1, help="runs at a time (default 1)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="for the frontier side")
    ap.add_argument("--out", help="parent of the run directories (default: a temporary folder)")
    ap.add_argument("--json", metavar="FILE", help="also write every run's figures to FILE")
    args = ap.parse_args()

    from golfplan.planner.stats import summarize, verdict

    seeds = [args.first_seed + i for i in range(args.seeds)]
    extra = [a for kv in args.set for a in ("--set", kv)]
    sides = {"baseline": [], "frontier": ["--config", str(FRONTIER), *extra]}
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or tmp
        jobs = [(side, seed) for seed in seeds for side in sides]
        with ThreadPoolExecutor(max(1, args.jobs)) as pool:
            results = list(pool.map(lambda j: run([*sides[j[0]], "--set", f"seed={j[1]}"], out), jobs))
    rows: dict[str, list[dict]] = {side: [] for side in sides}
    for (side, seed), res in zip(jobs, results):
        res["seed"] = seed
        rows[side].append(res)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))

    def ok(side: str) -> list[dict]:
        return [r for r in rows[side] if r.get("status") == "complete" and r.get("val_bpb") is not None]

    print(f"cpu profile, seeds {seeds}, {args.jobs} run(s) at a time, "
          f"GOLFPLAN_THREADS={os.environ.get('GOLFPLAN_THREADS', '1')}"
          + (f"; frontier with {' '.join(args.set)}" if args.set else ""))
    print(f"{'':10} {'val_bpb (round trip)':>26} {'ms/step':>16} {'steps':>6} {'untrained':>9} {'artifact B':>11}")
    for side in sides:
        good = ok(side)
        bpb = summarize([r["val_bpb"] for r in good])
        ms = summarize([r["ms_per_step"] for r in good])
        steps = sorted({r["steps"] for r in good})
        untrained = summarize([r["untrained_val_bpb"] for r in good])
        art = summarize([r["artifact_bytes"] for r in good])
        print(f"{side:10} {bpb.fmt() if bpb else 'no run':>26} "
              f"{(f'{ms.mean:.0f} ± {ms.std:.0f}' if ms else '-'):>16} {','.join(map(str, steps)) or '-':>6} "
              f"{(f'{untrained.mean:.4f}' if untrained else '-'):>9} {(f'{art.mean:,.0f}' if art else '-'):>11}")
    for side in sides:
        for r in rows[side]:
            print(f"  {side} seed {r['seed']}: " + (
                f"val_bpb {r['val_bpb']:.4f}, {r['ms_per_step']:.0f} ms/step, {r['steps']} steps"
                if r in ok(side) else f"{r.get('status')}: {r.get('reason')}"))
    base, front = [r["val_bpb"] for r in ok("baseline")], [r["val_bpb"] for r in ok("frontier")]
    if base and front:
        v = verdict(front, base)
        ms_b = summarize([r["ms_per_step"] for r in ok("baseline")])
        ms_f = summarize([r["ms_per_step"] for r in ok("frontier")])
        print(f"frontier - baseline: {v.fmt_delta()} BPB -> {v.word} (Welch, alpha 0.05, noise floor "
              f"{v.floor:.4f}); ms/step x{ms_f.mean / ms_b.mean:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
