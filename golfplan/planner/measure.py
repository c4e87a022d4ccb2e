"""What the plan strategy knows of a configuration, and what it may still spend: :class:`Lab`.

Every measurement of the strategy goes through one Lab: ``ensure(plugins, n)`` makes sure a
configuration has ``n`` runs *claimed* (the study's own first, new ones queued and run through the
Planner), ``measured(plugins)`` reads what this session claimed of it, ``compare`` gives a difference
of means and its standard error against the noise pooled over every configuration with repeats. A
session sees only the runs it claimed, in the order it claimed them, so a resumed session makes the
same decisions on the same numbers and runs only what the first did not finish.

A run that fails (a crash, a NaN) is retried once with another seed: a configuration counts as
measured when at least half its runs completed, so one flaky crash does not drop a technique, while
one that fails twice is broken. Runs over the artifact limit make a configuration infeasible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from golfplan.planner.configs import TrialConfig
from golfplan.planner.definition import Plugins, describe_plugins
from golfplan.planner.records import TrialRecord

RETRIES = 1  # failed runs a configuration may have and still be measured (each retried with a new seed)


@dataclass
class Measured:
    values: list[float]
    runs: int
    ok: bool  # enough runs complete (at most RETRIES failed, fewer than the completed) and within the limit

    @property
    def mean(self) -> float:
        return sum(self.values) / len(self.values) if self.ok and self.values else math.inf


@dataclass
class Decision:
    phase: str  # stack | retest | probe | sweep | race
    change: str  # +name, -name, or the params of a proposal
    delta: float | None  # mean(candidate) - mean(stack); negative is better
    se: float | None
    kept: bool
    context: frozenset[str] = frozenset()  # the plugins both measured configurations had


def trial_runs(planner: Any) -> dict[str, tuple[list[Any], bool]]:
    """The finished trials' runs by configuration key, in trial order, and whether the key was refused:
    the one place the strategy reads trial records."""
    index: dict[str, tuple[list[Any], bool]] = {}
    for rec in sorted((TrialRecord.of(t) for t in planner.finished()), key=lambda r: r.number):
        if rec.key:
            runs, refused = index.get(rec.key, ([], False))
            if rec.status in ("complete", "failed", "pruned"):
                runs = runs + list(rec.runs)
            index[rec.key] = (runs, refused or rec.status == "refused")
    return index


class Lab:
    """Measurements and the run budget of one plan session (``max_runs``: None for no cap)."""

    def __init__(self, planner: Any, registry: Any, max_runs: int | None, noise_floor: float) -> None:
        self.planner, self.registry = planner, registry
        self.max_runs, self.noise_floor = max_runs, noise_floor
        self.used = 0
        self.claimed: dict[str, int] = {}
        self.index: dict[str, tuple[list[Any], bool]] = {}
        self.stopped = ""  # the study's time budget ran out (its message)
        self.decisions: list[Decision] = []
        self.selected: set[str] = set()  # configurations whose first run was the best of several (left out)
        self._sigma: float | None = None

    def runs_left(self) -> float:
        return math.inf if self.max_runs is None else self.max_runs - self.used

    def refresh(self) -> None:
        self.index = trial_runs(self.planner)

    def key_of(self, plugins: Plugins) -> str:
        return self.planner.key_of(plugins)

    def _measured(self, key: str) -> Measured:
        runs = self.index.get(key, ([], False))[0][: self.claimed.get(key, 0)]
        limit = self.planner.base.config.artifact_limit_bytes
        done = [r for r in runs if r.status == "complete"]
        failed = len(runs) - len(done)
        ok = bool(done) and failed <= min(RETRIES, len(done)) and all((r.artifact_bytes or 0) <= limit for r in done)
        values = [float(r.val_bpb) for r in done]
        if key in self.selected and len(values) > 1:
            values = values[1:]  # a lucky first run is what made it a challenger: it would bias its mean
        return Measured(values, len(runs), ok)

    def select(self, plugins: Plugins) -> None:
        """``plugins`` became the stack by a race: its first run (the best of several) is left out."""
        self.selected.add(self.key_of(plugins))
        self._sigma = None

    def measured(self, plugins: Plugins) -> Measured:
        return self._measured(self.key_of(plugins))

    def ensure(self, plugins: Plugins, n: int, label: str, phase: str) -> Measured | None:
        """``plugins`` with ``n`` values claimed (completed runs; a failed run is retried RETRIES times); None when
        the run cap or the study's time budget (which then sets ``stopped``) cannot pay for them. A
        configuration the preflight refuses costs no run."""
        key = self.key_of(plugins)
        while True:
            runs, refused = self.index.get(key, ([], False))
            if refused:
                return Measured([], 0, False)
            have = self.claimed.get(key, 0)
            seen = runs[:have]
            failed = sum(1 for r in seen if r.status != "complete")
            want = n + (key in self.selected) + min(failed, RETRIES)  # n values: a selected first run is left out
            if have >= want or (failed > RETRIES):
                return self._measured(key)
            if self.stopped or self.runs_left() < 1:
                return None
            self.claimed[key] = have + 1
            self.used += 1
            self._sigma = None
            if len(runs) <= have:  # not run in this study yet: run one more
                tc = TrialConfig(label, plugins, {}, describe_plugins(plugins, self.registry), "", phase)
                self.planner.enqueue(tc, key)
                res = self.planner.run()
                self.refresh()
                if res.stopped.startswith("budget"):
                    self.stopped = res.stopped
                runs, refused = self.index.get(key, ([], False))
                if refused or len(runs) <= have:  # refused (no run), or the budget stopped it before it ran
                    self.used -= 1
                    self.claimed[key] = have
                    return Measured([], 0, False) if refused else None

    def sigma(self) -> float:
        """The run-to-run sd pooled over configurations with repeats (prior: noise_floor / 2, worth two
        runs). Noise can be heavy-tailed (one run in a few dozen far off): a residual is counted at most
        3 times the median one's size (x 1.4826 for a normal sd), so one wild run does not blunt every
        later comparison."""
        if self._sigma is None:
            resid: list[float] = []
            for vals in (self._measured(key).values for key in self.claimed):
                if len(vals) > 1:
                    m = sum(vals) / len(vals)
                    c = math.sqrt(len(vals) / (len(vals) - 1))  # a residual's sd is the run's x sqrt((n-1)/n)
                    resid += [abs(v - m) * c for v in vals[:-1]]  # n - 1 degrees of freedom
            prior = self.noise_floor / 2
            cap = 3 * 1.4826 * sorted(resid)[len(resid) // 2] if len(resid) >= 3 else math.inf
            ss = 2 * prior ** 2 + sum(min(r, max(cap, prior)) ** 2 for r in resid)
            self._sigma = math.sqrt(ss / (2 + len(resid)))
        return self._sigma

    def compare(self, a: Measured, b: Measured) -> tuple[float, float]:
        """(mean(a) - mean(b), its standard error); +inf when ``a`` failed, -inf when ``b`` did."""
        if not (a.ok and b.ok):
            return (math.inf if not a.ok else -math.inf), 1.0
        return a.mean - b.mean, self.sigma() * math.sqrt(1 / len(a.values) + 1 / len(b.values))

    def record(self, d: Decision) -> Decision:
        self.decisions.append(d)
        return d
