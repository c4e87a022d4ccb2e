"""Circadian LR: a day/night sine oscillation overlaid on the cosine decay.

The seed says "day/night sine oscillation overlaid on cosine" without numbers. The
reading chosen here is multiplicative, so the LR stays >= 0 and still ends at 0:

    lr = cosine(p) * (1 + amplitude * sin(2 pi p / period))

with ``period`` the length of one day as a fraction of the run (0.25: four days) and
``amplitude`` 0.2 (days run 20 % above the cosine, nights 20 % below). At every half
period (sunrise, sunset) the multiplier equals the plain cosine.
"""

from __future__ import annotations

import math

from golfplan.core.technique import Float, Technique, hookimpl


def circadian(progress: float, amplitude: float, period: float) -> float:
    """Cosine decay times ``1 + amplitude * sin(2 pi progress / period)``."""
    p = min(max(progress, 0.0), 1.0)
    base = 0.5 * (1.0 + math.cos(math.pi * p))
    return base * (1.0 + amplitude * math.sin(2.0 * math.pi * p / period))


class Circadian(Technique):
    name = "circadian"
    summary = "circadian LR: cosine decay times a day/night sine (+-20 %, 4 days per run)"
    slot = "lr_schedule"
    params = {
        "amplitude": Float(0.2, 0.0, 0.9, help="relative day/night swing around the cosine"),
        "period": Float(0.25, 0.05, 1.0, help="length of one day/night cycle, as a fraction of the run"),
    }
    seed_refs = ("NF3",)
    seed_result = "NF3: 1.6141 vs cosine baseline 1.6117 (+0.002, Neutral)"

    @hookimpl
    def lr_schedule(self, clock, config):
        return circadian(clock.progress, self.p.amplitude, self.p.period)
