"""Cosine LR schedules: the seed's baseline, cosine with a floor, and cosine restarts.

* ``cosine``: a half cosine from 1 at progress 0 to 0 at progress 1, no warmup. The
  seed's log calls its baseline just "Cosine LR" (1.6117 BPB, 240 steps); this is that
  reading, read from ``progress`` so a wallclock-capped run still reaches 0 (the
  seed's NF16 ran with ``ITERATIONS=3000`` and stopped at 8 % of its cosine).
* ``cosine_min``: the same cosine squeezed into ``[min_frac, 1]``:
  ``min_frac + (1 - min_frac) * cosine``. The seed's N5 tried the golden fraction
  0.382 and never got a number (an indentation bug zeroed its loss).
* ``cosine_2cycle``: ``cycles`` equal cosine decays back to back, each restarting at 1
  (warm restarts without warmup); the run ends at 0. The seed's experiment 5 used two.
"""

from __future__ import annotations

import math

from golfplan.core.technique import Float, Int, Technique, hookimpl


def cosine(progress: float) -> float:
    """Half cosine: 1 at progress 0, 0.5 at 0.5, 0 at 1."""
    t = min(max(progress, 0.0), 1.0)
    return 0.5 * (1.0 + math.cos(math.pi * t))


def cosine_min(progress: float, min_frac: float) -> float:
    """Cosine from 1 down to ``min_frac`` (never below it)."""
    return min_frac + (1.0 - min_frac) * cosine(progress)


def cosine_cycles(progress: float, cycles: int) -> float:
    """``cycles`` cosine decays of equal length; each starts at 1, the last ends at 0."""
    p = min(max(progress, 0.0), 1.0)
    k = min(int(p * cycles), cycles - 1)
    return cosine(p * cycles - k)


class Cosine(Technique):
    name = "cosine"
    summary = "cosine decay from 1 to 0 over the run (the seed's baseline schedule)"
    slot = "lr_schedule"
    seed_refs = ("baseline",)
    seed_result = ("baseline: 1.6117 BPB (9L/512D, 240 steps, 600 s cap, RTX 4000 Ada); "
                   "NF16 at ITERATIONS=3000: 1.6271, INVALID (schedule stopped at 8 %)")

    @hookimpl
    def lr_schedule(self, clock, config):
        return cosine(clock.progress)


class CosineMin(Technique):
    name = "cosine_min"
    summary = "cosine decay from 1 to a floor min_frac (golden 0.382 by default)"
    slot = "lr_schedule"
    params = {"min_frac": Float(0.382, 0.0, 0.6, help="LR floor as a fraction of the peak (0.382: golden ratio)")}
    seed_refs = ("N5",)
    seed_result = "N5: 4.1069 BROKEN (indentation bug from patching, train_loss=0.0000); no valid number"

    @hookimpl
    def lr_schedule(self, clock, config):
        return cosine_min(clock.progress, self.p.min_frac)


class Cosine2Cycle(Technique):
    name = "cosine_2cycle"
    summary = "cosine warm restarts: two (or `cycles`) cosine decays back to back"
    slot = "lr_schedule"
    params = {"cycles": Int(2, 2, 5, help="number of cosine decays over the run")}
    seed_refs = ("5",)
    seed_result = "5: 1.7383 vs cosine baseline 1.6117 (+0.127, Much worse)"

    @hookimpl
    def lr_schedule(self, clock, config):
        return cosine_cycles(clock.progress, self.p.cycles)
