"""Noise and significance: mean ± std over seeds, Welch's t-test against the baseline, verdicts.

Verdict words are the seed log's, with fixed meanings (``alpha`` = 0.05 by default):

    Winner       better than the baseline, significantly (Welch p < alpha, both sides >= 2 runs)
                 AND by more than the noise floor (the std of the baseline's repeats)
    Slight help  better by more than the noise floor with a single run on a side (no test is
                 possible), or significantly better but by less than the noise floor
    Neutral      anything else that is not significantly worse
    Worse        worse, significantly; with a single run, worse by more than the noise floor
    Broken       every run failed (NaN, no learning, crash, timeout, OOM)
    Refused      the preflight check refused the combination: nothing was trained

While the baseline has fewer than two runs its noise floor is not measured: the study's
``noise_floor`` (0.002 BPB, the seed's eyeballed figure) stands in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

WINNER, SLIGHT, NEUTRAL, WORSE, BROKEN, REFUSED = "Winner", "Slight help", "Neutral", "Worse", "Broken", "Refused"
BASELINE, PRUNED = "Baseline", "Pruned"


@dataclass(frozen=True)
class Summary:
    mean: float
    std: float  # sample std (ddof=1); 0 for a single value
    n: int

    def fmt(self, digits: int = 4) -> str:
        if self.n <= 1:
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f} (n={self.n})"


def summarize(values: Sequence[float]) -> Summary | None:
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return None
    n = len(vals)
    mean = sum(vals) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1)) if n > 1 else 0.0
    return Summary(mean, std, n)


def welch_p(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Two-sided p of Welch's t-test (unequal variances); None with fewer than 2 values a side."""
    if len(a) < 2 or len(b) < 2:
        return None
    from scipy.stats import ttest_ind

    sa, sb = summarize(a), summarize(b)
    assert sa is not None and sb is not None
    if sa.std == 0 and sb.std == 0:  # identical repeats: the difference is exact (or nothing)
        return 0.0 if sa.mean != sb.mean else 1.0
    p = float(ttest_ind(list(a), list(b), equal_var=False).pvalue)
    return p if math.isfinite(p) else None


def noise_floor(baseline: Sequence[float], default: float) -> float:
    """The std of the baseline's repeats; ``default`` while there are fewer than two."""
    s = summarize(baseline)
    return s.std if s is not None and s.n >= 2 else default


@dataclass(frozen=True)
class Verdict:
    word: str
    delta: float | None = None  # mean(candidate) - mean(baseline); negative is better (BPB)
    p: float | None = None
    floor: float | None = None

    def fmt_delta(self) -> str:
        if self.delta is None:
            return "—"
        text = f"{self.delta:+.4f}" if abs(self.delta) < 0.1 else f"{self.delta:+.3f}"
        return text + (f" (p={self.p:.2g})" if self.p is not None else "")


def verdict(candidate: Sequence[float], baseline: Sequence[float], alpha: float = 0.05,
            default_floor: float = 0.002) -> Verdict:
    """Compare a configuration's final BPBs with the baseline's (lower is better)."""
    cs, bs = summarize(candidate), summarize(baseline)
    if cs is None:
        return Verdict(BROKEN)
    if bs is None:
        return Verdict(NEUTRAL)
    delta = cs.mean - bs.mean
    floor = noise_floor(baseline, default_floor)
    p = welch_p(candidate, baseline)
    if p is None:  # a single run on one side: no test, only the noise floor
        if -delta > floor:
            return Verdict(SLIGHT, delta, None, floor)
        if delta > floor:
            return Verdict(WORSE, delta, None, floor)
        return Verdict(NEUTRAL, delta, None, floor)
    if p < alpha and delta < 0:
        return Verdict(WINNER if -delta > floor else SLIGHT, delta, p, floor)
    if p < alpha and delta > 0:
        return Verdict(WORSE, delta, p, floor)
    return Verdict(NEUTRAL, delta, p, floor)


def improves(candidate: Sequence[float], current: Sequence[float], alpha: float, default_floor: float) -> bool:
    """True when ``candidate`` beats ``current`` as a Winner would (greedy stacking's test).

    With a single run on a side no test is possible: the improvement must then exceed the
    noise floor (a Slight help), which is the most a single run can show.
    """
    v = verdict(candidate, current, alpha, default_floor)
    if v.word == WINNER:
        return True
    return v.word == SLIGHT and v.p is None


def expected_improvement(harm: float, spread: float) -> float:
    """E[max(0, -X)] for X ~ N(harm, spread²): what a change whose measured harm is ``harm`` may gain."""
    if spread <= 0:
        return max(0.0, -harm)
    z = -harm / spread
    return spread * math.exp(-z * z / 2) / math.sqrt(2 * math.pi) + (-harm) * 0.5 * math.erfc(-z / math.sqrt(2))


def two_sided_p(delta: float, se: float) -> float:
    """The two-sided p of a difference ``delta`` with standard error ``se`` (normal approximation)."""
    return math.erfc(abs(delta) / (se * math.sqrt(2))) if se > 0 else (0.0 if delta else 1.0)
