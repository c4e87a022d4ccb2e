"""Thermal vent: every step, boost the gradients of 2 random blocks by a random 2-3x.

After the gradients are accumulated, ``layers`` distinct blocks are drawn uniformly
at random and each gets its own factor drawn uniformly from
``[boost_min, boost_max]``; all gradients of that block are multiplied by it (a
parameter shared by several chosen blocks is boosted once). The draws use
``random.Random`` seeded from the run seed and the step, so every rank boosts the
same blocks and no GPU sync happens. W5: +0.036 (worse); W9 on tidal: neutral.

Muon and Adam normalise each matrix's update, so a boost acts by weighting this
step's gradient more heavily in the blocks' momentum (and Adam's moments) relative
to the other steps, not by enlarging the step itself.
"""

from __future__ import annotations

import random

from torch import nn

from golfplan.core.technique import Float, Int, Technique, hookimpl


def draw_boosts(seed: int, step: int, num_layers: int, layers: int, lo: float, hi: float) -> dict[int, float]:
    """``{block index: factor}`` for this step: ``layers`` distinct blocks, factors uniform in [lo, hi]."""
    rng = random.Random(f"thermal_vent:{seed}:{step}")
    chosen = rng.sample(range(num_layers), min(layers, num_layers))
    return {i: rng.uniform(lo, hi) for i in chosen}


def boost_block_grads(blocks: nn.ModuleList, boosts: dict[int, float]) -> None:
    """Multiply the chosen blocks' gradients by their factors, each parameter once."""
    seen: set[int] = set()
    for i, factor in boosts.items():
        for p in blocks[i].parameters():
            if p.grad is None or id(p) in seen:
                continue
            seen.add(id(p))
            p.grad.mul_(factor)


class ThermalVent(Technique):
    name = "thermal_vent"
    summary = "every step, multiply 2 random blocks' gradients by a random 2-3x"
    params = {
        "layers": Int(2, 1, 16, help="blocks boosted per step"),
        "boost_min": Float(2.0, 1.0, 10.0, help="smallest boost factor"),
        "boost_max": Float(3.0, 1.0, 10.0, help="largest boost factor", at_least="boost_min"),
    }
    seed_refs = ("W5", "W9")
    seed_result = "W5: 1.6472 (+0.036 vs cosine 1.6117, Worse); W9 tidal+thermal vent: 1.6124 (+0.001, Neutral)"

    @hookimpl
    def after_backward(self, model, clock):
        boosts = draw_boosts(clock.seed, clock.step, len(model.blocks), self.p.layers, self.p.boost_min, self.p.boost_max)
        boost_block_grads(model.blocks, boosts)
