"""Orthogonal init: the attention's q, k, v and the MLP's input matrices start orthogonal (gain 1).

Every singular value of an orthogonal matrix is 1, so at init no direction of the stream is
amplified or lost, and Muon (whose updates are orthogonalised too) spends its first steps
learning instead of reshaping a random spectrum. The output projections (attention ``proj``,
MLP ``proj``) stay zero, as the baseline has them, so every block still starts as the identity.

Source: record 2026-03-19_smeargate_orthoinit_muonwd ("all non-zero-init CastedLinear weight
matrices are initialized with nn.init.orthogonal_()"), kept along the lineage that leads to the
frontier (2026-03-20, 2026-03-21 and 2026-03-22 list "OrthoInit" in their READMEs); the
frontier's ``_init_weights`` (F:1254-1278) initialises its q, k, v and MLP-up banks
orthogonally (gain 1), zeroes the out-projection and MLP-down banks (then scales them by
1/sqrt(2L): still zero), and orthogonalises any other non-zero-init linear at least 64 x 64.

Reading: the matrices are each block's attention ``c_q``, ``c_k``, ``c_v`` and the MLP's input
matrices (``fc``; ``up`` and ``gate`` of a gated MLP such as ``swiglu``), found through any
``wrap_block`` wrapper, when both sides are at least 64 (the record's size rule; at the
record's shapes, 512x512, 256x512 and 2048x512, every one qualifies; the tiny test model's
32x64 k and v keep the default init). A matrix shared by several blocks (``weight_sharing``)
is initialised once. Runs in ``on_model_built``, after the core's init; nothing at train time.
"""

from __future__ import annotations

import torch
from torch import nn

from golfplan.core.technique import Technique, hookimpl

ATTENTION_INPUTS = ("c_q", "c_k", "c_v")
MLP_INPUTS = ("fc", "up", "gate")
MIN_SIDE = 64


def unwrapped(block: nn.Module) -> nn.Module:
    """The block under any wrappers that keep it as ``.block``."""
    while not (hasattr(block, "attn") and hasattr(block, "mlp")):
        inner = getattr(block, "block", None)
        if not isinstance(inner, nn.Module):
            return block
        block = inner
    return block


def ortho_targets(model: nn.Module) -> list[nn.Linear]:
    """The input matrices of every block's attention and MLP that are at least 64 x 64, each once."""
    out: list[nn.Linear] = []
    seen: set[int] = set()
    for block in model.blocks:
        inner = unwrapped(block)
        for part, names in (("attn", ATTENTION_INPUTS), ("mlp", MLP_INPUTS)):
            for name in names:
                lin = getattr(getattr(inner, part, None), name, None)
                if (isinstance(lin, nn.Linear) and lin.weight.ndim == 2 and min(lin.weight.shape) >= MIN_SIDE
                        and id(lin.weight) not in seen):
                    seen.add(id(lin.weight))
                    out.append(lin)
    return out


class OrthoInit(Technique):
    name = "ortho_init"
    summary = "orthogonal init (gain 1) of q, k, v and the MLP input matrices; output projections stay zero"
    source = "2026-03-19_smeargate_orthoinit_muonwd"
    source_result = ("not isolated: part of that record's 1.1556 BPB stack (SmearGate, OrthoInit, Muon WD, int6 QAT, "
                     "MLP 3x, sliding eval); kept along the lineage to the frontier record's init (F:1254-1278)")

    @hookimpl
    def on_model_built(self, model, config):
        with torch.no_grad():
            for lin in ortho_targets(model):
                nn.init.orthogonal_(lin.weight, gain=1.0)
