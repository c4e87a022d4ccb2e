"""Controlled burn: every ``every`` steps, zero the smallest ``fraction`` of each weight matrix.

After the optimizer step that completes step ``every``, ``2·every``, ... (i.e. when
``(clock.step + 1) % every == 0``), each Muon matrix of the model (the blocks' 2-D
weights; not the embedding, the untied head or the control tensors) has exactly
``round(fraction · numel)`` entries of smallest magnitude set to 0. The entries are
found on the device with ``torch.topk`` (no host sync).

Reading chosen where the seed is vague: the pruning is not sticky; burnt weights may
regrow (Muon's update is dense, so they do at the next step), and each burn again
takes the smallest ``fraction`` at that moment. Nothing happens between burns.
The seed's N1 (5 % every 50 steps) was neutral (-0.001), NF7 on tidal ~the same.
"""

from __future__ import annotations

import torch
from torch import Tensor

from golfplan.core.optim import split_params
from golfplan.core.technique import Float, Int, Technique, hookimpl


def burn_(weight: Tensor, fraction: float) -> None:
    """Zero, in place, the ``round(fraction · numel)`` entries of ``weight`` smallest in magnitude."""
    k = int(round(fraction * weight.numel()))
    if k <= 0:
        return
    flat = weight.view(-1)
    idx = torch.topk(flat.abs(), k, largest=False, sorted=False).indices
    flat.index_fill_(0, idx, 0.0)


def is_burn_step(step: int, every: int) -> bool:
    """Whether the optimizer step with index ``step`` (0-based) completes a multiple of ``every``."""
    return (step + 1) % every == 0


class ControlledBurn(Technique):
    name = "controlled_burn"
    summary = "every N steps, zero the smallest 5 % (by magnitude) of each block matrix"
    params = {
        "fraction": Float(0.05, 0.001, 0.5, help="share of each matrix zeroed per burn"),
        "every": Int(50, 1, 1000, help="steps between burns"),
    }
    seed_refs = ("N1", "NF7")
    seed_result = "N1: 1.6109 (-0.001 vs cosine 1.6117, Neutral); NF7 tidal+burn: 1.5915 (~same as tidal's 1.5906)"

    @hookimpl
    def on_step(self, model, optimizers, clock):
        if not is_burn_step(clock.step, self.p.every):
            return
        for w in split_params(model)["matrix"]:
            burn_(w, self.p.fraction)
