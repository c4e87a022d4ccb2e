"""The strategy's tune phase, and what its phases share (how a configuration measured, a decision).

**Tune** the stack's own params only, one a proposal, in a trust region around the stack's values
(``trust_region``: x/÷2.5 for log params, ±25 % of the range for linear ones, every allowed value
of small ints and choices), with Optuna's TPE seeded with the stack itself; then the best two
challengers race the stack on fresh seeds (``race``), so tuning never ends on something measured
worse than the stack it started from. :class:`TunePhase` is a part of
:class:`golfplan.planner.strategy.StackTuneStrategy`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from golfplan.core.errors import GolfplanError
from golfplan.planner.definition import Plugins, canonical_plugins, describe_plugins

MAX_REPEATS = 3
RACE_RUNS = 2 * MAX_REPEATS - 1  # a challenger's 3 fresh seeds and the stack's 2nd and 3rd, at most
TUNE_MIN = RACE_RUNS + 3  # a tune phase worth reserving runs for: 3 proposals and a race
PARSIMONY = 0.25  # a change must win by a quarter of a standard error (a tie keeps the simpler config)
RACE_Z = 1.5  # a tuned configuration must beat the stack by 1.5 standard errors on fresh seeds
MIN_GAIN = 0.15  # re-test while the expected improvement exceeds this share of the noise sd
# how a plugin's effect may change with the stack: an interaction with a plugin that joined or left it since,
# of RHO x sqrt(|its effect| x |the other's effect|) (big effects interact more). Heavy-tailed, as the seed's
# were (0.1 to 0.9 of that): most are small (RHO_SMALL), a share LARGE_SHARE is as big as the effects
RHO_SMALL, RHO_LARGE, LARGE_SHARE = 0.3, 1.0, 0.3


@dataclass
class Measured:
    values: list[float]
    runs: int
    ok: bool  # every run complete and within the artifact limit

    @property
    def mean(self) -> float:
        return sum(self.values) / len(self.values) if self.ok and self.values else math.inf


@dataclass
class Decision:
    phase: str  # stack | retest | tune | race
    change: str  # +name, -name, or the params of a tune proposal
    delta: float | None  # mean(candidate) - mean(stack); negative is better
    se: float | None
    kept: bool
    context: frozenset[str] = frozenset()  # the plugins both measured configurations had


class TunePhase:
    """The tune and race phases; the strategy supplies ``stack``, ``ensure``, ``measured``,
    ``compare``, ``choose``, ``runs_left``, ``effects`` and the rest."""

    def allowed(self, name: str, param: str, params: dict[str, Any]) -> list | None:
        """The values of a small int or choice param the static check accepts (the plugin alone on the
        baseline, as the planner screens a tune space), so tuning spends no run on a refused value."""
        from golfplan.planner.space import param_domain

        values = param_domain(self.reg.get(name).params[param])
        if values is None:
            return values
        refusal = self.planner.static_refusal  # the planner's own screening
        return [v for v in values if v == params[param] or not refusal({name: {**params, param: v}})]

    def tunable(self) -> list[tuple[str, str]]:
        return [(n, k) for n in self.stack if n in self.candidates
                for k, spec in self.reg.get(n).params.items() if k not in self.candidates[n]
                and not (spec.kind in ("float", "int") and spec.low == spec.high)]

    def tune(self) -> None:
        """One param a proposal (those of the largest measured effects first), TPE in a trust region around
        the stack's values; then the best two challengers race the stack on fresh repeats."""
        import optuna

        def effect(nk: tuple[str, str]) -> float:
            dec = self.effects.get(nk[0])
            return dec.delta if dec is not None and dec.delta is not None else 0.0

        home = canonical_plugins(self.reg, self.stack)
        home_mean = self.measured(home).mean
        where = {f"{n}.{k}": (n, k) for n, k in sorted(self.tunable(), key=effect)}
        at_home = {q: home[n][k] for q, (n, k) in where.items()}
        dists = {q: trust_region(self.reg.get(n).params[k], home[n][k], self.allowed(n, k, home[n]),
                                 *ordered_bounds(self.reg.get(n).params, k, home[n]))
                 for q, (n, k) in where.items()}
        props = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=self.d.seed, n_startup_trials=3))
        if math.isfinite(home_mean):
            props.add_trial(optuna.trial.create_trial(params=at_home, distributions=dists, value=home_mean))
        wanted = self.tune_trials if self.max_runs is None else int(self.runs_left() - RACE_RUNS)
        challengers: list[tuple[float, Plugins]] = []
        done = attempts = 0
        while done < wanted and attempts < 3 * max(wanted, 1) and not self.stopped:
            q = list(where)[attempts % len(where)]
            attempts += 1
            props.enqueue_trial({o: v for o, v in at_home.items() if o != q})  # only ``q`` moves
            trial = props.ask(dists)
            conf = {m: dict(p) for m, p in home.items()}
            for o, v in trial.params.items():
                conf[where[o][0]][where[o][1]] = v
            try:  # params may fail a plugin's own validation (e.g. a minimum above its maximum)
                same = self.planner.key_of(conf) == self.planner.key_of(home)
            except GolfplanError:
                same = True
            m = None if same else self.ensure(conf, 1, f"tune {q}", "tune")
            ok = m is not None and m.ok
            props.tell(trial, m.mean if ok else None, state=None if ok else optuna.trial.TrialState.FAIL)
            if m is None:
                if self.runs_left() < 1 or self.stopped:
                    break
                continue
            done += 1
            if m.ok and m.mean < home_mean:
                challengers.append((m.mean, conf))
            self.decisions.append(Decision("tune", describe_plugins({where[q][0]: {where[q][1]: trial.params[q]}}),
                                           m.mean - home_mean if m.ok else None, None, False, frozenset(home)))
        for _, conf in sorted(challengers, key=lambda c: c[0])[:2]:
            if self.race(conf) is None:
                break

    def race(self, conf: Plugins) -> bool | None:
        """``conf`` replaces the stack only if 2 (then 3) fresh seeds of it beat as many of the stack by more
        than RACE_Z standard errors. Its first run, the one that made it a challenger (the best of many single
        runs, so likely a lucky one), is left out."""
        delta, se = math.inf, 0.0
        for n in (2, MAX_REPEATS):
            got = self.ensure(conf, n + 1, "race", "race")
            if got is None or self.ensure(self.stack, n, self.label(self.stack), "race") is None:
                return None
            fresh = Measured(got.values[1:], got.runs - 1, got.ok)
            delta, se = self.compare(fresh, self.measured(self.stack))
            if delta >= 0 or delta < -RACE_Z * se:
                break
        kept, what = delta < -RACE_Z * se, describe_plugins(conf, self.reg)
        self.decisions.append(Decision("race", what, delta, se, kept, frozenset(self.stack)))
        self.say(f"  race {what}: {delta:+.4f} ± {se:.4f}" + (" (kept)" if kept else ""))
        if kept:
            self.choose(conf)
        return kept


def ordered_bounds(specs: dict[str, Any], param: str, values: dict[str, Any]) -> tuple[float, float]:
    """How far ``param`` may move while the plugin's other params keep ``values``: params declared
    ordered (``at_least``/``above`` another) stay in order."""
    lo, hi, spec = -math.inf, math.inf, specs[param]
    if getattr(spec, "lower", None):
        lo = values[spec.lower] + spec.gap()
    for other, s in specs.items():
        if getattr(s, "lower", None) == param:
            hi = min(hi, values[other] - s.gap())
    return lo, hi


def trust_region(spec: Any, value: Any, allowed: list | None = None, lo: float = -math.inf,
                 hi: float = math.inf) -> Any:
    """An Optuna distribution around ``value`` within [lo, hi]: x/÷2.5 for log params, ±25 % of the range
    for linear ones; every ``allowed`` value (default: every value) of bools, choices and ints with 16 or
    fewer."""
    import optuna.distributions as od

    if spec.kind == "bool":
        return od.CategoricalDistribution([False, True])
    if spec.kind == "choice" or (allowed is not None and len(allowed) <= 16):
        options = list(allowed if allowed is not None else spec.choices)
        return od.CategoricalDistribution([v for v in options if v == value or lo <= v <= hi])
    if spec.log:
        lo, hi = max(spec.low, value / 2.5, lo), min(spec.high, value * 2.5, hi)
    else:
        width = 0.25 * (spec.high - spec.low)
        lo, hi = max(spec.low, value - width, lo), min(spec.high, value + width, hi)
    if spec.kind == "int":
        return od.IntDistribution(math.floor(lo), math.ceil(hi), log=spec.log)
    return od.FloatDistribution(lo, hi, log=spec.log)
