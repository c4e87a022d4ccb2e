"""How many bytes a state dict would take through a run's export chain: the budget's question.

``estimate_artifact(hooks, state_dict, config)`` runs the chain's quantize and post-pass links on
the state dict (meta tensors too: each quantizer then gives its layout only), so the payload (the
bytes the chain stores before compression) is exact for the configuration; the compressed size is
that payload times a compression ratio measured on trained full-size models (``MEASURED``), the
one for the chain's codec, dominant code width and scale rule, or the nearest one, saying so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor

from golfplan.core.export.artifact import run_chain


@dataclass(frozen=True)
class Figure:
    """A compression ratio measured on trained weights: artifact model bytes / payload bytes."""

    codec: str
    bits: int
    rule: str
    ratio: float
    source: str
    layout: str = "single"  # the serialised layout it was measured on (golfplan.core.export.codec.Packing)
    row_sort: str = "none"  # and its row sort


# Measured on full-size trained models (8xH100, 600 s); each source says where. Compressed model
# bytes per payload byte (the chain's stored bytes before compression: one byte per integer code,
# fp16 scales, small tensors, LQER factors). The brotli figure divides by the payload golfplan's
# chain stores for the record's shape (11 layers, MLP 4x, vocab 8192: 36,126,262 B); the others
# divide by their records' parameter counts, which the payload exceeds by ~0.5 %, so they overstate
# the ratio by as much. None of the records used golfplan's byte shuffle or row sort on a single stream.
# The zpaq figure is the record's own chain: its model bytes over the payload golfplan's chain stores
# for the record's shape today (36,138,906 B: codes, fp16 scales, int8 gates, LQER factors and the
# int16 row orders of the sorted groups); its lrzip -z -L 9 and golfplan's in-memory ZPAQ level 5
# compress the same streams to within 0.1 % (benchmarks/compressors.py: 391,157 vs 391,042 B on a
# trained cpu model).
MEASURED = (
    Figure("zlib", 8, "max", 0.79, "the seed log's int8+zlib artifacts (H1: ~14 MB for a 17,687,840-byte payload)"),
    Figure("zstd", 6, "max", 0.574, "record 2026-03-22_11L_EMA_GPTQ-lite (seed 1337): int6 GPTQ-lite + zstd-22, "
           "15,487,414 B for 26,993,756 params"),
    Figure("lzma", 6, "max", 0.590, "record 2026-03-23_LeakyReLU_LegalTTT (seed 1337): int6 GPTQ-lite + lzma, "
           "15,887,928 B for 26,928,220 params"),
    Figure("brotli", 6, "sd", 0.447, "record 2026-04-27_SP8192_LQER (seed 42): int6/int7 GPTQ SDClip + LQER, "
           "15,865,260 B pergroup + the ~280 KB its README gives brotli-11 over pergroup, for a 36,126,262 B payload"),
    Figure("zpaq", 6, "sd", 0.439, "record 2026-04-27_SP8192_LQER (seed 42), its own chain: int6/int7 GPTQ SDClip + "
           "LQER, role groups with hot-row L1 sort through lrzip -z -L 9 (ZPAQ), brotli-11 remainder: 15,865,260 B "
           "for a 36,138,906 B payload", layout="grouped", row_sort="hot"),
)


def measured_ratio(codec: str, bits: int, rule: str, layout: str = "single",
                   row_sort: str = "none") -> tuple[float, str, bool]:
    """The measured figure for a chain's codec, dominant code width, scale rule, layout and row
    sort, and whether it was measured on exactly that chain; the closest one (same scale rule
    first, then width, then codec, then layout, then row sort) when none matches, saying so."""
    if bits == 0:
        return 1.0, "no integer codes: float payloads barely compress, 1.0 assumed", True
    best = min(MEASURED, key=lambda f: (f.rule != rule, abs(f.bits - bits), f.codec != codec, f.layout != layout,
                                        f.row_sort != row_sort))
    if (best.codec, best.bits, best.rule, best.layout, best.row_sort) == (codec, bits, rule, layout, row_sort):
        return best.ratio, best.source, True
    extras = [x for x in (f"{rule} scales", f"{layout} layout" if layout != "single" else "",
                          f"row sort {row_sort}" if row_sort != "none" else "") if x]
    return best.ratio, f"no figure for {codec} int{bits} ({', '.join(extras)}); nearest: {best.source}", False


@dataclass
class ArtifactEstimate:
    """The chain's exact payload for a state dict and the model bytes it should compress to."""

    payload_bytes: int
    ratio: float
    ratio_source: str
    model_bytes: int
    format: str
    chain: list[str]
    exact: bool = True  # False: the ratio was measured on another chain (codec, width, rule or layout)

    def describe(self) -> str:
        return (f"{self.format} payload {self.payload_bytes:,} x {self.ratio} = ~{self.model_bytes:,} model bytes "
                f"(ratio: {self.ratio_source})")


def estimate_artifact(hooks: Any, state_dict: dict[str, Tensor], config: Any) -> ArtifactEstimate:
    """How many bytes this state dict (real or meta tensors) would take through this run's chain:
    the exact payload the chain stores, times the measured ratio for its codec and dominant code
    width (``MEASURED``). ``hooks`` is the run's resolved hooks (``golfplan.core.hooks.resolve``)."""
    chain = run_chain(hooks, state_dict, {}, config)
    payload = sum(q.stored_bytes() for q in chain.qtensors.values())
    weight: dict[tuple[int, str], int] = {}
    for q in chain.qtensors.values():
        if q.kind == "int":
            weight[(q.bits, q.rule)] = weight.get((q.bits, q.rule), 0) + q.data.numel()
    bits, rule = max(weight, key=weight.get) if weight else (0, "")
    p = chain.packing
    ratio, source, exact = measured_ratio(p.codec, bits, rule, p.layout, p.row_sort)
    return ArtifactEstimate(payload, ratio, source, int(payload * ratio), chain.format(), chain.describe(), exact)
