"""Evaluation strategies side by side on one trained model: the challenge's plain evaluation,
the sliding window (stride 64), score-first SGD TTT and phased LoRA TTT: BPB and time.

One cpu-profile run (embedded data) trains the model; its final evaluation (the round-tripped
int8+zlib artifact) scores it with every strategy in turn, each from the same weights (the TTT
strategies put them back when done), and reports the plain score as the run's.

    python benchmarks/eval_strategies.py                # the cpu profile
    python benchmarks/eval_strategies.py --set iterations=80

Scaled settings (the cpu profile's validation split is 32,768 tokens of 256-token sequences):
ttt_sgd trains on 4,096-token chunks (the record's 32,768 would be one chunk, never trained);
ttt_lora's global phases use 2,048-token chunks (the same reason); everything else is the
records' defaults.
"""

from __future__ import annotations

import argparse
import sys
import time

from golfplan.core.config import load_spec
from golfplan.core.evaluate.score import eval_val
from golfplan.core.technique import Technique, hookimpl
from golfplan.core.train.trainer import train
from golfplan.plugins.sliding_window import SlidingWindow
from golfplan.plugins.ttt_lora import TTTLoRA
from golfplan.plugins.ttt_sgd import TTTSGD

STRATEGIES = [
    ("plain (eval_val)", "non-overlapping 256-token sequences", None),
    ("sliding_window", "stride 64, window 256", SlidingWindow(stride=64, compile=False)),
    ("ttt_sgd", "chunks 4,096, lr 0.002, 3 epochs, stride 64", TTTSGD(chunk_tokens=4096)),
    ("ttt_lora", "rank 80, chunk 48, 64 docs/batch, 3 phases, global chunks 2,048", TTTLoRA(global_chunk_tokens=2048)),
]


class Compare(Technique):
    """Scores the final model with every strategy; the run keeps the plain score."""

    name = "compare_eval_strategies"
    summary = "benchmark only"

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[str, str, float, float, float]] = []

    @hookimpl
    def evaluate(self, model, val, config, final):
        if not final:
            return None
        for label, settings, strategy in STRATEGIES:
            t0 = time.perf_counter()
            loss, bpb = eval_val(model, val) if strategy is None else strategy.evaluate(model, val, config, True)
            self.rows.append((label, settings, loss, bpb, time.perf_counter() - t0))
            print(f"  {label}: val_bpb {bpb:.4f} in {self.rows[-1][-1]:.1f}s", file=sys.stderr, flush=True)
        return self.rows[0][2], self.rows[0][3]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", action="append", default=[], help="config overrides, key=value")
    args = ap.parse_args()
    config = load_spec("cpu", sets=args.set + ["progress_bar=false"]).config
    compare = Compare()
    t0 = time.perf_counter()
    result = train(config, [compare], log=lambda m: None)
    if result.status != "complete":
        print(f"run {result.status}: {result.reason}", file=sys.stderr)
        return 1
    print(f"cpu profile: {result.steps} steps in {result.train_time_s:.1f}s ({result.threads} threads), "
          f"pre-export val_bpb {result.pre_export_val_bpb:.4f}, untrained {result.untrained_val_bpb:.4f}; "
          f"{time.perf_counter() - t0:.0f}s wall")
    print(f"validation: {config.val_max_tokens:,} tokens, sequences of {config.train_seq_len}; "
          f"scored on the round-tripped artifact\n")
    print("| strategy | settings | val_loss | val_bpb | vs plain | eval time |")
    print("|---|---|---|---|---|---|")
    base = compare.rows[0][3]
    for label, settings, loss, bpb, seconds in compare.rows:
        print(f"| {label} | {settings} | {loss:.4f} | {bpb:.4f} | {bpb - base:+.4f} | {seconds:.1f} s |")
    return 0


if __name__ == "__main__":  # the run packs its techniques' modules: Compare must live in a module file
    from golfplan.core.modules import import_file

    raise SystemExit(import_file(__file__, "golfplan_benchmarks", "benchmark").main())
