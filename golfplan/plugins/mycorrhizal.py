"""Mycorrhizal gradients: each block's gradients are blended with those of the blocks 3 layers away.

After the gradients are accumulated, for every block ``i`` with partners
``P = {i - distance, i + distance} ∩ [0, L)``, each of its gradients becomes
``(1 - blend)·g_i + blend·mean_{j in P}(g_j)``, where ``g_j`` is the gradient of the
parameter of the same name (and shape) in block ``j``. All partners' gradients are
read before any is changed, so the order of the layers does not matter.
Readings chosen: the sharing is symmetric (both ends of a pair receive from each
other), a middle block with two partners takes their mean, blocks with no partner
(e.g. the middle ones of a short stack) are unchanged, and ``blend`` = 0.1 (the seed
gives no fraction). Parameters outside the blocks are untouched.
The seed's W4 was worse (+0.011); W8 on tidal lost to tidal alone.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from golfplan.core.technique import Float, Int, Technique, hookimpl


def partners(i: int, num_layers: int, distance: int) -> list[int]:
    """The blocks ``distance`` layers below and above ``i`` that exist."""
    return [j for j in (i - distance, i + distance) if 0 <= j < num_layers]


def blend_block_grads(blocks: nn.ModuleList, distance: int, blend: float) -> None:
    """Blend, in place, each block's gradients with its partners' (read from a snapshot)."""
    n = len(blocks)
    named = [dict(b.named_parameters()) for b in blocks]
    snapshot: list[dict[str, Tensor]] = [
        {k: p.grad.clone() for k, p in params.items() if p.grad is not None} for params in named
    ]
    done: set[int] = set()
    for i in range(n):
        for name, p in named[i].items():
            if p.grad is None or id(p) in done:
                continue
            others = [snapshot[j][name] for j in partners(i, n, distance)
                      if name in snapshot[j] and named[j][name] is not p and snapshot[j][name].shape == p.shape]
            if not others:
                continue
            done.add(id(p))
            shared = others[0] if len(others) == 1 else torch.stack(others).mean(dim=0)
            p.grad.mul_(1.0 - blend).add_(shared, alpha=blend)


class Mycorrhizal(Technique):
    name = "mycorrhizal"
    summary = "blend each block's gradients with those of the blocks 3 layers away"
    params = {
        "blend": Float(0.1, 0.0, 0.5, help="share of the partners' mean gradient"),
        "distance": Int(3, 1, 8, help="layers between blended blocks"),
    }
    seed_refs = ("W4", "W6", "W8")
    seed_result = ("W4: 1.6223 (+0.011 vs cosine 1.6117, Worse); W6 canopy+mycorrhizal: 1.8667 (+0.255); "
                   "W8 tidal+mycorrhizal: 1.6009 (worse than tidal's 1.5906)")

    @hookimpl
    def after_backward(self, model, clock):
        blend_block_grads(model.blocks, self.p.distance, self.p.blend)
