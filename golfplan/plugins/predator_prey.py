"""Predator-prey schedules: a Lotka-Volterra system drives the LR (prey) and the weight decay (predator).

The seed says "Lotka-Volterra: LR & weight decay oscillate in opposition" (W2) and, for
W10, uses only the oscillating weight decay on top of tidal. The reading chosen here is
the classical system, in units where its equilibrium is (1, 1):

    dx/dt = x (1 - y)          prey x      -> LR multiplier
    dy/dt = g y (x - 1)        predator y  -> weight decay

Weight decay (the predator) grows while the LR is above its equilibrium and pushes the
LR down while it is itself above equilibrium: that is the "opposition" (the predator's
peaks lag the prey's by about a quarter cycle, as in any Lotka-Volterra orbit).
The system starts at ``(prey_start, 1)``, the top of the prey's orbit, so the LR starts
at its peak; it is integrated (RK4) over ``cycles`` full orbits, which span the run's
progress 0 -> 1. The outputs are normalised by the orbit's maxima: the LR multiplier is
``x / max x`` (peak 1) and the weight decay is ``weight_decay * y / max y`` (peak
``wd``). With the defaults (2 cycles, prey_start 2, g 1) the LR swings between 0.2 and
1 and the weight decay between 0.2 wd and wd; the run ends back at the top of an orbit,
as the seed's schedule gave no final decay. ``wd`` defaults to 0.01 (the seed's G3
value; W2 gives none). The trainer applies ``p *= 1 - lr * wd_now`` to the Muon matrices.

``predator_prey`` fills both the ``lr_schedule`` and the ``wd_schedule`` slots (W2);
``predator_prey_wd`` fills only ``wd_schedule``, so it combines with another LR
schedule such as tidal (W10).
"""

from __future__ import annotations

import math
from functools import lru_cache

from golfplan.core.technique import Float, Technique, hookimpl

GRID = 4096  # trajectory samples over the run (progress 0..1), linearly interpolated
SUBSTEPS = 8  # RK4 steps per grid interval
PERIOD_DT = 1e-3  # RK4 step when measuring the orbit's period


def lv_rhs(x: float, y: float, rate_ratio: float) -> tuple[float, float]:
    """The Lotka-Volterra vector field with equilibrium (1, 1)."""
    return x * (1.0 - y), rate_ratio * y * (x - 1.0)


def rk4(x: float, y: float, dt: float, rate_ratio: float) -> tuple[float, float]:
    k1 = lv_rhs(x, y, rate_ratio)
    k2 = lv_rhs(x + 0.5 * dt * k1[0], y + 0.5 * dt * k1[1], rate_ratio)
    k3 = lv_rhs(x + 0.5 * dt * k2[0], y + 0.5 * dt * k2[1], rate_ratio)
    k4 = lv_rhs(x + dt * k3[0], y + dt * k3[1], rate_ratio)
    return (x + dt / 6.0 * (k1[0] + 2 * k2[0] + 2 * k3[0] + k4[0]),
            y + dt / 6.0 * (k1[1] + 2 * k2[1] + 2 * k3[1] + k4[1]))


def lv_invariant(x: float, y: float, rate_ratio: float) -> float:
    """The conserved quantity of the system: ``g (x - ln x) + (y - ln y)``."""
    return rate_ratio * (x - math.log(x)) + (y - math.log(y))


@lru_cache(maxsize=64)
def lv_orbit(prey_start: float, rate_ratio: float) -> tuple[float, float, float]:
    """``(period, max x, max y)`` of the orbit through ``(prey_start, 1)``.

    Starting on y = 1 with x > 1, y first rises; one period ends when y next crosses 1
    upwards (after it has fallen below 1 at the bottom of the prey's orbit).
    """
    x, y, t = prey_start, 1.0, 0.0
    x_max, y_max, below = x, y, False
    while t < 1e4:
        nx, ny = rk4(x, y, PERIOD_DT, rate_ratio)
        if below and y < 1.0 <= ny:
            return t + PERIOD_DT * (1.0 - y) / (ny - y), x_max, y_max
        below = below or ny < 1.0
        x, y, t = nx, ny, t + PERIOD_DT
        x_max, y_max = max(x_max, x), max(y_max, y)
    raise RuntimeError(f"Lotka-Volterra orbit from ({prey_start}, 1) did not close")


@lru_cache(maxsize=64)
def lv_trajectory(cycles: float, prey_start: float, rate_ratio: float) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The raw (x, y) trajectory over ``cycles`` orbits, sampled at GRID + 1 points of progress."""
    period, _, _ = lv_orbit(prey_start, rate_ratio)
    dt = cycles * period / (GRID * SUBSTEPS)
    x, y = prey_start, 1.0
    xs, ys = [x], [y]
    for _ in range(GRID):
        for _ in range(SUBSTEPS):
            x, y = rk4(x, y, dt, rate_ratio)
        xs.append(x)
        ys.append(y)
    return tuple(xs), tuple(ys)


def predator_prey(progress: float, cycles: float, prey_start: float, rate_ratio: float) -> tuple[float, float]:
    """``(lr multiplier, weight-decay fraction)`` at ``progress``: prey and predator over their peaks."""
    xs, ys = lv_trajectory(cycles, prey_start, rate_ratio)
    _, x_max, y_max = lv_orbit(prey_start, rate_ratio)
    pos = min(max(progress, 0.0), 1.0) * GRID
    i = min(int(pos), GRID - 1)
    f = pos - i
    x = xs[i] + f * (xs[i + 1] - xs[i])
    y = ys[i] + f * (ys[i + 1] - ys[i])
    return x / x_max, y / y_max


LV_PARAMS = {
    "cycles": Float(2.0, 0.5, 6.0, help="predator-prey cycles over the run"),
    "prey_start": Float(2.0, 1.2, 4.0, help="initial prey (LR) relative to equilibrium; sets the swing"),
    "rate_ratio": Float(1.0, 0.25, 4.0, log=True, help="predator rate / prey rate (g); shapes the orbit"),
    "wd": Float(0.01, 0.001, 0.1, log=True, help="peak decoupled weight decay (the predator's maximum)"),
}


class PredatorPrey(Technique):
    name = "predator_prey"
    summary = "Lotka-Volterra LR (prey) and weight decay (predator) oscillating in opposition"
    slot = ("lr_schedule", "wd_schedule")
    params = dict(LV_PARAMS)
    seed_refs = ("W2",)
    seed_result = "W2: 1.7981 vs cosine baseline 1.6117 (+0.186, Terrible)"

    def _at(self, clock) -> tuple[float, float]:
        return predator_prey(clock.progress, self.p.cycles, self.p.prey_start, self.p.rate_ratio)

    @hookimpl
    def configure(self, config):
        return {"weight_decay": self.p.wd}

    @hookimpl
    def lr_schedule(self, clock, config):
        return self._at(clock)[0]

    @hookimpl
    def wd_schedule(self, clock, config):
        return config.weight_decay * self._at(clock)[1]


class PredatorPreyWD(Technique):
    name = "predator_prey_wd"
    summary = "Lotka-Volterra oscillating weight decay only (the predator), to pair with any LR schedule"
    slot = "wd_schedule"
    params = dict(LV_PARAMS)
    seed_refs = ("W10",)
    seed_result = "W10 (with tidal): 1.6371 vs tidal alone 1.5906 (+0.025 vs cosine baseline 1.6117, Worse)"

    @hookimpl
    def configure(self, config):
        return {"weight_decay": self.p.wd}

    @hookimpl
    def wd_schedule(self, clock, config):
        _, y = predator_prey(clock.progress, self.p.cycles, self.p.prey_start, self.p.rate_ratio)
        return config.weight_decay * y
