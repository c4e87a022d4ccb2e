"""Breathing LR, the seed's "4-7-8" pattern: inhale (warmup), hold (steady), exhale (decay).

The multiplier rises linearly from 0 to 1 over the first ``inhale`` of progress (21 %),
holds 1 for ``hold`` (37 %, so until 0.58), then exhales over the rest of the run
(42 % by default: ``1 - inhale - hold``) along a half cosine down to 0. The seed
names only the three fractions; the decay's shape is not given, and the cosine is
read from tidal, the schedule breathing extends with a plateau. The param ranges keep
the exhale at least 10 % of the run.
"""

from __future__ import annotations

import math

from golfplan.core.technique import Float, Technique, hookimpl


def breathing(progress: float, inhale: float, hold: float) -> float:
    """0 -> 1 linearly over ``inhale``, 1 for ``hold``, then a half cosine to 0 at progress 1."""
    p = min(max(progress, 0.0), 1.0)
    if p < inhale:
        return p / inhale
    start = inhale + hold
    if p <= start:
        return 1.0
    t = (p - start) / max(1.0 - start, 1e-9)
    return 0.5 * (1.0 + math.cos(math.pi * min(t, 1.0)))


class Breathing(Technique):
    name = "breathing"
    summary = "4-7-8 breathing LR: 21 % warmup, 37 % steady at peak, 42 % cosine decay"
    slot = "lr_schedule"
    params = {
        "inhale": Float(0.21, 0.02, 0.4, help="warmup fraction of the run"),
        "hold": Float(0.37, 0.0, 0.5, help="fraction held at the peak LR after the warmup; the rest decays"),
    }
    seed_refs = ("NF1", "C12")
    seed_result = ("NF1: 1.5961 vs cosine baseline 1.6117 (-0.016, Good; tidal's N2 was 1.5906); "
                   "C12 on Parallel+SiLU²: 1.5686 vs tidal's B4 1.5527 (+0.016, Tidal still better)")

    @hookimpl
    def lr_schedule(self, clock, config):
        return breathing(clock.progress, self.p.inhale, self.p.hold)
