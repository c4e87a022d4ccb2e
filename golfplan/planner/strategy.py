"""The planner's default strategy: stack one candidate at a time, re-test the close calls, then tune.

All runs are one golfplan study's trials (mode ``experiments``, one seed a trial, pooled by configuration;
the current stack recorded as its chosen configuration), so reports, time budgets and resume work as for
any study. Plugins are known only by the registry's metadata (slots, conflicts, requires, params).

1. **stack**: from the baseline (the fixed plugins), each candidate is added to the current stack
   (replacing what shares its slot or conflicts with it, adding what it requires), run once, and kept if
   it beat the stack; round-robin over slot groups, in the order given. Measured on the stack as it is
   then, so interactions show up; a change that won by little gets a second seed a side when there is room.
2. **re-test** the close calls on the final stack, best expected improvement first (from the measured
   difference, its standard error and the interaction it may have with what joined or left the stack
   since, assumed to grow with both effects): members that barely helped are tried out, candidates that
   barely lost are tried in; more seeds only while undecided (successive halving), up to 3 a side.
3. **tune** the stack's own params only, one a proposal, in a trust region around the stack's values,
   with Optuna's TPE; a challenger replaces the stack only if it beats it on 2-3 fresh seeds each by 1.5
   standard errors, so tuning never ends on something measured worse than the stack it started from.

Means are compared against the noise pooled over every configuration with repeats (a prior of half the
study's ``noise_floor``, worth two runs). Everything stops at ``max_runs`` runs or ``budget_hours``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from golfplan.planner.definition import Plugins, StudyDef, describe_plugins
from golfplan.planner.storage import BASELINE_ATTR, CHOSEN_ATTR
from golfplan.planner.study import Planner, TrialConfig
from golfplan.planner.tuning import LARGE_SHARE, MAX_REPEATS, MIN_GAIN, PARSIMONY, RHO_LARGE, RHO_SMALL, TUNE_MIN, Decision, Measured, TunePhase


@dataclass
class PlanResult:
    plugins: Plugins  # the chosen configuration
    values: list[float]
    stack: Plugins  # the stack the tune phase started from
    stack_values: list[float]
    runs: int
    stopped: str
    decisions: list[Decision] = field(default_factory=list)
    planner: Any = None
    untested: list[str] = field(default_factory=list)  # candidates the run cap or budget left untried
    tuned: bool = False  # whether the tune phase ran


class StackTuneStrategy(TunePhase):
    """``StackTuneStrategy(definition, ...).run()``: ``definition.plugins`` are the candidates (their
    given params fixed), ``definition.fixed`` the baseline; ``max_runs`` caps the runs (None: no cap)."""

    def __init__(self, definition: StudyDef, storage: Any = None, runner: Any = None, registry: Any = None,
                 max_runs: int | None = None, out_dir: str = "runs", say: Callable[[str], None] | None = None,
                 planner_say: Callable[[str], None] | None = None, tune_trials: int = 12) -> None:
        self.say = say or (lambda m: print(m, flush=True))
        self.d = replace(definition, mode="experiments", experiments=[], baseline=True, repeats=1)
        self.planner = Planner(self.d, storage=storage, runner=runner, registry=registry, out_dir=out_dir,
                               say=planner_say or (lambda m: None))
        self.reg = self.planner.registry
        self.base: Plugins = {n: dict(p) for n, p in self.d.fixed.items()}
        self.candidates: Plugins = {n: dict(p) for n, p in definition.plugins.items() if n not in self.base}
        self.max_runs = max_runs
        self.tune_trials = tune_trials
        self.used = 0
        self.claimed: dict[str, int] = {}
        self.index: dict[str, tuple[list[dict[str, Any]], bool]] = {}
        self.stopped = ""
        self.stack: Plugins = dict(self.base)  # the current configuration: what it would answer at any point
        self.decisions: list[Decision] = []
        self.effects: dict[str, Decision] = {}  # each candidate's latest test, as "adding it" (negative: helps)
        self.main: dict[str, float] = {}  # each candidate's effect against the stack without its slot-mates

    # ---- measurement -------------------------------------------------------------------------
    def runs_left(self) -> float:
        return math.inf if self.max_runs is None else self.max_runs - self.used

    def refresh(self) -> None:
        """Index the finished trials' runs (they never change) by configuration, and which were refused."""
        self.index = {}
        for t in sorted(self.planner.finished(), key=lambda t: t.number):
            key, status = t.user_attrs.get("key"), t.user_attrs.get("status")
            if key:
                runs, refused = self.index.get(key, ([], False))
                if status in ("complete", "failed", "pruned"):
                    runs = runs + list(t.user_attrs.get("runs") or [])
                self.index[key] = (runs, refused or status == "refused")

    def _measured(self, key: str) -> Measured:
        """What this session has seen of ``key``: its first ``claimed`` runs, so that a resumed session
        makes the same decisions on the same numbers."""
        runs = self.index.get(key, ([], False))[0][: self.claimed.get(key, 0)]
        limit = self.planner.base.config.artifact_limit_bytes
        done = [r for r in runs if r.get("status") == "complete"]
        ok = bool(done) and len(done) == len(runs) and all((r.get("artifact_bytes") or 0) <= limit for r in done)
        return Measured([float(r["val_bpb"]) for r in done], len(runs), ok)

    def measured(self, plugins: Plugins) -> Measured:
        return self._measured(self.planner.key_of(plugins))

    def ensure(self, plugins: Plugins, n: int, label: str, phase: str) -> Measured | None:
        """``plugins`` with ``n`` runs claimed (the study's own first, new ones run now); None when the run
        cap or the study's time budget (which then sets ``stopped``) cannot pay for them. A configuration
        the preflight refuses costs no run."""
        key = self.planner.key_of(plugins)
        runs, refused = self.index.get(key, ([], False))
        before = self.claimed.get(key, 0)
        if refused:
            return Measured([], 0, False)
        if n > before:
            if self.stopped or n - before > self.runs_left():
                return None
            self.claimed[key] = n
            self.used += n - before
        while len(runs) < n and not refused:
            tc = TrialConfig(label, plugins, {}, describe_plugins(plugins, self.reg), "", phase)
            self.planner.study.enqueue_trial({}, user_attrs=tc.attrs(key))
            res = self.planner.run()
            self.refresh()
            if res.stopped.startswith("budget"):
                self.stopped = res.stopped
                return None
            runs, refused = self.index.get(key, ([], False))
        if refused:
            self.used -= self.claimed[key] - before
            self.claimed[key] = before
            return Measured([], 0, False)
        return self._measured(key)

    def sigma(self) -> float:
        """The run-to-run sd pooled over configurations with repeats (prior: noise_floor / 2, worth two runs)."""
        ss, dof = 2 * (self.d.noise_floor / 2) ** 2, 2
        for vals in (self._measured(key).values for key in self.claimed):
            ss += sum((v - sum(vals) / len(vals)) ** 2 for v in vals) if len(vals) > 1 else 0.0
            dof += max(len(vals) - 1, 0)
        return math.sqrt(ss / dof)

    def compare(self, a: Measured, b: Measured) -> tuple[float, float]:
        """(mean(a) - mean(b), its standard error)."""
        if not (a.ok and b.ok):
            return (math.inf if not a.ok else -math.inf), 1.0
        s = self.sigma()
        return a.mean - b.mean, s * math.sqrt(1 / len(a.values) + 1 / len(b.values))

    # ---- configurations ------------------------------------------------------------------------
    def clashes(self, a: str, b: str) -> bool:
        from golfplan.registry import clash

        return a == b or clash(self.reg.get(a), self.reg.get(b))

    def with_plugin(self, stack: Plugins, name: str) -> Plugins | None:
        """``stack`` plus ``name`` (at its candidate params), minus what clashes with it, plus what it requires."""
        from golfplan.registry import combination_problems

        out = {n: p for n, p in stack.items() if not self.clashes(n, name)}
        out[name] = dict(self.candidates.get(name, self.base.get(name, {})))
        for req in (r for r in self.reg.get(name).requires if r not in out):
            out = {n: p for n, p in out.items() if not self.clashes(n, req)} | {req: dict(self.candidates.get(req, {}))}
        return None if combination_problems(self.reg.classes(out)) else out

    def without(self, stack: Plugins, name: str) -> Plugins:
        """``stack`` minus ``name`` (and what requires it), with the fixed plugins it had displaced back."""
        out = {n: p for n, p in stack.items() if n != name and name not in self.reg.get(n).requires}
        for f, p in self.base.items():
            if f not in out and not any(self.clashes(f, n) for n in out):
                out[f] = dict(p)
        return out

    def order(self) -> list[str]:
        """Candidates round-robin over slot groups (plugins sharing a slot or conflicting), in the given order."""
        groups: list[list[str]] = []
        for name in self.candidates:
            g = next((g for g in groups if any(self.clashes(name, m) for m in g)), None)
            g.append(name) if g is not None else groups.append([name])
        out: list[str] = []
        for r in range(max((len(g) for g in groups), default=0)):
            out += [g[r] for g in groups if r < len(g)]
        return out

    def label(self, plugins: Plugins) -> str:
        added = [n for n in plugins if n not in self.base]
        return "+".join(added) if added else "baseline"

    # ---- a test: one alternative against the current stack ----------------------------------------------
    def test(self, alt: Plugins, change: str, phase: str, repeats: int, upper: float) -> bool | None:
        """Run ``alt`` once; while it is undecided (between -1.5 and ``upper`` standard errors of the stack),
        give a seed to the side with fewer (``alt`` on a tie), up to ``repeats`` a side. Adopt it when it
        beats the stack by PARSIMONY standard errors (a removal: when it is not worse by more than that).
        None when the budget ran out before its first run."""
        cur = self.measured(self.stack)
        m = self.ensure(alt, 1, self.label(alt), phase)
        if m is None:
            return None
        delta, se = self.compare(m, cur)
        while -1.5 * se < delta < upper * se and min(m.runs, cur.runs) < repeats:
            side = alt if m.runs <= cur.runs else self.stack
            if self.ensure(side, (m.runs if side is alt else cur.runs) + 1, self.label(side), phase) is None:
                break  # decide on what there is
            m, cur = self.measured(alt), self.measured(self.stack)
            delta, se = self.compare(m, cur)
        margin = PARSIMONY * se
        kept = m.ok and (delta < margin if change.startswith("-") else delta < -margin)
        d = Decision(phase, change, delta if math.isfinite(delta) else None, se, kept,
                     frozenset(set(self.stack) & set(alt)))
        self.decisions.append(d)
        self.say(f"  {phase} {change}: " + (f"{delta:+.4f} ± {se:.4f}" if math.isfinite(delta) else "failed") +
                 (" (kept)" if kept else ""))
        name, removal = change[1:], change.startswith("-")
        displaced = [o for o in self.stack if o not in alt and o != name]
        flipped = replace(d, delta=-d.delta if d.delta is not None else None)
        self.effects[name] = flipped if removal else d
        if d.delta is not None:
            self.main[name] = -d.delta if removal else d.delta + sum(self.main.get(o, 0.0) for o in displaced)
        if kept:
            for other in displaced:  # what the change displaced would now have to swap back
                if other in self.candidates:
                    self.effects[other] = replace(flipped, change="+" + other, kept=False)
            self.choose(alt)
        return kept

    def choose(self, plugins: Plugins) -> None:
        """Make ``plugins`` the current configuration, recorded as the study's chosen one (its report's best)."""
        self.stack = plugins
        self.planner.study.set_user_attr(CHOSEN_ATTR, {"key": self.planner.key_of(plugins), "label": "plan"})

    # ---- the phases --------------------------------------------------------------------------------
    def run(self) -> PlanResult:
        p = self.planner
        p.open(enqueue=False)
        p.study.set_user_attr(BASELINE_ATTR, p.key_of(self.base))
        self.refresh()
        items = self.order()
        self.say(f"plan {self.d.name}: {len(items)} candidates, "
                 f"{'no run cap' if self.max_runs is None else f'{self.max_runs} runs'}")
        if self.ensure(self.base, 1, "baseline", "stack") is None:
            return self.result(dict(self.stack))
        if CHOSEN_ATTR not in p.study.user_attrs:
            self.choose(self.stack)
        for i, name in enumerate(items):
            alt = self.with_plugin(self.stack, name)
            if alt is None or name in self.stack:
                continue
            # a change that won by little gets a second seed a side, when the budget leaves room for it
            slack = self.runs_left() - (len(items) - i) - (0 if self.max_runs is None else 0.15 * self.max_runs)
            if self.test(alt, "+" + name, "stack", repeats=2 if slack >= 2 else 1, upper=0.0) is None:
                return self.result(dict(self.stack))
        # tuning gets a share of its own only when much is left; else what the re-tests leave
        reserve = TUNE_MIN if self.tunable() and self.runs_left() >= 4 * TUNE_MIN else 0
        self.retest(reserve)
        stack = dict(self.stack)
        if self.tunable() and not self.stopped:
            self.tune()
            self.retest(0)  # with what the tune phase left
        return self.result(stack)

    def retest(self, reserve: float) -> None:
        """Re-test the close calls on the stack, best expected improvement first, keeping ``reserve`` runs.
        A measured effect is uncertain by its standard error and by the largest interaction it may have with
        a plugin that joined or left the stack since (RHO_* x sqrt(|its effect| x |the other's effect|))."""
        tried: set[tuple[str, frozenset[str]]] = set()  # each item once per stack
        for _ in range(2 * len(self.effects)):
            if self.runs_left() - reserve < 1 or self.stopped:
                return
            s = self.sigma()
            now = set(self.stack)
            best: tuple[float, str, Plugins] | None = None
            for name, dec in self.effects.items():
                if dec.delta is None or (name, frozenset(now)) in tried:
                    continue
                inside = name in self.stack
                alt = self.without(self.stack, name) if inside else self.with_plugin(self.stack, name)
                if alt is None or alt == self.stack:
                    continue
                harm = self.harm(name, dec)
                # what joined or left the stack since (a slot-mate is the other side of a swap, not context)
                moved = [x for x in (set(dec.context) ^ now) - {name} if not self.clashes(x, name)]
                g2 = max((self.size(name, s) * self.size(x, s) for x in moved), default=0.0)
                gain = sum(share * expected_improvement(harm, math.sqrt(dec.se ** 2 + rho ** 2 * g2))
                           for share, rho in ((1 - LARGE_SHARE, RHO_SMALL), (LARGE_SHARE, RHO_LARGE)))
                if gain > MIN_GAIN * s and (best is None or gain > best[0]):
                    best = (gain, name, alt)
            if best is None:
                return
            _, name, alt = best
            tried.add((name, frozenset(now)))
            if self.test(alt, ("-" if name in self.stack else "+") + name, "retest", MAX_REPEATS, upper=1.0) is None:
                return

    def harm(self, name: str, dec: Decision) -> float:
        """What adding (or, for a member, removing) ``name`` is expected to cost now, from the main effects
        of it and of what it would displace where they are known, else from its last test."""
        if name in self.stack:
            return -self.main.get(name, dec.delta or 0.0)
        mates = [o for o in self.stack if self.clashes(o, name)]
        if name in self.main and all(o in self.main or o in self.base for o in mates):
            return self.main[name] - sum(self.main.get(o, 0.0) for o in mates)
        return dec.delta or 0.0

    def size(self, name: str, floor: float) -> float:
        """How big a plugin's effect is (its main effect or its last measured change, at least ``floor``)."""
        dec = self.effects.get(name)
        return max(abs(self.main.get(name, 0.0)), abs(dec.delta) if dec and dec.delta is not None else 0.0, floor)

    def result(self, stack: Plugins) -> PlanResult:
        m = self.measured(self.stack)
        self.say(f"plan {self.d.name}: {self.used} runs, chose {describe_plugins(self.stack, self.reg)}"
                 + (f" ({m.mean:.4f}, n={len(m.values)})" if m.ok else ""))
        tried = {d.change[1:] for d in self.decisions if d.change[:1] in "+-"}
        untested = [n for n in self.candidates if n not in tried and n not in self.stack]
        return PlanResult(dict(self.stack), m.values, stack, self.measured(stack).values, self.used,
                          self.stopped or ("runs" if self.runs_left() < 1 else "done"), self.decisions, self.planner,
                          untested, any(d.phase in ("tune", "race") for d in self.decisions))


def expected_improvement(harm: float, spread: float) -> float:
    """E[max(0, -X)] for X ~ N(harm, spread²): what a change whose measured harm is ``harm`` may gain."""
    if spread <= 0:
        return max(0.0, -harm)
    z = -harm / spread
    return spread * math.exp(-z * z / 2) / math.sqrt(2 * math.pi) + (-harm) * 0.5 * math.erfc(-z / math.sqrt(2))


def two_sided_p(delta: float, se: float) -> float:
    """The two-sided p of a difference ``delta`` with standard error ``se`` (normal approximation)."""
    return math.erfc(abs(delta) / (se * math.sqrt(2))) if se > 0 else (0.0 if delta else 1.0)


def explain(result: PlanResult, registry: Any, base: Plugins | None = None) -> list[str]:
    """What the plan chose and why (each technique's measured effect where it was added, with its
    significance), and what to try next (close calls, untested candidates, untuned params)."""
    base = base or {}
    lines = ["chosen: " + describe_plugins({n: p for n, p in result.plugins.items() if n not in base}, registry)
             if any(n not in base for n in result.plugins) else "chosen: the baseline (nothing beat it)"]
    last: dict[str, Decision] = {}
    for d in result.decisions:
        if d.change[:1] in "+-":
            last[d.change[1:]] = d
    for name in (n for n in result.plugins if n not in base):
        d = last.get(name)
        if d is None or d.delta is None:
            lines.append(f"  + {name}: kept from the start")
            continue
        effect = -d.delta if d.change.startswith("-") else d.delta  # what having it changed
        lines.append(f"  + {name}: {effect:+.4f} BPB ± {d.se:.4f} when {'kept in' if d.change[0] == '-' else 'added to'} "
                     f"the stack ({d.phase}), p = {two_sided_p(d.delta, d.se or 0.0):.2g}")
    for d in result.decisions:
        if d.phase == "race" and d.kept:
            lines.append(f"  + tuned {d.change}: {d.delta:+.4f} BPB ± {d.se:.4f} on fresh seeds, "
                         f"p = {two_sided_p(d.delta, d.se or 0.0):.2g}")
    nexts = [f"{name} ({'in' if name in result.plugins else 'out'}: {d.delta:+.4f} ± {d.se:.4f}, p = "
             f"{two_sided_p(d.delta, d.se):.2g}): more seeds" for name, d in last.items()
             if d.delta is not None and d.se and abs(d.delta) < 2 * d.se]
    nexts += [f"{name}: never tested (the run cap or the budget)" for name in result.untested]
    if not result.tuned and any(registry.get(n).params for n in result.plugins if n not in base):
        nexts.append("the stack's params: not tuned (raise --runs to leave room for the tune phase)")
    if nexts:
        lines.append("what to try next:")
        lines += [f"  - {x}" for x in nexts[:8]]
    return lines


def plan(definition: StudyDef, runner: Any = None, storage: Any = None, max_runs: int | None = None,
         registry: Any = None, out_dir: str = "runs", say: Callable[[str], None] | None = None,
         planner_say: Callable[[str], None] | None = None, tune_trials: int = 12) -> PlanResult:
    """Run the strategy over ``definition.plugins`` (candidates) on ``definition.fixed`` (the baseline), in
    the study ``definition.name``; its ``repeats`` is ignored (the strategy decides the seeds), its
    ``budget_hours`` bounds the time. ``tune_trials``: tune proposals when ``max_runs`` is None.
    ``result.planner`` is the study's Planner (for ``write_report``)."""
    return StackTuneStrategy(definition, storage=storage, runner=runner, registry=registry, max_runs=max_runs,
                             out_dir=out_dir, say=say, planner_say=planner_say, tune_trials=tune_trials).run()
