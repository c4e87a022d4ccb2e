"""Whale dive LR: ``dives`` slow dives, each followed by a sharp recovery to the surface.

The seed says only "3 dive cycles with sharp recoveries". The reading chosen here:
the LR starts at the surface (1) and dives along a half cosine down to ``depth`` (a
fraction of the peak); it then resurfaces along a straight line back to 1 in a short
``recovery`` fraction of a cycle (the sharp recovery), and dives again. The last dive
does not resurface: the run ends at the bottom of dive ``dives``, so the schedule has
exactly ``dives`` minima (the last one at progress 1) and ``dives - 1`` recoveries.
With cycle length ``c = 1 / (dives - recovery)`` the k-th dive (k = 0, 1, ...) spans
``[k c, (k + 1 - recovery) c]``.
"""

from __future__ import annotations

import math

from golfplan.core.technique import Float, Int, Technique, hookimpl


def whale_dive(progress: float, dives: int, depth: float, recovery: float) -> float:
    """Cosine dives from 1 to ``depth``, linear recoveries to 1; ends at the bottom of the last dive."""
    p = min(max(progress, 0.0), 1.0)
    cycle = 1.0 / (dives - recovery)
    k = min(int(p / cycle), dives - 1)
    t = p / cycle - k  # position inside cycle k, in [0, 1 - recovery] for the last one
    descent = 1.0 - recovery
    if t <= descent:
        return depth + (1.0 - depth) * 0.5 * (1.0 + math.cos(math.pi * min(t / descent, 1.0)))
    return depth + (1.0 - depth) * (t - descent) / recovery


class WhaleDive(Technique):
    name = "whale_dive"
    summary = "whale dive LR: 3 cosine dives to a low LR, each with a sharp linear recovery"
    slot = "lr_schedule"
    params = {
        "dives": Int(3, 1, 6, help="number of dives (LR minima); the run ends at the bottom of the last"),
        "depth": Float(0.1, 0.0, 0.5, help="LR at the bottom of a dive, as a fraction of the peak"),
        "recovery": Float(0.1, 0.02, 0.3, help="fraction of each cycle spent resurfacing (sharp recovery)"),
    }
    seed_refs = ("NF2",)
    seed_result = "NF2: 1.6487 vs cosine baseline 1.6117 (+0.037, Worse)"

    @hookimpl
    def lr_schedule(self, clock, config):
        return whale_dive(clock.progress, self.p.dives, self.p.depth, self.p.recovery)
