"""Mixed bit widths per tensor group, round to nearest: the export quantizer without calibration.

Each tensor group (the core rule, ``golfplan.core.export.quant.tensor_group``) gets its own code width:
by default the 1.0611 record's widths (F:318-323, its log's header) — int6 attention and MLP
matrices, int7 embedding, int8 per-row gates (``attn_gate_w``, F:2232-2246), fp16 small tensors
(F:2247-2250) — each code the nearest point of the row's grid. Matrices outside the known roles
(``other``) get the attention width with the record's ``matrix_clip_sigmas`` 12.85.

Two scale rules:

- ``sdclip`` (the record's): s = k * std(row) / (2^(b-1) - 1), codes clamped to +-(2^(b-1) - 1);
  k = 13 (attention), 11.5 (MLP), 14 (embedding), as the record ran (its GPTQ used the same grid);
- ``rowmax`` (2026-03-20_10L_Int5MLP_MuonWD04_SWA50): s = max|row| / (2^(b-1) - 1), codes in
  [-2^(b-1), 2^(b-1) - 1]; that record ran int5 MLP, int6 attention, fp16 embedding
  (``--set mixed_bits.mlp_bits=5 --set mixed_bits.embed_bits=16 --set mixed_bits.rule=rowmax``).

A width of 16 keeps the group as fp16. Readings chosen: the groups are by role, not size (at the
cpu profile's 128 width every block matrix is under the record's 65,536-element fp16 threshold,
which would leave nothing to quantize); small tensors are fp16 including the control tensors (the
record's passthrough is fp16 for every float tensor of at most 65,536 elements).
"""

from __future__ import annotations

from golfplan.core.export.quant import (
    as_float16,
    fixed_group,
    group_width,
    int_rows,
    planned,
    rowmax_scale,
    sd_scale,
)
from golfplan.core.technique import Choice, Float, Technique, hookimpl

BITS = (4, 5, 6, 7, 8, 16)


class MixedBits(Technique):
    name = "mixed_bits"
    summary = "per-group code widths, round to nearest: int6 attention/MLP, int7 embedding, int8 gates, fp16 small"
    slot = "quantizer"
    params = {
        "attn_bits": Choice(6, BITS, help="code width of attention matrices (16: fp16)"),
        "mlp_bits": Choice(6, BITS, help="code width of MLP matrices (16: fp16)"),
        "embed_bits": Choice(7, BITS, help="code width of the embedding / untied head (16: fp16)"),
        "rule": Choice("sdclip", ("sdclip", "rowmax"), help="row scale: k x std(row) (SDClip) or max|row|"),
        "attn_k": Float(13.0, 4.0, 24.0, help="SDClip k of attention matrices (std multiples kept)"),
        "mlp_k": Float(11.5, 4.0, 24.0, help="SDClip k of MLP matrices"),
        "embed_k": Float(14.0, 4.0, 32.0, help="SDClip k of the embedding"),
    }
    source = "2026-04-27_SP8192_LQER_SparseGate_BOSSmearFix_9HpStack_1.0611"
    source_result = ("widths of the 1.0611 record (int6 attn/MLP, int7 embed k=14, int8 gates, fp16 small; with GPTQ "
                     "+ LQER): pre-quant 1.06396 -> quantized 1.07254 val_bpb, seed 42; round-to-nearest per-group "
                     "widths (int5 MLP/int6 attn) in 2026-03-20_10L_Int5MLP: 1.14276, 'int5 MLP saves ~1.86MB'")

    @hookimpl
    def quantize_tensor(self, name, tensor, group, stats, config):
        fixed = fixed_group(tensor, group)
        if fixed is not None:
            return fixed
        bits, k = group_width(self.p, group)
        rule = "sd" if self.p.rule == "sdclip" else "max"
        method = f"rtn int{bits} " + (f"sdclip k={k:g}" if rule == "sd" else "rowmax") if bits < 16 else "fp16"
        if tensor.is_meta:
            return planned(tensor, bits, rule, method)
        if bits >= 16:
            return as_float16(tensor, method)
        if rule == "sd":
            return int_rows(tensor, sd_scale(tensor, k, bits), bits, rule, method)
        return int_rows(tensor, rowmax_scale(tensor, bits), bits, rule, method, low=-(2 ** (bits - 1)))
