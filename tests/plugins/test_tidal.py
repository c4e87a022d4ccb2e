"""tidal: linear warmup to a peak at 0.382 of the run, then a half cosine to zero."""

from __future__ import annotations

import pytest

from golfplan.core.config import Config
from golfplan.core.hooks import resolve
from golfplan.core.state import Clock
from golfplan.plugins.tidal import Tidal, tidal


def test_tidal_peaks_at_the_golden_fraction():
    assert tidal(0.0, 0.382) == 0.0
    assert tidal(0.191, 0.382) == pytest.approx(0.5)
    assert tidal(0.382, 0.382) == pytest.approx(1.0)
    assert tidal(0.382 + 0.618 / 2, 0.382) == pytest.approx(0.5)
    assert tidal(1.0, 0.382) == pytest.approx(0.0, abs=1e-12)
    grid = [i / 1000 for i in range(1001)]
    values = [tidal(p, 0.382) for p in grid]
    assert grid[values.index(max(values))] == pytest.approx(0.382, abs=1e-3)


def test_tidal_is_the_runs_schedule_and_reads_wallclock_progress():
    hooks = resolve([Tidal(warmup_frac=0.3)])
    # the seed's NF15: ITERATIONS=3000 but a 600 s cap; at the cap the schedule has finished
    at_cap = Clock(step=240, iterations=3000, elapsed_s=600, wallclock_s=600)
    assert hooks.lr_schedule(clock=at_cap, config=Config()) == pytest.approx(0.0, abs=1e-12)
    half_time = Clock(step=120, iterations=3000, elapsed_s=180, wallclock_s=600)
    assert hooks.lr_schedule(clock=half_time, config=Config()) == pytest.approx(1.0)
