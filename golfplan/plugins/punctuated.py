"""Punctuated equilibrium LR: a low resting LR with short gaussian bursts.

The seed says "low LR + gaussian bursts at 25/50/75 % progress". The reading chosen:

    lr = base + height * sum_k exp(-(p - c_k)^2 / (2 width^2)),  c_k = k / (bursts + 1)

With the defaults (3 bursts at 0.25/0.5/0.75, ``base`` 0.1, ``height`` 0.9, ``width``
0.03 of the run) the LR rests at 10 % of its peak and each burst reaches the full
peak (1.0) for a few percent of the run; there is no final decay beyond the resting
level.
"""

from __future__ import annotations

import math

from golfplan.core.technique import Float, Int, Technique, hookimpl


def burst_centers(bursts: int) -> list[float]:
    """Evenly spaced burst positions: 0.25/0.5/0.75 for three."""
    return [k / (bursts + 1) for k in range(1, bursts + 1)]


def punctuated(progress: float, bursts: int, base: float, height: float, width: float) -> float:
    """``base`` plus ``bursts`` gaussian bursts of ``height`` and std ``width`` at k/(bursts+1)."""
    p = min(max(progress, 0.0), 1.0)
    return base + height * sum(math.exp(-0.5 * ((p - c) / width) ** 2) for c in burst_centers(bursts))


class Punctuated(Technique):
    name = "punctuated"
    summary = "punctuated equilibrium LR: low resting LR with gaussian bursts at 25/50/75 %"
    slot = "lr_schedule"
    params = {
        "bursts": Int(3, 1, 7, help="number of evenly spaced bursts (3: at 25/50/75 %)"),
        "base": Float(0.1, 0.0, 0.5, help="resting LR between bursts, as a fraction of the peak"),
        "height": Float(0.9, 0.1, 2.0, help="burst height added to the resting LR"),
        "width": Float(0.03, 0.005, 0.15, help="burst standard deviation, as a fraction of the run"),
    }
    seed_refs = ("W3",)
    seed_result = "W3: 1.8581 vs cosine baseline 1.6117 (+0.246, Terrible)"

    @hookimpl
    def lr_schedule(self, clock, config):
        return punctuated(clock.progress, self.p.bursts, self.p.base, self.p.height, self.p.width)
