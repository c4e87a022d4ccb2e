"""The same quantized streams under each compressor: zlib-9, lzma-9, zstd-22, brotli-11, ZPAQ-5.

Two sets of streams, each quantized once by the frontier's chain (``gptq`` int6 attention/MLP, int7
embedding, SDClip, then ``lqer``) and then packed by every codec in the record's per-group layout
(``grouped``, hot rows L1-sorted once) and in one stream (``single``; for the frontier-shaped set
only brotli-11 unless ``--all-layouts``: the figure the budget used to borrow):

1. ``trained``: a model trained by the trainer on the cpu profile (default ``studies/frontier-pre-ttt.yaml``
   with ``compress.codec=zpaq``: 4 x 128 layers, 40 steps on the embedded data), its chain's input
   as the trainer's export received it (weights after the EMA swap, GPTQ's Hessians); beside it the
   trainer's own artifact and the budget stage's estimate for the same configuration;
2. ``frontier-shaped``: ``studies/frontier.yaml``'s model on ``8xh100`` (35,945,671 parameters, the
   record's shapes) built on the CPU, every weight matrix drawn i.i.d. Gaussian, no Hessians (the
   same SDClip grids, rounded to nearest). NOT trained: each code is an independent sample of a
   rounded Gaussian, so every codec approaches the codes' entropy (printed beside them) and the
   ratios measure only how close each gets to that bound. Trained weights differ (heavier tails,
   similar rows, structure across layers): what the record measured with this chain on its trained
   model (15,865,260 B, ratio 0.439 of golfplan's payload for its shape) is the figure the budget
   check uses (golfplan.core.export.sizing).

Where ``lrzip`` is installed (``apt-get install lrzip``), the grouped streams also go through
``lrzip -z -L 9`` (the record's command; the first stream with brotli-11, as the record's
remainder), to compare the in-memory ZPAQ with the record's binary on the same bytes.

    python benchmarks/compressors.py [--skip-trained] [--skip-frontier] [--all-layouts] [--config FILE]

It starts with the budget stage's estimate for ``studies/frontier.yaml`` on ``8xh100`` with
``compress.codec=zpaq`` (the record's chain, whose ratio the record measured).

Columns: bytes after compression (model bytes: the whole container), ratio to the chain's payload
(codes one byte each, fp16 scales, factors), seconds to compress and to decompress.
"""

from __future__ import annotations

import argparse
import math
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
CODECS = ("zlib", "lzma", "zstd", "brotli", "zpaq")


def _keep_class():
    from golfplan.core.technique import Technique, hookimpl

    class KeepForBenchmark(Technique):
        """Benchmark helper (not a technique): keeps what the trainer's export chain received, the
        trained weights (as calibrated: after the EMA swap) and the calibration statistics."""

        name = "keep_for_benchmark"

        def __init__(self) -> None:
            super().__init__()
            self.weights: dict[str, torch.Tensor] = {}
            self.stats: dict[str, torch.Tensor] = {}

        @hookimpl
        def calibrate(self, model, batches, config):
            self.weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
            return {}

        @hookimpl
        def export_postpass(self, qtensors, state_dict, stats, config):
            self.stats = dict(stats)
            return {}

    return KeepForBenchmark


def chain_of(spec, weights, stats):
    """The frontier chain's quantized object for ``weights``: gptq + lqer, as the spec sets them."""
    from golfplan.core.export.artifact import chain_object, run_chain
    from golfplan.core.hooks import compose
    from golfplan.registry import Registry

    chain_plugins = {k: v for k, v in spec.plugins.items() if k in ("gptq", "lqer")}
    comp = compose(Registry().instantiate(chain_plugins), spec.config, configure=False)
    chain = run_chain(comp.hooks, weights, stats, spec.config)
    payload = sum(q.stored_bytes() for q in chain.qtensors.values())
    return chain_object(chain), payload, chain


def entropy_bytes(chain) -> float:
    """The order-0 entropy of the integer codes, in bytes (a bound for memoryless codes)."""
    total = 0.0
    for q in chain.qtensors.values():
        if q.kind != "int":
            continue
        counts = Counter(q.data.flatten().tolist()) if q.data.numel() < 50_000 else _fast_counts(q.data)
        n = sum(counts.values())
        total += -sum(c * math.log2(c / n) for c in counts.values()) / 8
    return total


def _fast_counts(t: torch.Tensor) -> dict[int, int]:
    values, counts = torch.unique(t.flatten(), return_counts=True)
    return dict(zip(values.tolist(), counts.tolist()))


def lrzip_bytes(streams: list[bytes]) -> int | None:
    """The record's pergroup: each group stream through ``lrzip -z -L 9``, the first with brotli-11."""
    import brotli

    if shutil.which("lrzip") is None:
        return None
    total = len(brotli.compress(streams[0], quality=11, lgwin=24))
    with tempfile.TemporaryDirectory() as d:
        for i, s in enumerate(streams[1:]):
            f = Path(d) / f"g{i}.bin"
            f.write_bytes(s)
            subprocess.run(["lrzip", "-z", "-L", "9", "-q", "-f", str(f)], check=True, capture_output=True)
            total += (Path(d) / f"g{i}.bin.lrz").stat().st_size
    return total


def table(label: str, obj, payload: int, note: str = "", single: tuple[str, ...] = CODECS) -> dict[tuple[str, str], int]:
    """Pack ``obj`` with every codec in the grouped layout (hot rows sorted) and with ``single``'s
    codecs in one stream. The rows are sorted once (the sort's order is stored with the codes, and
    a packing leaves sorted rows as they are), so every grouped packing gets the same streams."""
    from golfplan.core.export.codec import Packing, _sort_rows, pack, packing_for, serialise, unpack

    print(f"\n{label}: payload {payload:,} B{note}")
    t0 = time.perf_counter()
    presorted = {**obj, "tensors": {n: dict(r) for n, r in obj["tensors"].items()}}
    _sort_rows(presorted["tensors"], "hot")
    print(f"(hot rows L1-sorted once: {time.perf_counter() - t0:.0f}s)")
    print(f"{'codec':<10} {'layout':<18} {'model bytes':>12} {'ratio':>7} {'pack s':>7} {'unpack s':>8}")
    out = {}
    for layout, sort, codecs in (("single", "none", single), ("grouped", "hot", CODECS)):
        for codec in codecs:
            p = packing_for(codec, layout=layout, row_sort=sort)
            t0 = time.perf_counter()
            blob = pack(presorted if layout == "grouped" else obj, p)
            t1 = time.perf_counter()
            unpack(blob)
            t2 = time.perf_counter()
            out[(codec, layout)] = len(blob)
            print(f"{codec + '-' + str(p.level):<10} {layout + ('+' + sort if sort != 'none' else ''):<18} "
                  f"{len(blob):12,} {len(blob) / payload:7.4f} {t1 - t0:7.1f} {t2 - t1:8.1f}")
        if layout == "grouped":
            streams = serialise(presorted, Packing(codec="zpaq", level=5, layout="grouped", row_sort="hot"))
            lrz = lrzip_bytes(streams)
            if lrz is None:
                print("lrzip -z -L 9: not installed here (apt-get install lrzip), not compared")
            else:
                print(f"{'lrzip -L9':<10} {'grouped+hot':<18} {lrz:12,} {lrz / payload:7.4f}    (streams only, no "
                      f"container header; first stream brotli-11, as the record)")
                out[("lrzip", layout)] = lrz
    z, b = out[("zpaq", "grouped")], out[("brotli", "grouped")]
    print(f"zpaq/brotli (grouped): {z / b:.4f}; zpaq grouped vs brotli single: {z / out[('brotli', 'single')]:.4f}")
    return out


def trained(config_file: str, seed: int) -> None:
    """Train the stack on cpu with its chain and ZPAQ (the trainer's own artifact), then pack the same
    quantized tensors with every codec; and the budget stage's estimate for the same configuration."""
    from golfplan.check.stages import CheckReport, CheckFailed, _budget
    from golfplan.core.config import load_spec
    from golfplan.core.hooks import compose
    from golfplan.core.modules import import_file
    from golfplan.core.train.trainer import train
    from golfplan.registry import Registry

    spec = load_spec("cpu", config_file, sets=["compress.codec=zpaq"])
    plugins = {k: v for k, v in spec.plugins.items() if k != "ttt_lora"}  # the TTT changes no byte
    keep = import_file(__file__, "golfplan_benchmarks").make_keep()
    config = spec.config.replace(seed=seed, progress_bar=False)
    t0 = time.perf_counter()
    result = train(config, [*Registry().instantiate(plugins), keep], log=lambda m: None)
    print(f"trained {Path(config_file).name} on cpu with {plugins['compress']}: {result.status}, {result.steps} "
          f"steps, {result.params:,} params, round-trip val_bpb {result.val_bpb:.4f} "
          f"(untrained {result.untrained_val_bpb:.4f}); artifact {result.artifact_bytes:,} B = model "
          f"{result.model_bytes:,} + code {result.code_bytes:,} ({time.perf_counter() - t0:.0f}s)")
    obj, payload, chain = chain_of(spec, keep.weights, keep.stats)
    sizes = table("trained cpu model (frontier chain: gptq + lqer)", obj, payload,
                  f"; codes' order-0 entropy {entropy_bytes(chain):,.0f} B")
    print(f"the trainer's own artifact: model {result.model_bytes:,} B (zpaq grouped above: "
          f"{sizes[('zpaq', 'grouped')]:,})")
    comp = compose(Registry().instantiate(plugins), spec.config)
    report = CheckReport()
    try:
        _budget({"config": comp.config, "techniques": comp.techniques}, report)
    except CheckFailed:
        pass
    e = report.estimate
    measured = result.model_bytes + e["code_bytes"]  # the run's code bytes without this script's helper technique
    print(f"budget stage on the same configuration: ~{e['artifact_bytes']:,} B = payload {e['payload_bytes']:,} x "
          f"{e['ratio']} (ratio measured on this chain: {e['ratio_exact']}) + code {e['code_bytes']:,}; measured: "
          f"{measured:,} B = model {result.model_bytes:,} + the same code; estimate / measured "
          f"{e['artifact_bytes'] / measured:.3f} (model: {e['model_bytes'] / result.model_bytes:.3f})")


def budget_8xh100(config_file: str) -> None:
    """The budget stage's estimate for the record's configuration with ZPAQ (no training)."""
    from golfplan.check.stages import CheckReport, CheckFailed, _budget
    from golfplan.core.config import load_spec
    from golfplan.core.hooks import compose
    from golfplan.registry import Registry

    with tempfile.TemporaryDirectory() as d:  # case_ops only checks a --data folder has its byte sidecar
        (Path(d) / "fineweb_val_bytes_000000.bin").write_bytes(b"")
        spec = load_spec("8xh100", config_file, sets=["compress.codec=zpaq"],
                         overrides={"data_path": d, "tokenizer_path": str(Path(d) / "tok.model")})
        comp = compose(Registry().instantiate(spec.plugins), spec.config)
        report = CheckReport()
        try:
            status, message, _ = _budget({"config": comp.config, "techniques": comp.techniques}, report)
        except CheckFailed as err:
            status, message = "fail", str(err)
    print(f"\nbudget stage, {Path(config_file).name} on 8xh100 with compress.codec=zpaq: {status}: {message}")


def frontier_shaped(seed: int, all_layouts: bool) -> None:
    from golfplan.core.config import load_spec
    from golfplan.core.hooks import build_model, compose
    from golfplan.registry import Registry

    spec = load_spec("8xh100", REPO / "studies" / "frontier.yaml")
    # configured as a run is (mlp_width sets the record's MLP), without case_ops (data only: it would
    # build the embedded CaseOps data at vocab 8192)
    comp = compose(Registry().instantiate({k: v for k, v in spec.plugins.items() if k != "case_ops"}),
                   spec.config.replace(device="cpu"))
    torch.manual_seed(seed)
    model = build_model(comp.hooks, comp.config)
    params = sum(p.numel() for p in model.parameters())
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 2:
                p.normal_(0.0, p.shape[1] ** -0.5)
    weights = {k: v.detach() for k, v in model.state_dict().items()}
    t0 = time.perf_counter()
    obj, payload, chain = chain_of(spec, weights, {})
    print(f"\nfrontier-shaped: {params:,} params (the record's 35,945,671), quantized in {time.perf_counter() - t0:.0f}s")
    table("frontier-shaped, i.i.d. Gaussian weights, NOT trained (rounded to nearest on GPTQ's grids, + lqer)", obj,
          payload, f"; codes' order-0 entropy {entropy_bytes(chain):,.0f} B: what memoryless codes allow",
          single=("brotli",) if not all_layouts else CODECS)


def make_keep():
    return _keep_class()()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=str(REPO / "studies" / "frontier-pre-ttt.yaml"))
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--skip-trained", action="store_true")
    ap.add_argument("--skip-frontier", action="store_true")
    ap.add_argument("--all-layouts", action="store_true",
                    help="frontier-shaped: every codec in one stream too (lzma-9, zstd-22 and brotli-11 take "
                         "10-15 minutes each on 36 MB on a busy 2-core machine); default: brotli-11 only")
    args = ap.parse_args()
    t0 = time.perf_counter()
    budget_8xh100(str(REPO / "studies" / "frontier.yaml"))
    if not args.skip_trained:
        trained(args.config, args.seed)
    if not args.skip_frontier:
        frontier_shaped(args.seed, args.all_layouts)
    print(f"\n{time.perf_counter() - t0:.0f}s in all")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
