"""Skip gates: each U-Net skip joins the decoder through a learned sigmoid gate instead of a plain add.

x = lerp(w_i·skip, x, σ(g_i)) = w_i·skip + σ(g_i)·(x − w_i·skip)

``w_i`` is the baseline's skip weight (``model.skip_weights[i]``, init 1) and ``g_i`` a gate vector of
the model width, one per skip, zero-initialised (the record's ``skip_gates``, F:1218-1232 and its
use in the decoder, F:1377-1391). At init σ(0) = 1/2, so a skip gives the mean of the stream and
the weighted skip, 0.5·(w·skip + x), where the baseline gives x + w·skip: the gated form is not the
identity of the baseline at init, and the record starts from it as well. When the parallel lanes
run (``parallel_lanes``) the skip joins lane 0, through this same gate.

The gates are stored flat (``num_skips·d`` values, viewed as ``(num_skips, d)`` in the forward): a
1-D tensor is what the core keeps in fp32 after a bf16 cast and stores unquantised, as the record
keeps its control tensors; ``param_role`` routes it to the ``scalar`` optimizer (Adam). With no
skips at all (a pure decoder) the merge is never called and the baseline's is kept.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from golfplan.core.technique import Technique, hookimpl

SOURCE = "2026-04-27_SP8192_LQER_SparseGate_BOSSmearFix_9HpStack_1.0611"


class GatedSkip(nn.Module):
    """``forward(x, skip, weight, i)``: lerp(weight·skip, x, σ(g_i)), the skip_merge of the record."""

    def __init__(self, num_skips: int, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.skip_gates = nn.Parameter(torch.zeros(num_skips * dim, dtype=torch.float32))

    def gate(self, i: int) -> Tensor:
        return self.skip_gates.view(-1, self.dim)[i]

    def forward(self, x: Tensor, skip: Tensor, weight: Tensor, i: int) -> Tensor:
        scaled = weight.to(dtype=x.dtype)[None, None, :] * skip
        g = torch.sigmoid(self.gate(i).to(dtype=x.dtype))[None, None, :]
        return torch.lerp(scaled, x, g)


class SkipGates(Technique):
    name = "skip_gates"
    summary = "U-Net skips join through a zero-init sigmoid gate: x = lerp(w·skip, x, σ(g))"
    slot = "skip_merge"
    source = SOURCE
    source_result = ("part of the record's stack, 1.06108 BPB (3-seed mean, std 0.0009); the record does not "
                     "measure the gates on their own")

    @hookimpl
    def skip_merge(self, config, num_skips):
        if num_skips <= 0:
            return None
        return GatedSkip(num_skips, config.model_dim)

    @hookimpl
    def param_role(self, name, param, config):
        return "scalar" if name.endswith("merge.skip_gates") else None
