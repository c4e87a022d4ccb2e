"""golfplan.core.train.horizon: settings as fractions of the run, the same on a short run and a long one."""

from __future__ import annotations

import pytest

from golfplan.core.train.horizon import Every, decay_per_step, done, half_life_of, horizon_steps
from golfplan.core.state import Clock


def fired(every: Every, clocks) -> list[int]:
    return [c.step + 1 for c in clocks if every(c)]


@pytest.mark.parametrize("steps", [40, 240, 5000])
def test_every_fires_at_the_same_shares_of_a_step_capped_run(steps):
    hits = fired(Every(0.25), [Clock(step=s, iterations=steps) for s in range(steps)])
    assert hits == [steps // 4, steps // 2, 3 * steps // 4, steps]


def test_every_fires_on_the_first_step_reaching_a_multiple_and_at_most_once_a_step():
    assert fired(Every(50 / 240), [Clock(step=s, iterations=40) for s in range(40)]) == [9, 17, 25, 34]
    assert fired(Every(0.001), [Clock(step=s, iterations=40) for s in range(40)]) == list(range(1, 41))


def test_a_steady_wallclock_run_reaches_each_share_at_the_step_a_step_capped_run_does():
    timed = [Clock(step=s, iterations=20_000, elapsed_s=2.5 * s, wallclock_s=600.0) for s in range(240)]
    capped = [Clock(step=s, iterations=240) for s in range(240)]
    assert fired(Every(50 / 240), timed) == fired(Every(50 / 240), capped) == [50, 100, 150, 200]
    # the same share from the second step on (the first has no timed step to set a pace)
    assert [done(c) for c in timed[1:]] == pytest.approx([done(c) for c in capped[1:]])


def test_the_horizon_is_the_iterations_or_the_pace_so_far():
    assert horizon_steps(Clock(step=10, iterations=40)) == 40
    # capped by time: 100 steps in 25 % of the cap -> 400; never above iterations; iterations before any timing
    assert horizon_steps(Clock(step=100, iterations=20_000, elapsed_s=150.0, wallclock_s=600.0)) == pytest.approx(400)
    assert horizon_steps(Clock(step=100, iterations=300, elapsed_s=150.0, wallclock_s=600.0)) == 300
    assert horizon_steps(Clock(step=0, iterations=20_000, elapsed_s=0.0, wallclock_s=600.0)) == 20_000


def test_a_half_life_gives_the_sources_decay_back_at_the_sources_horizon():
    h = half_life_of(0.9965, 4945)  # the record's EMA
    assert h == pytest.approx(0.03998, abs=1e-5)
    assert decay_per_step(h, 4945) == pytest.approx(0.9965, abs=1e-12)
    # the same half-life: the weights of the last 4 % of the run halve on any horizon
    for steps in (40, 240, 4945, 20_000):
        assert decay_per_step(h, steps) ** (h * steps) == pytest.approx(0.5)
