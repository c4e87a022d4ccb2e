"""Controlled burn: every ``every`` of the run, zero the smallest ``fraction`` of each weight matrix.

After the optimizer step that reaches ``every``, ``2·every``, ... of the run, each Muon
matrix of the model (the blocks' 2-D weights; not the embedding, the untied head or the
control tensors) has exactly ``round(fraction · numel)`` entries of smallest magnitude set
to 0. The entries are found on the device with ``torch.topk`` (no host sync).

**Horizon (golfplan.core.train.horizon).** The seed burned every 50 steps of its 240-step runs; here
``every`` is that fraction of the run, 5/24 = 0.2083, so a 240-step run burns after steps 50,
100, 150 and 200 exactly as the seed, a 40-step run after steps 9, 17, 25 and 34 (the first
steps that reach each multiple), and a run capped by time at the same shares of its cap. Four
burns a run on any horizon, where a 50-step period would burn a 40-step run never and a
5,000-step one 100 times.

Reading chosen where the seed is vague: the pruning is not sticky; burnt weights may
regrow (Muon's update is dense, so they do at the next step), and each burn again
takes the smallest ``fraction`` at that moment. Nothing happens between burns.
The seed's N1 (5 % every 50 steps) was neutral (-0.001), NF7 on tidal ~the same.
"""

from __future__ import annotations

import torch
from torch import Tensor

from golfplan.core.train.horizon import Every
from golfplan.core.train.optim import split_params
from golfplan.core.technique import Float, Technique, hookimpl

SEED_EVERY, SEED_STEPS = 50, 240  # N1: "every 50 steps" of the seed's 240-step runs


def burn_(weight: Tensor, fraction: float) -> None:
    """Zero, in place, the ``round(fraction · numel)`` entries of ``weight`` smallest in magnitude."""
    k = int(round(fraction * weight.numel()))
    if k <= 0:
        return
    flat = weight.view(-1)
    idx = torch.topk(flat.abs(), k, largest=False, sorted=False).indices
    flat.index_fill_(0, idx, 0.0)


class ControlledBurn(Technique):
    name = "controlled_burn"
    summary = "four times a run (the seed's every 50 of 240 steps), zero the smallest 5 % (by magnitude) of each block matrix"
    params = {
        "fraction": Float(0.05, 0.001, 0.5, help="share of each matrix zeroed per burn"),
        "every": Float(SEED_EVERY / SEED_STEPS, 0.005, 1.0, log=True,
                       help="fraction of the run between burns (0.2083: the seed's 50 of its 240 steps)"),
    }
    seed_refs = ("N1", "NF7")
    seed_result = "N1: 1.6109 (-0.001 vs cosine 1.6117, Neutral); NF7 tidal+burn: 1.5915 (~same as tidal's 1.5906)"

    def __init__(self, **values) -> None:
        super().__init__(**values)
        self.due = Every(self.p.every)

    @hookimpl
    def on_step(self, model, optimizers, clock):
        if not self.due(clock):
            return
        for w in split_params(model)["matrix"]:
            burn_(w, self.p.fraction)
