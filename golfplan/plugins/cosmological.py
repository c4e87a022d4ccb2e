"""Cosmological cooling LR: ``lr ∝ 1/sqrt(1 + alpha * step)``, the Big Bang cooling law.

The seed states the law per optimizer step. Read per step literally, the schedule
would change shape with the step count (a 20,000-step run cools far more than a
240-step one, and a wallclock-capped run would not know where it stands). It is
therefore expressed in progress, with ``alpha`` kept in the seed's units, per step of
its 240-step runs (``REF_STEPS``):

    lr(p) = 1 / sqrt(1 + alpha * REF_STEPS * p)

so a 240-step run reproduces the seed's law step for step, and any other run follows
the same curve over its own progress. The seed gives no alpha; 0.05 per seed step is
chosen (the LR cools to 1/sqrt(13) = 0.28 of its peak at the end, no warmup).
"""

from __future__ import annotations

import math

from golfplan.core.technique import Float, Technique, hookimpl

REF_STEPS = 240  # steps of the seed's runs (600 s cap on an RTX 4000 Ada), the unit of alpha


def cosmological(progress: float, alpha: float) -> float:
    """``1 / sqrt(1 + alpha * REF_STEPS * progress)``: 1 at the start, monotone decreasing."""
    p = min(max(progress, 0.0), 1.0)
    return 1.0 / math.sqrt(1.0 + alpha * REF_STEPS * p)


class Cosmological(Technique):
    name = "cosmological"
    summary = "cosmological cooling LR: lr ∝ 1/sqrt(1 + alpha·step), alpha per step of a 240-step run"
    slot = "lr_schedule"
    params = {"alpha": Float(0.05, 0.001, 1.0, log=True,
                             help="cooling rate per step of the seed's 240-step run (scaled to progress)")}
    seed_refs = ("NF4",)
    seed_result = "NF4: 1.6129 vs cosine baseline 1.6117 (+0.001, Neutral)"

    @hookimpl
    def lr_schedule(self, clock, config):
        return cosmological(clock.progress, self.p.alpha)
