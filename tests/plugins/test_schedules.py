"""The LR and weight-decay schedule plugins: values at named progress points, and one real run with weight decay."""

from __future__ import annotations

import math

import pytest
import torch

from golfplan.core.errors import ConfigError
from golfplan.core.hooks import apply_configure, resolve
from golfplan.core.train.optim import split_params
from golfplan.core.state import Clock
from golfplan.core.technique import Technique, hookimpl
from golfplan.plugins.breathing import Breathing, breathing
from golfplan.plugins.circadian import Circadian, circadian
from golfplan.plugins.cosine import Cosine, Cosine2Cycle, CosineMin, cosine, cosine_cycles, cosine_min
from golfplan.plugins.cosmological import REF_STEPS, Cosmological, cosmological
from golfplan.plugins.predator_prey import (PredatorPrey, PredatorPreyWD, lv_invariant, lv_orbit, predator_prey)
from golfplan.plugins.punctuated import Punctuated, punctuated
from golfplan.plugins.whale_dive import WhaleDive, whale_dive
from golfplan.plugins.wd_ramp import WdRamp, wd_ramp
from tests.conftest import run_tiny, tiny_config

GRID = [i / 1000 for i in range(1001)]


def local_minima(values: list[float]) -> list[int]:
    """Indices of strict local minima, the endpoints included (compared with their one neighbour)."""
    out = []
    for i, v in enumerate(values):
        left = values[i - 1] if i > 0 else math.inf
        right = values[i + 1] if i + 1 < len(values) else math.inf
        if v < left and v <= right:
            out.append(i)
    return out


def local_maxima(values: list[float]) -> list[int]:
    return [i for i in range(1, len(values) - 1) if values[i - 1] < values[i] >= values[i + 1]]


# ---- cosine family -------------------------------------------------------------------


def test_cosine_named_points():
    assert cosine(0.0) == pytest.approx(1.0)
    assert cosine(0.5) == pytest.approx(0.5)
    assert cosine(1.0) == pytest.approx(0.0, abs=1e-12)
    assert cosine(0.25) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert all(a >= b for a, b in zip(map(cosine, GRID), map(cosine, GRID[1:])))


def test_cosine_min_keeps_its_floor():
    values = [cosine_min(p, 0.382) for p in GRID]
    assert min(values) == pytest.approx(0.382)
    assert min(values) >= 0.382 - 1e-12
    assert values[0] == pytest.approx(1.0) and values[-1] == pytest.approx(0.382)
    assert cosine_min(0.5, 0.382) == pytest.approx(0.382 + 0.618 * 0.5)
    assert CosineMin().p.min_frac == 0.382


def test_cosine_two_cycles_has_two_peaks():
    values = [cosine_cycles(p, 2) for p in GRID]
    peaks = [i for i, v in enumerate(values) if v == pytest.approx(1.0)]
    assert [GRID[i] for i in peaks] == [0.0, 0.5]
    assert cosine_cycles(0.25, 2) == pytest.approx(0.5)
    assert cosine_cycles(0.4999, 2) < 1e-6 and cosine_cycles(1.0, 2) == pytest.approx(0.0, abs=1e-12)
    assert cosine_cycles(0.75, 2) == pytest.approx(cosine(0.5))
    assert [GRID[i] for i in local_minima(values)] == [0.499, 1.0]


# ---- breathing, whale dive, circadian, cosmological, punctuated ------------------------


def test_breathing_warmup_hold_decay():
    b = lambda p: breathing(p, 0.21, 0.37)  # noqa: E731
    assert b(0.0) == 0.0
    assert b(0.105) == pytest.approx(0.5)
    assert all(b(p) == 1.0 for p in GRID if 0.21 <= p <= 0.58)
    assert b(0.58 + 0.21) == pytest.approx(0.5)  # half way through the 42 % exhale
    assert b(1.0) == pytest.approx(0.0, abs=1e-12)
    assert b(0.2) < 1.0 and b(0.6) < 1.0
    tech = Breathing()
    assert (tech.p.inhale, tech.p.hold) == (0.21, 0.37)


def test_whale_dive_three_dives_sharp_recoveries():
    depth, rec = 0.1, 0.1
    values = [whale_dive(p, 3, depth, rec) for p in GRID]
    minima = local_minima(values)
    assert len(minima) == 3
    cycle = 1 / (3 - rec)
    bottoms = [(k + 1 - rec) * cycle for k in range(3)]
    assert [GRID[i] for i in minima] == pytest.approx(bottoms, abs=1.5e-3)
    for b in bottoms:
        assert whale_dive(b, 3, depth, rec) == pytest.approx(depth)
    assert values[0] == 1.0 and values[-1] == pytest.approx(depth)
    for k in (1, 2):  # back at the surface at the start of dives 2 and 3
        assert whale_dive(k * cycle, 3, depth, rec) == pytest.approx(1.0)
    # recovery is sharper than the dive: it climbs 1 - depth in a tenth of the time
    dive_slope = (1 - depth) / ((1 - rec) * cycle)
    rise_slope = (whale_dive(cycle - 1e-4, 3, depth, rec) - whale_dive(bottoms[0] + 1e-4, 3, depth, rec)) / (
        cycle - bottoms[0] - 2e-4)
    assert rise_slope == pytest.approx((1 - depth) / (rec * cycle), rel=1e-3)
    assert rise_slope > 5 * dive_slope


def test_circadian_day_and_night_around_cosine():
    a, period = 0.2, 0.25
    for k in range(9):  # sunrise and sunset: exactly the cosine
        p = k * period / 2
        assert circadian(p, a, period) == pytest.approx(cosine(p), abs=1e-12)
    assert circadian(period / 4, a, period) == pytest.approx(cosine(period / 4) * 1.2)  # noon
    assert circadian(3 * period / 4, a, period) == pytest.approx(cosine(3 * period / 4) * 0.8)  # midnight
    assert circadian(1.0, a, period) == pytest.approx(0.0, abs=1e-12)
    ratio = [circadian(p, a, period) / cosine(p) for p in GRID[:-1]]  # the overlay on the cosine
    noons = [GRID[i] for i in local_maxima(ratio)]
    assert noons == pytest.approx([0.0625, 0.3125, 0.5625, 0.8125], abs=1e-3)  # four days
    assert max(ratio) == pytest.approx(1 + a, abs=1e-4) and min(ratio) == pytest.approx(1 - a, abs=1e-4)
    assert (Circadian().p.amplitude, Circadian().p.period) == (a, period)


def test_cosmological_follows_the_inverse_sqrt_law():
    alpha = 0.05
    values = [cosmological(p, alpha) for p in GRID]
    assert values[0] == 1.0
    assert all(a > b for a, b in zip(values, values[1:]))
    for p, v in zip(GRID, values):  # 1/lr^2 - 1 is linear in the step of a 240-step run
        assert 1 / v**2 - 1 == pytest.approx(alpha * REF_STEPS * p, abs=1e-9)
    assert values[-1] == pytest.approx(1 / math.sqrt(13))
    tech = Cosmological(alpha=alpha)
    for step in (0, 1, 17, 120, 239):  # a 240-step run is the seed's per-step law, step for step
        clock = Clock(step=step, iterations=REF_STEPS)
        assert tech.lr_schedule(clock, None) == pytest.approx(1 / math.sqrt(1 + alpha * step))
    # the same curve whatever the step count: half way through 240 or 20,000 steps
    assert tech.lr_schedule(Clock(step=10_000, iterations=20_000), None) == pytest.approx(
        tech.lr_schedule(Clock(step=120, iterations=240), None))


def test_punctuated_bursts_at_quarters():
    values = [punctuated(p, 3, 0.1, 0.9, 0.03) for p in GRID]
    assert [GRID[i] for i in local_maxima(values)] == [0.25, 0.5, 0.75]
    for c in (0.25, 0.5, 0.75):
        assert punctuated(c, 3, 0.1, 0.9, 0.03) == pytest.approx(1.0, abs=1e-3)
    for rest in (0.0, 0.125, 0.375, 0.625, 0.875, 1.0):
        assert punctuated(rest, 3, 0.1, 0.9, 0.03) == pytest.approx(0.1, abs=1e-3)
    # one std away from a burst: base + height * exp(-1/2)
    assert punctuated(0.53, 3, 0.1, 0.9, 0.03) == pytest.approx(0.1 + 0.9 * math.exp(-0.5), abs=1e-6)
    assert min(values) >= 0.1


# ---- predator-prey -------------------------------------------------------------------


def test_predator_prey_is_a_real_lotka_volterra_orbit():
    cycles, x0, g = 2.0, 2.0, 1.0
    _, x_max, y_max = lv_orbit(x0, g)
    assert x_max == x0
    pts = [predator_prey(p, cycles, x0, g) for p in GRID]
    lr = [a for a, _ in pts]
    wd = [b for _, b in pts]
    assert lr[0] == 1.0 and wd[0] == pytest.approx(1 / y_max)
    assert max(lr) == pytest.approx(1.0) and max(wd) == pytest.approx(1.0, abs=1e-4)
    # two full orbits: back at the start half way and at the end
    for p in (0.5, 1.0):
        assert predator_prey(p, cycles, x0, g) == pytest.approx((1.0, 1 / y_max), abs=1e-4)
    # the conserved quantity of Lotka-Volterra stays constant along the integrated trajectory
    v0 = lv_invariant(x0, 1.0, g)
    for a, b in pts[::25]:
        assert lv_invariant(a * x_max, b * y_max, g) == pytest.approx(v0, rel=1e-5)


def test_predator_prey_lr_and_wd_in_opposition():
    x0, g = 2.0, 1.0
    _, x_max, y_max = lv_orbit(x0, g)
    pts = [predator_prey(p, 2.0, x0, g) for p in GRID]
    checked = 0
    for (x_a, y_a), (x_b, y_b) in zip(pts, pts[1:]):
        x, y = (x_a + x_b) / 2 * x_max, (y_a + y_b) / 2 * y_max  # back to equilibrium units (1, 1)
        if abs(y - 1) > 0.05:  # a weight decay above its equilibrium drives the LR down, below lets it grow
            assert (x_b - x_a) * (1 - y) > 0
            checked += 1
        if abs(x - 1) > 0.05:  # an LR above its equilibrium makes the weight decay grow, below shrink
            assert (y_b - y_a) * (x - 1) > 0
    assert checked > 500
    lr = [a for a, _ in pts]
    wd = [b for _, b in pts]
    # at the weight decay's peaks the LR is falling, at its troughs the LR is rising
    peaks, troughs = local_maxima(wd), [i for i in local_minima(wd) if 0 < i < len(wd) - 1]
    assert len(peaks) == 2 and len(troughs) == 2
    assert all(lr[i + 1] < lr[i - 1] for i in peaks)
    assert all(lr[i + 1] > lr[i - 1] for i in troughs)
    assert min(lr) == pytest.approx(0.203, abs=2e-3)


def test_predator_prey_hooks_share_one_system():
    both, wd_only = PredatorPrey(wd=0.02), PredatorPreyWD(wd=0.02)
    config = apply_configure(resolve([both]), tiny_config())
    assert config.weight_decay == 0.02
    for step in (0, 7, 15, 29):
        clock = Clock(step=step, iterations=30)
        lr, frac = predator_prey(clock.progress, 2.0, 2.0, 1.0)
        assert both.lr_schedule(clock, config) == pytest.approx(lr)
        assert both.wd_schedule(clock, config) == pytest.approx(0.02 * frac)
        assert wd_only.wd_schedule(clock, config) == pytest.approx(0.02 * frac)
    assert PredatorPrey.slots() == ("lr_schedule", "wd_schedule")
    assert PredatorPreyWD.slots() == ("wd_schedule",)


# ---- weight-decay ramp ---------------------------------------------------------------


def test_wd_ramp_zero_to_wd():
    assert wd_ramp(0.0, 0.01) == 0.0
    assert wd_ramp(0.5, 0.01) == pytest.approx(0.005)
    assert wd_ramp(1.0, 0.04) == pytest.approx(0.04)
    tech = WdRamp(wd=0.04)
    config = apply_configure(resolve([tech]), tiny_config())
    assert config.weight_decay == 0.04
    assert tech.wd_schedule(Clock(step=15, iterations=30), config) == pytest.approx(0.02)
    with pytest.raises(ConfigError, match="weight_decay"):  # an explicit, different value is refused
        apply_configure(resolve([tech]), tiny_config(weight_decay=0.1), explicit={"weight_decay"})


# ---- every LR schedule reads the clock's progress (steps or wallclock) ------------------


LR_PLUGINS = [
    (Cosine(), lambda p: cosine(p)),
    (CosineMin(), lambda p: cosine_min(p, 0.382)),
    (Cosine2Cycle(), lambda p: cosine_cycles(p, 2)),
    (Breathing(), lambda p: breathing(p, 0.21, 0.37)),
    (WhaleDive(), lambda p: whale_dive(p, 3, 0.1, 0.1)),
    (Circadian(), lambda p: circadian(p, 0.2, 0.25)),
    (Cosmological(), lambda p: cosmological(p, 0.05)),
    (Punctuated(), lambda p: punctuated(p, 3, 0.1, 0.9, 0.03)),
    (PredatorPrey(), lambda p: predator_prey(p, 2.0, 2.0, 1.0)[0]),
]


@pytest.mark.parametrize("tech,fn", LR_PLUGINS, ids=[t.name for t, _ in LR_PLUGINS])
def test_lr_hook_reads_progress(tech, fn):
    assert tech.slots()[0] == "lr_schedule"
    clocks = [Clock(step=s, iterations=240) for s in (0, 60, 91, 120, 200, 240)]
    # a wallclock-capped run with too many iterations still walks its whole schedule (NF15/NF16)
    clocks += [Clock(step=100, iterations=3000, elapsed_s=e, wallclock_s=600.0) for e in (150.0, 450.0, 600.0)]
    for clock in clocks:
        m = tech.lr_schedule(clock, None)
        assert m == pytest.approx(fn(clock.progress))
        assert math.isfinite(m) and m >= 0


# ---- one real run: the trainer applies the scheduled weight decay ------------------------


class Probe(Technique):
    """Records the Muon matrices after every optimizer step (the last record is the trained model)."""

    name = "probe"
    summary = "test probe"

    def __init__(self) -> None:
        super().__init__()
        self.matrices: list[torch.Tensor] = []

    @hookimpl
    def on_step(self, model, optimizers, clock):
        self.matrices = [p.detach().clone() for p in split_params(model)["matrix"]]


def test_wd_ramp_shrinks_the_matrices_in_a_real_run():
    plain, decayed = Probe(), Probe()
    small = dict(iterations=12, num_layers=2)  # the same seed and data for both runs
    r0 = run_tiny(techniques=[plain], **small)
    r1 = run_tiny(techniques=[WdRamp(wd=0.1), decayed], **small)
    assert r0.status == r1.status == "complete", (r0.reason, r1.reason)
    assert r1.config["weight_decay"] == 0.1 and r0.config["weight_decay"] == 0.0
    assert len(plain.matrices) == len(decayed.matrices) > 0
    for a, b in zip(plain.matrices, decayed.matrices):
        assert not torch.equal(a, b)
    norm = lambda ms: math.sqrt(sum(float(m.pow(2).sum()) for m in ms))  # noqa: E731
    assert norm(decayed.matrices) < 0.995 * norm(plain.matrices)  # measured: 0.987
