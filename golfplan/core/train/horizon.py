"""Settings that mean the same on a 40-step run and a 5,000-step one: fractions of the run.

A technique whose setting is counted in steps (an EMA's decay per step, a warmup of 1500 steps, an
event every 50 steps) changes meaning with the run's length: the record's EMA decay of 0.9965
averages its last 4 % on 4,945 steps but leaves a 40-step run near its initial weights. Such a
setting is stated here as a fraction of the run instead, read off the same clock every LR schedule
reads (``Clock.progress``: ``step / iterations`` on a run capped by steps, the share of the wallclock
cap on one capped by time, whichever is further), and its default is the source's value over the
source's own horizon, so a run as long as the source's gets the source's number back exactly (the
record's 0.9965 at 4,945 steps, the seed's "every 50 steps" at its 240).

Two kinds of setting, two helpers:

* **events and phases** (a burn every 5/24 of the run, a warmup over its first 30 %):
  :func:`done` is the share of the run finished when the current step ends, and :class:`Every` fires
  at the first step that reaches each multiple of its period (at most once a step: a period shorter
  than a step means every step);
* **rates** (an EMA's decay per step): :func:`horizon_steps` is the run's length in steps, exact on a
  run capped by steps; on a run capped by time it is not known in advance, so it is the steps the run
  reaches at its pace so far (steps done over the share of the cap used), which settles on the true
  count as the run goes. :func:`decay_per_step` turns a half-life (a fraction of the run) into a decay.

Everything here reads host floats of the clock: nothing syncs a GPU.
"""

from __future__ import annotations

import math
from typing import Any

EPS = 1e-9  # a multiple reached up to float rounding counts as reached


def done(clock: Any) -> float:
    """The share of the run finished when this step (``clock.step``, counted from 0) ends: its steps
    over ``iterations``, or, capped by time, the share of the cap it will have used (the time at the
    step's start, the last the trainer measured, plus one step at the pace so far: at a steady pace a
    run capped by time reaches each share at the same step as one capped by steps; the first step,
    with no pace yet, counts its step only), whichever is further, at most 1."""
    p = (clock.step + 1) / max(clock.iterations, 1)
    if clock.wallclock_s > 0 and clock.step > 0:
        p = max(p, clock.elapsed_s * (clock.step + 1) / clock.step / clock.wallclock_s)
    return min(max(p, 0.0), 1.0)


def horizon_steps(clock: Any) -> float:
    """The run's length in steps: ``iterations`` when capped by steps; capped by time, the steps it
    reaches at its pace so far (``step / (elapsed / cap)``, at most ``iterations``), or ``iterations``
    before any step has been timed."""
    if clock.wallclock_s > 0 and clock.step > 0 and clock.elapsed_s > 0:
        return min(float(clock.iterations), clock.step * clock.wallclock_s / clock.elapsed_s)
    return float(max(clock.iterations, 1))


def decay_per_step(half_life: float, steps: float) -> float:
    """The per-step decay whose weights halve every ``half_life`` of a ``steps``-step run."""
    return 0.5 ** (1.0 / (half_life * max(steps, 1.0)))


def half_life_of(decay: float, steps: float) -> float:
    """The inverse: the half-life, as a fraction of a ``steps``-step run, of a per-step ``decay``."""
    return math.log(0.5) / math.log(decay) / steps


class Every:
    """Fires at the first step whose :func:`done` reaches each multiple of ``period`` (a fraction of the
    run), at most once a step. One instance per run (a technique keeps it on ``self``)."""

    def __init__(self, period: float) -> None:
        self.period = period
        self.fired = 0  # multiples reached so far

    def __call__(self, clock: Any) -> bool:
        reached = int(math.floor(done(clock) / self.period + EPS))
        if reached > self.fired:
            self.fired = reached
            return True
        return False
