"""LQER: a low-rank correction of the quantization error on the worst few matrices.

From the 1.0611 record (F:362-367, 2197-2218, 2272-2293, PR #1797): after the quantizer, for
every integer-coded matrix E = W - Q(W); the ``top_k`` (3) matrices with the largest ‖E‖ get the
rank-``rank`` (4) truncated SVD E ≈ A B, with A = U_r diag(S_r) (rows x r) and B = V_rᵀ
(r x cols), stored beside the codes and added back on load: W ≈ Q(W) + A B. Asymmetric packing
(the record's ``LQER_ASYM_ENABLED=1``, group 64): A as int2, one fp16 scale for the whole
matrix, s = max|A| / 1.5, codes in [-2, 1]; B as int4 in groups of 64 consecutive elements of
the flattened B, s = max|group| / 7.5, codes in [-8, 7]. When B's size is not a multiple of the
group, both factors are symmetric ``factor_bits`` (4) per row, s = max|row| / (2^(b-1) - 1).
In the record's seed-42 run the three were tok_emb and two mlp.fc matrices.

Readings chosen: candidates are the integer-coded matrices of the attention, MLP, embedding and
other groups, whatever quantizer made them (the record's are its GPTQ matrices; gates are
int8 rows and excluded). For the budget estimate (meta tensors, no error to rank by) the
``top_k`` largest matrices are sized.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from golfplan.core.export.quant import QTensor, absmax_rows, int_groups, int_tensor
from golfplan.core.technique import Bool, Int, Technique, hookimpl

CANDIDATE_GROUPS = ("attn", "mlp", "embed", "other")


def factors(e: torch.Tensor, rank: int, asym: bool, group: int, factor_bits: int) -> tuple[QTensor, QTensor]:
    """The stored rank-``rank`` factors (A, B) of the error ``e``."""
    u, s, vh = torch.linalg.svd(e.float(), full_matrices=False)
    r = min(rank, s.numel())
    a, b = (u[:, :r] * s[:r]).contiguous(), vh[:r].contiguous()
    if asym and b.numel() % group == 0:
        return (int_tensor(a, 2, "lqer A int2", low=-2, top_div=1.5),
                int_groups(b, 4, group, "lqer B int4", low=-8, top_div=7.5))
    return absmax_rows(a, factor_bits, f"lqer A int{factor_bits}"), absmax_rows(b, factor_bits, f"lqer B int{factor_bits}")


def planned_factors(shape: tuple[int, int], rank: int, asym: bool, group: int,
                    factor_bits: int) -> tuple[QTensor, QTensor]:
    """The factors' layout for a matrix of ``shape``, without data (the budget estimate)."""
    rows, cols = shape
    r = min(rank, rows, cols)
    meta = lambda *s, dt=torch.int8: torch.empty(s, dtype=dt, device="meta")
    grouped = asym and (r * cols) % group == 0
    a = QTensor("int", meta(rows, r), meta(*(() if grouped else (rows,)), dt=torch.float16),
                bits=2 if grouped else factor_bits)
    b = QTensor("int", meta(r, cols), meta((r * cols) // group if grouped else r, dt=torch.float16),
                bits=4 if grouped else factor_bits, group_size=group if grouped else 0)
    return a, b


class LQER(Technique):
    name = "lqer"
    summary = "rank-4 SVD correction of the quantization error on the 3 worst matrices (A int2, B int4 in groups of 64)"
    params = {
        "rank": Int(4, 1, 32, log=True, help="rank of the correction"),
        "top_k": Int(3, 1, 16, help="how many matrices (largest error first) are corrected"),
        "asym": Bool(True, help="A int2 with one scale, B int4 per group (else both symmetric per row)"),
        "group": Int(64, 8, 256, log=True, help="elements per scale of B in the asymmetric packing"),
        "factor_bits": Int(4, 2, 8, help="code width of both factors in the symmetric packing"),
    }
    source = "2026-04-27_SP8192_LQER_SparseGate_BOSSmearFix_9HpStack_1.0611"
    source_result = ("no isolated figure: with GPTQ int6/int7 the record's quantized val_bpb was 1.07254 vs 1.06396 "
                     "pre-quant (seed 42); corrected tok_emb and 2 mlp.fc")

    @hookimpl
    def export_postpass(self, qtensors, state_dict, stats, config):
        cands = [n for n, q in qtensors.items()
                 if q.kind == "int" and q.data.ndim == 2 and q.group in CANDIDATE_GROUPS and q.lowrank is None]
        if not cands:
            return None
        p = self.p
        if state_dict[cands[0]].is_meta:
            top = sorted(cands, key=lambda n: -qtensors[n].data.numel())[:p.top_k]
            return {n: replace(qtensors[n], lowrank=planned_factors(qtensors[n].shape, p.rank, p.asym, p.group, p.factor_bits))
                    for n in top}
        error = lambda n: state_dict[n].detach().float().cpu() - replace(qtensors[n], dtype="float32").dequantize()
        norms = {n: float(error(n).norm()) for n in cands}
        tag = f" + lqer r{p.rank}" + (" asym" if p.asym else "")
        return {n: replace(qtensors[n], lowrank=factors(error(n), p.rank, p.asym, p.group, p.factor_bits),
                           method=qtensors[n].method + tag)
                for n in sorted(cands, key=lambda n: -norms[n])[:p.top_k]}
