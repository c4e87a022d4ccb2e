"""Verdicts: Winner only when significant AND beyond the noise floor."""

from __future__ import annotations

import random

import pytest
from scipy.stats import ttest_ind

from golfplan.planner.stats import (NEUTRAL, SLIGHT, WINNER, WORSE, improves, noise_floor, summarize, verdict,
                                    welch_p)


def draws(mean, sd, n, seed):
    rng = random.Random(seed)
    return [rng.gauss(mean, sd) for _ in range(n)]


def test_summary_mean_std_n():
    s = summarize([1.0, 2.0, 3.0])
    assert (s.mean, s.n) == (2.0, 3) and s.std == pytest.approx(1.0)
    assert s.fmt() == "2.0000 ± 1.0000 (n=3)"
    assert summarize([1.5]).fmt() == "1.5000"
    assert summarize([]) is None and summarize([float("nan")]) is None


def test_welch_matches_scipy_and_needs_two_a_side():
    a, b = draws(1.0, 0.01, 5, 1), draws(1.02, 0.03, 4, 2)
    assert welch_p(a, b) == pytest.approx(ttest_ind(a, b, equal_var=False).pvalue)
    assert welch_p([1.0], b) is None
    assert welch_p([1.0, 1.0], [2.0, 2.0]) == 0.0 and welch_p([1.0, 1.0], [1.0, 1.0]) == 1.0


def test_noise_floor_is_the_baseline_std_or_the_default():
    assert noise_floor([1.0, 1.002, 0.998], 0.5) == pytest.approx(0.002)
    assert noise_floor([1.0], 0.002) == 0.002


def test_a_real_large_effect_is_a_winner():
    base = draws(1.60, 0.001, 4, 3)
    v = verdict(draws(1.58, 0.001, 4, 4), base)
    assert v.word == WINNER and v.p < 0.05 and v.delta == pytest.approx(-0.02, abs=0.003)


def test_one_lucky_run_is_never_a_winner():
    base = draws(1.60, 0.002, 4, 5)
    v = verdict([1.55], base)  # much better, but a single run: no test possible
    assert v.word == SLIGHT and v.p is None
    v = verdict([1.5995], base)  # within the floor
    assert v.word == NEUTRAL


def test_noise_is_neutral_however_good_one_repeat_looked():
    base = [1.600, 1.605, 1.595, 1.602]
    cand = [1.590, 1.610, 1.596, 1.604]  # one run 0.01 better, the mean about the same
    assert verdict(cand, base).word == NEUTRAL


def test_significant_but_below_the_floor_is_slight_help():
    base = [1.600, 1.610, 1.590, 1.600, 1.605, 1.595] * 3  # std ~0.0066
    cand = [x - 0.005 for x in base]  # exactly 0.005 better every time: significant, < floor
    v = verdict(cand, base)
    assert v.p < 0.05 and -v.delta < v.floor and v.word == SLIGHT


def test_significantly_worse_is_worse():
    v = verdict(draws(1.62, 0.001, 3, 6), draws(1.60, 0.001, 3, 7))
    assert v.word == WORSE and v.delta > 0


def test_improves_is_the_greedy_stacking_test():
    base = draws(1.60, 0.001, 3, 8)
    assert improves(draws(1.58, 0.001, 3, 9), base, 0.05, 0.002)
    assert not improves(draws(1.5995, 0.001, 3, 10), base, 0.05, 0.002)
    assert improves([1.59], [1.60], 0.05, 0.002)  # single runs: beyond the floor is all one can show
    assert not improves([1.599], [1.60], 0.05, 0.002)
