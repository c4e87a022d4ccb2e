"""Canopy light: the bottom layers get the least light, each block's step scaled by its depth.

Every step, each block's update is scaled by ``bottom + (top - bottom) · i / (L - 1)``:
layer 0, next to the embedding, moves ``bottom`` = 0.3 of its optimizer step, the last
layer all of it, linear in between. Parameters outside the blocks (embedding, head,
skip weights) are untouched; a parameter shared by several blocks is scaled once, by
the first block's factor. The seed's W1 was terrible (+0.247); W7 on tidal lost to
tidal alone.

Reading: the seed says "scale gradients by layer depth". Scaling the gradient itself
does nothing here: Muon normalises each matrix's momentum before Newton-Schulz and
Adam divides by the root of its second moment, so a constant factor per matrix
cancels (measured on the tiny CPU config: val_bpb moved by 2e-5). What reaches the
weights is the update, so the factor is applied to it: ``after_backward`` keeps a
copy of each block parameter and ``on_step`` sets ``w = w_old + f · (w_new - w_old)``.
That is what gradient scaling means for plain SGD, and it costs one copy of the block
weights per step (on the device, no sync).
"""

from __future__ import annotations

import torch
from torch import nn

from golfplan.core.technique import Float, Technique, hookimpl


def depth_factor(i: int, num_layers: int, bottom: float, top: float) -> float:
    """``bottom`` at layer 0, ``top`` at the last layer, linear in between."""
    if num_layers < 2:
        return top
    return bottom + (top - bottom) * i / (num_layers - 1)


def block_params(blocks: nn.ModuleList, factors: list[float]) -> list[tuple[nn.Parameter, float]]:
    """Each block parameter once (a shared one with its first block's factor), skipping factor 1."""
    seen: set[int] = set()
    out = []
    for block, factor in zip(blocks, factors):
        for p in block.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                if factor != 1.0:
                    out.append((p, factor))
    return out


def scale_updates(before: list[tuple[nn.Parameter, float, torch.Tensor]]) -> None:
    """``w = old + f · (w - old)`` for every (param, factor, old) triple."""
    for p, factor, old in before:
        p.sub_(old).mul_(factor).add_(old)


class Canopy(Technique):
    name = "canopy"
    summary = "scale each block's update linearly with depth (bottom 0.3x, top 1.0x)"
    params = {
        "bottom": Float(0.3, 0.0, 1.0, help="update factor of the first block"),
        "top": Float(1.0, 0.1, 2.0, help="update factor of the last block"),
    }
    seed_refs = ("W1", "W6", "W7")
    seed_result = ("W1: 1.8587 (+0.247 vs cosine 1.6117, Terrible); W6 canopy+mycorrhizal: 1.8667 (+0.255); "
                   "W7 tidal+canopy: 1.5954 (worse than tidal's 1.5906)")

    def __init__(self, **values):
        super().__init__(**values)
        self._before: list[tuple[nn.Parameter, float, torch.Tensor]] = []

    def factors(self, num_layers: int) -> list[float]:
        return [depth_factor(i, num_layers, self.p.bottom, self.p.top) for i in range(num_layers)]

    @hookimpl
    def after_backward(self, model, clock):
        with torch.no_grad():
            self._before = [(p, f, p.detach().clone()) for p, f in block_params(model.blocks, self.factors(len(model.blocks)))]

    @hookimpl
    def on_step(self, model, optimizers, clock):
        scale_updates(self._before)
        self._before = []
