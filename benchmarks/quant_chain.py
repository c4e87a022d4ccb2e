"""One cpu-profile model, trained once, through three export chains side by side: the challenge's
int8 + zlib, int6 GPTQ-lite + zstd-22, and int6 GPTQ (int7 embedding) + LQER + brotli-11; then
the same grids rounded to nearest (mixed_bits) and GPTQ without LQER, to show what each adds.

The run is the trainer's own (``golfplan.core.train.trainer.train``, baseline model, cpu profile); a
helper technique keeps the trained float weights (``on_train_end``), the GPTQ Hessians collected
inside the training clock (``calibrate``, on training batches) and the validation data. The first
row is the trainer's own artifact and round trip; the others export the same weights with the
same statistics and score what their artifacts load back with the challenge's ``eval_val``.

    python benchmarks/quant_chain.py [--iterations N] [--seed S]

Columns: round-trip val_bpb, model bytes (the compressed weights), the chain's payload before
compression and their ratio, the budget estimate for the same chain (payload x the ratio measured
on the records' trained models), the artifact (model + the packed train_gpt.py), the export time.
"""

from __future__ import annotations

import argparse
import time

import torch

from golfplan.core.config import load_spec
from golfplan.core.evaluate.score import eval_val
from golfplan.core.export.artifact import export_artifact
from golfplan.core.hooks import resolve
from golfplan.core.modules import import_file
from golfplan.core.export.pack import code_size
from golfplan.core.export.sizing import estimate_artifact
from golfplan.core.technique import Technique, hookimpl
from golfplan.core.train.trainer import train
from golfplan.plugins.compress import Compress
from golfplan.plugins.gptq import GPTQ
from golfplan.plugins.gptq_lite import GPTQLite
from golfplan.plugins.lqer import LQER
from golfplan.plugins.mixed_bits import MixedBits


class Keep(Technique):
    """Benchmark helper (not a technique): keeps the trained weights, the Hessians and the val data."""

    name = "keep_for_benchmark"

    def __init__(self) -> None:
        super().__init__()
        self.gptq = GPTQ()
        self.weights: dict[str, torch.Tensor] = {}
        self.stats: dict[str, torch.Tensor] = {}
        self.model = self.val = None

    @hookimpl
    def on_train_end(self, model, optimizers, clock):
        self.model = model
        self.weights = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @hookimpl
    def calibrate(self, model, batches, config):
        self.stats = self.gptq.calibrate(model=model, batches=batches, config=config)
        return self.stats

    @hookimpl
    def evaluate(self, model, val, config, final):  # keeps the val data; returns None: the default evaluates
        self.val = val


CHAINS = {
    "int8 + zlib (challenge)": [],
    "int6 GPTQ-lite + zstd-22": [GPTQLite(), Compress(codec="zstd")],
    "int6 GPTQ + LQER + brotli-11": [GPTQ(), LQER(), Compress(codec="brotli")],
    # the same grids without the Hessian, and without LQER: what GPTQ and LQER each add
    "int6 RTN SDClip + brotli-11": [MixedBits(), Compress(codec="brotli")],
    "int6 GPTQ + brotli-11": [GPTQ(), Compress(codec="brotli")],
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--iterations", type=int, default=0, help="training steps (default: the cpu profile's)")
    ap.add_argument("--seed", type=int, default=1337)
    args = ap.parse_args()
    config = load_spec("cpu").config.replace(seed=args.seed, progress_bar=False)
    if args.iterations:
        config = config.replace(iterations=args.iterations)
    keep = import_file(__file__, "golfplan_benchmarks").Keep()  # from a module file: the trainer packs its code
    t0 = time.perf_counter()
    result = train(config, [keep], log=lambda m: None)
    print(f"trained: {result.steps} steps, {result.train_time_s:.1f}s (+ calibration {result.calibration_s:.2f}s), "
          f"{result.params:,} params; pre-export val_bpb {result.pre_export_val_bpb:.4f}, "
          f"untrained {result.untrained_val_bpb:.4f} ({time.perf_counter() - t0:.0f}s wall)")
    rows = []
    for label, techniques in CHAINS.items():
        hooks = resolve(techniques)
        t1 = time.perf_counter()
        art = export_artifact(hooks, keep.weights, keep.stats, config)
        export_s = time.perf_counter() - t1
        keep.model.load_state_dict(art.load(art.blob), strict=True)
        _, bpb = eval_val(keep.model, keep.val)
        with torch.device("meta"):
            meta = {k: torch.empty(v.shape, dtype=v.dtype) for k, v in keep.weights.items()}
        est = estimate_artifact(resolve([t.fresh() for t in techniques]), meta, config)
        payload = art.stats["payload_bytes"]
        code = code_size(config, techniques)  # the packed train_gpt.py of this chain
        rows.append((label, bpb, len(art.blob), payload, code, est, export_s, art.format))
    if abs(rows[0][1] - result.val_bpb) > 1e-9:
        print(f"note: the trainer's own round trip gave {result.val_bpb:.6f}, this script's {rows[0][1]:.6f}")
    print(f"\n{'chain':<30} {'val_bpb':>8} {'model bytes':>12} {'payload':>10} {'ratio':>6} "
          f"{'estimate (ratio)':>19} {'artifact':>10} {'export':>7}  format")
    for label, bpb, model_bytes, payload, code, est, export_s, fmt in rows:
        print(f"{label:<30} {bpb:8.4f} {model_bytes:12,} {payload:10,} {model_bytes / payload:6.3f} "
              f"{est.model_bytes:>11,} ({est.ratio:.3f}) {model_bytes + code:10,} {export_s:6.1f}s  {fmt}")
    print(f"\npre-export (float) val_bpb {result.pre_export_val_bpb:.4f}; estimate = the chain's exact payload x the "
          f"ratio measured on the records' trained full-size models (golfplan.core.export.sizing.MEASURED)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
