"""Tidal LR: a golden-ratio warmup (38.2 % of the run) then cosine decay to zero.

The seed's biggest schedule win (N2: 1.5906 vs the cosine baseline's 1.6117). The
multiplier rises linearly from 0 to 1 over ``warmup_frac`` of progress, peaks there,
then follows a half cosine down to 0 at progress 1.
"""

from __future__ import annotations

import math

from golfplan.core.technique import Float, Technique, hookimpl


def tidal(progress: float, warmup_frac: float) -> float:
    if progress < warmup_frac:
        return progress / warmup_frac
    t = (progress - warmup_frac) / max(1.0 - warmup_frac, 1e-9)
    return 0.5 * (1.0 + math.cos(math.pi * min(t, 1.0)))


class Tidal(Technique):
    name = "tidal"
    summary = "golden-ratio warmup (38.2 % of the run) then cosine decay"
    slot = "lr_schedule"
    params = {"warmup_frac": Float(0.382, 0.05, 0.7, help="fraction of the run spent warming up")}
    seed_refs = ("N2", "F8")
    seed_result = "N2: 1.5906 vs cosine baseline 1.6117 (-0.021, Winner); F8 (30% warmup on the 1/8 stack): 1.5355, neutral"

    @hookimpl
    def lr_schedule(self, clock, config):
        return tidal(clock.progress, self.p.warmup_frac)
