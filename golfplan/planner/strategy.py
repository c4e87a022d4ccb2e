"""The planner's default strategy: test every candidate on the current stack, then spend the rest of the
budget on whatever is expected to gain most per run (re-tests, probes, sweeps), and say why it stopped.

All runs are one golfplan study's trials (mode ``experiments``, one seed a trial, pooled by configuration;
the current stack recorded as its chosen configuration), so reports, time budgets and resume work as for
any study. Plugins are known only by the registry's metadata (slots, conflicts, requires, params).

1. **stack**: from the baseline (the fixed plugins), each candidate at its defaults is added to the
   current stack (replacing what shares its slot or conflicts with it, adding what it requires), run once,
   and kept if it beat the stack; round-robin over slot groups, in the order given. Measured on the stack
   as it is then, so interactions show up; one run each: a close call is settled by a re-test below, on
   the stack as it is by then (which a second seed at once would not see), so screening leaves more runs
   for values.
2. then, one step at a time, whichever is expected to gain most per run (and, while candidates are
   untested, more than testing the next one; while the runs left cannot test every untested candidate,
   nothing but tests):
   - **re-test** a close call on the stack as it is now (from the measured difference, its standard error
     and the interaction it may have with what joined or left the stack since): members that barely
     helped are tried out, candidates that barely lost are tried in; more seeds only while undecided.
     A comparison still within 2 standard errors is re-tested first (once); later re-tests compete with
     the steps below (a re-test's expected gain scaled by what re-tests have gained so far for what they
     were expected to);
   - **probe** a candidate that lost at its defaults at values spread over its params' ranges, before it
     is dropped; **sweep** each param of the stack (ints, bools and choices too) at values spread over
     its range, and **refine** the best; see :mod:`golfplan.planner.tuning` (the :class:`TunePhase`).
     What beat the stack on one run must beat it again on fresh seeds to replace it.
   It stops when the run cap (or the study's time budget) is spent. It stops early only when nothing left
   is expected to gain a twentieth of a noise sd per run *and* nothing is undecided (every losing candidate
   with params probed, every param of the stack swept, every close call re-tested), and says so: close
   calls decided, candidates probed, params swept.

Means are compared against the noise pooled over every configuration with repeats (a prior of half the
study's ``noise_floor``, worth two runs); a failed run is retried once (:mod:`golfplan.planner.measure`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable

from golfplan.planner.definition import Plugins, StudyDef, describe_plugins
from golfplan.planner.stats import expected_improvement, two_sided_p
from golfplan.planner.measure import Decision, Lab, Measured
from golfplan.planner.tuning import MAX_REPEATS, PARSIMONY, Option, TunePhase

if TYPE_CHECKING:
    from golfplan.registry import Registry

MIN_GAIN = 0.15  # a close call is re-tested while its expected improvement exceeds this share of the noise sd
STOP_VALUE = 0.05  # nothing expected to gain this share of a noise sd per run: the plan stops
RETEST_PRIOR = 3.0  # re-tests are trusted to gain what they are expected to, until 3 noise sds were expected
UNTESTED_PRIOR = 10.0  # what testing a candidate is expected to gain, in noise sds, before any was tested
# how a plugin's effect may change with the stack: an interaction with a plugin that joined or left it since,
# of RHO x sqrt(|its effect| x |the other's effect|) (big effects interact more). Heavy-tailed, as the seed's
# were (0.1 to 0.9 of that): most are small (RHO_SMALL), a share LARGE_SHARE is as big as the effects
RHO_SMALL, RHO_LARGE, LARGE_SHARE = 0.3, 1.0, 0.3


@dataclass
class PlanResult:
    plugins: Plugins  # the chosen configuration
    values: list[float]
    stack: Plugins  # the stack at its defaults' end of the stack phase (before any value was tuned)
    stack_values: list[float]
    runs: int
    stopped: str  # why it stopped: "runs", the budget's message, or what was left undecided and why
    decisions: list[Decision] = field(default_factory=list)
    planner: Any = None
    untested: list[str] = field(default_factory=list)  # candidates the run cap or budget left untried
    tuned: bool = False  # whether any value was searched (probes, sweeps)
    unswept: list[str] = field(default_factory=list)  # the chosen stack's params never swept


class StackTuneStrategy:
    """``StackTuneStrategy(definition, ...).run()``: ``definition.plugins`` are the candidates (their
    given params fixed), ``definition.fixed`` the baseline; ``max_runs`` caps the runs (None: no cap;
    then ``budget_hours`` bounds them, or, with neither, ``tune_trials`` bounds the value search)."""

    def __init__(self, definition: StudyDef, registry: Registry, storage: Any = None, runner: Any = None,
                 max_runs: int | None = None, out_dir: str = "runs", say: Callable[[str], None] | None = None,
                 planner_say: Callable[[str], None] | None = None, tune_trials: int = 12, jobs: int | None = None) -> None:
        from golfplan.planner.resume import base_spec
        from golfplan.planner.study import Planner

        self.say = say or (lambda m: print(m, flush=True))
        self.d = replace(definition, mode="experiments", experiments=[], baseline=True, repeats=1)
        self.planner = Planner(self.d, base_spec(self.d), registry, storage=storage, runner=runner, out_dir=out_dir,
                               say=planner_say or (lambda m: None), jobs=jobs)
        self.reg = registry
        self.base: Plugins = {n: dict(p) for n, p in self.d.fixed.items()}
        self.candidates: Plugins = {n: dict(p) for n, p in definition.plugins.items() if n not in self.base}
        self.values: Plugins = {n: dict(p) for n, p in self.candidates.items()}  # the params a candidate is tried at
        self.lab = Lab(self.planner, registry, max_runs, self.d.noise_floor)
        self.tune = TunePhase(self.lab, registry, self.candidates, self.planner.static_refusal, self.say)
        self.max_runs = max_runs
        self.tune_trials = tune_trials
        self.stack: Plugins = dict(self.base)  # the current configuration: what it would answer at any point
        self.effects: dict[str, Decision] = {}  # each candidate's latest test, as "adding it" (negative: helps)
        self.main: dict[str, float] = {}  # each candidate's effect against the stack without its slot-mates
        self.tried: set[tuple[str, frozenset[str]]] = set()  # re-tests done, each once per stack
        self.spent: set[tuple[str, str, str, str]] = set()  # steps that could run nothing new on a stack
        self.retest_record = [0.0, 0.0]  # re-tests' expected gains and what they gained (their calibration)

    # ---- measurement (the Lab) -------------------------------------------------------------------
    @property
    def decisions(self) -> list[Decision]:
        return self.lab.decisions

    @property
    def used(self) -> int:
        return self.lab.used

    def runs_left(self) -> float:
        return self.lab.runs_left()

    def measured(self, plugins: Plugins) -> Measured:
        return self.lab.measured(plugins)

    # ---- configurations ------------------------------------------------------------------------
    def clashes(self, a: str, b: str) -> bool:
        from golfplan.registry import clash

        return a == b or clash(self.reg.get(a), self.reg.get(b))

    def with_plugin(self, stack: Plugins, name: str, params: dict[str, Any] | None = None) -> Plugins | None:
        """``stack`` plus ``name`` (at ``params``, default: the params it is tried at), minus what clashes
        with it, plus what it requires."""
        from golfplan.registry import combination_problems

        out = {n: p for n, p in stack.items() if not self.clashes(n, name)}
        out[name] = dict(params if params is not None else self.values.get(name, self.base.get(name, {})))
        for req in (r for r in self.reg.get(name).requires if r not in out):
            out = {n: p for n, p in out.items() if not self.clashes(n, req)} | {req: dict(self.values.get(req, {}))}
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
        m = self.lab.ensure(alt, 1, self.label(alt), phase)
        if m is None:
            return None
        delta, se = self.lab.compare(m, cur)
        while -1.5 * se < delta < upper * se and min(m.runs, cur.runs) < repeats:
            side = alt if m.runs <= cur.runs else self.stack
            if self.lab.ensure(side, len((m if side is alt else cur).values) + 1, self.label(side), phase) is None:
                break  # decide on what there is
            m, cur = self.measured(alt), self.measured(self.stack)
            delta, se = self.lab.compare(m, cur)
        margin = PARSIMONY * se
        kept = m.ok and (delta < margin if change.startswith("-") else delta < -margin)
        d = self.lab.record(Decision(phase, change, delta if math.isfinite(delta) else None, se, kept,
                                     frozenset(set(self.stack) & set(alt))))
        self.say(f"  {phase} {change}: " + (f"{delta:+.4f} ± {se:.4f}" if math.isfinite(delta) else "failed") +
                 (" (kept)" if kept else ""))
        self.learn(alt, change[1:], change.startswith("-"), d)
        if kept:
            self.choose(alt)
        return kept

    def learn(self, alt: Plugins, name: str, removal: bool, d: Decision) -> None:
        """What a decided change says of ``name``'s effect (and of what it displaced)."""
        displaced = [o for o in self.stack if o not in alt and o != name]
        flipped = replace(d, delta=-d.delta if d.delta is not None else None)
        self.effects[name] = flipped if removal else d
        if d.delta is not None:
            self.main[name] = -d.delta if removal else d.delta + sum(self.main.get(o, 0.0) for o in displaced)
        if d.kept:
            for other in displaced:  # what the change displaced would now have to swap back
                if other in self.candidates:
                    self.effects[other] = replace(flipped, change="+" + other, kept=False)

    def choose(self, plugins: Plugins) -> None:
        """Make ``plugins`` the current configuration, recorded as the study's chosen one (its report's best)."""
        self.stack = plugins
        for n in plugins:
            if n in self.candidates:
                self.values[n] = dict(plugins[n])
        self.planner.choose(plugins, "plan")

    # ---- the plan -----------------------------------------------------------------------------------
    def run(self) -> PlanResult:
        p = self.planner
        p.open(enqueue=False)
        p.set_baseline(self.base)
        self.lab.refresh()
        pending = self.order()
        self.say(f"plan {self.d.name}: {len(pending)} candidates, "
                 f"{'no run cap' if self.max_runs is None else f'{self.max_runs} runs'}")
        if self.lab.ensure(self.base, 1, "baseline", "stack") is None:
            return self.result(dict(self.stack), self.lab.stopped or "runs")
        self.choose(self.stack)
        stack_end: Plugins | None = None
        why = ""
        while not self.lab.stopped and self.runs_left() >= 1:
            pending = [n for n in pending if n not in self.stack and self.with_plugin(self.stack, n) is not None]
            if not pending and stack_end is None:
                stack_end = dict(self.stack)
            here = self.planner.key_of(self.stack)
            opts = [o for o in self.options(pending) if (o.kind, o.plugin, o.param, here) not in self.spent]
            best = max(opts, key=lambda o: o.value, default=None)
            close = [o for o in opts if o.kind == "retest" and self.undecided(o.plugin)]
            if best is not None and best.kind != "test" and close:
                best = max(close, key=lambda o: o.value)  # close calls first, each re-tested once
            if best is None or best.value < STOP_VALUE * self.lab.sigma():
                # the budget is spent while anything is undecided: a loser never probed, a param never swept,
                # a close call never re-tested; the plan stops early only when none is left
                best = max((o for o in opts if self.undecided_step(o)), key=lambda o: o.value, default=None)
                if best is None:
                    why = self.why_stop(pending)
                    break
            if best.kind == "test":
                pending.remove(best.plugin)
            before = (self.used, self.planner.key_of(self.stack))
            if self.take(best) is None:
                break
            if (self.used, self.planner.key_of(self.stack)) == before:  # it could not run anything new
                self.spent.add((best.kind, best.plugin, best.param, before[1]))
        stopped = self.lab.stopped or why or "runs"
        return self.result(stack_end if stack_end is not None else dict(self.stack), stopped)

    def options(self, pending: list[str]) -> list[Option]:
        """What the plan may do next, each with its expected gain and cost."""
        s = self.lab.sigma()
        out: list[Option] = []
        if pending:
            gains = [max(0.0, -d.delta) for n, d in self.first_tests().items() if d.delta is not None]
            out.append(Option("test", pending[0], gain=(UNTESTED_PRIOR * s + sum(gains)) / (1 + len(gains)), cost=1))
            if self.runs_left() <= len(pending):  # too few runs left to screen every candidate: screen
                return out
        out += self.retests()
        if self.capped_tuning():
            return out
        members = [n for n in self.stack if n in self.candidates]
        losers = {n: self.harm(n, d) for n, d in self.effects.items()
                  if n not in self.stack and d.delta is not None and self.with_plugin(self.stack, n) is not None}
        sizes = {n: self.size(n, 0.0) for n in self.candidates if n in self.effects}
        out += self.tune.options(self.stack, members, losers, sizes, self.runs_left())
        return out

    def capped_tuning(self) -> bool:
        """No run cap and no time budget: the value search is bounded by ``tune_trials`` proposals."""
        return self.max_runs is None and self.d.budget_hours is None and self.tune.proposals >= self.tune_trials

    def take(self, opt: Option) -> bool | None:
        """Do ``opt``; None when the budget ran out."""
        if opt.kind == "test":  # one run: a close call is settled by a re-test on the stack as it is then
            return self.test(self.with_plugin(self.stack, opt.plugin), "+" + opt.plugin, "stack", repeats=1, upper=0.0)
        if opt.kind == "retest":
            self.tried.add((opt.plugin, frozenset(self.stack)))
            inside = opt.plugin in self.stack
            alt = self.without(self.stack, opt.plugin) if inside else self.with_plugin(self.stack, opt.plugin)
            kept = self.test(alt, ("-" if inside else "+") + opt.plugin, "retest", MAX_REPEATS, upper=1.0)
            d = self.decisions[-1]
            self.retest_record[0] += opt.gain / self.retest_calibration()
            self.retest_record[1] += max(0.0, -(d.delta or 0.0)) if kept else 0.0
            return kept
        conf = self.tune.take(opt, self.stack, lambda n, params: self.with_plugin(self.stack, n, params))
        if opt.kind == "probe" and opt.plugin in self.tune.best_probe:
            self.values[opt.plugin] = dict(self.tune.best_probe[opt.plugin][1])  # tried there from now on
        if self.lab.stopped:
            return None
        if conf is None:
            return False
        d = self.tune.race(conf, self.stack, self.label(self.stack))
        self.tune.settle(d)
        if d is None:
            return None
        if d.kept:
            self.lab.select(conf)
            if opt.kind == "probe":
                self.learn(conf, opt.plugin, False, replace(d, change="+" + opt.plugin))
            self.choose(conf)
        return d.kept

    def first_tests(self) -> dict[str, Decision]:
        """Each candidate's first test at its defaults (what testing an untested one may be worth)."""
        out: dict[str, Decision] = {}
        for d in self.decisions:
            if d.phase == "stack" and d.change[:1] == "+" and d.change[1:] not in out:
                out[d.change[1:]] = d
        return out

    def undecided(self, name: str) -> bool:
        """Whether ``name``'s one test so far was within 2 standard errors (never re-tested)."""
        d = self.effects.get(name)
        return (d is not None and d.delta is not None and bool(d.se) and abs(d.delta) < 2 * d.se
                and not any(x.phase == "retest" and x.change[1:] == name for x in self.decisions))

    def undecided_step(self, opt: Option) -> bool:
        """Whether ``opt`` settles something still undecided: a losing candidate never probed, a stack param
        never swept, a close call never re-tested."""
        return (opt.kind == "probe" and not self.tune.probes.get(opt.plugin)) or opt.kind == "sweep" or \
            (opt.kind == "retest" and self.undecided(opt.plugin))

    def retests(self) -> list[Option]:
        """Re-tests of the close calls on the stack, each with its expected improvement. A measured effect is
        uncertain by its standard error and by the largest interaction it may have with a plugin that joined
        or left the stack since (RHO_* x sqrt(|its effect| x |the other's effect|))."""
        s = self.lab.sigma()
        now = set(self.stack)
        out = []
        for name, dec in self.effects.items():
            if dec.delta is None or (name, frozenset(now)) in self.tried:
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
            if gain > MIN_GAIN * s:
                out.append(Option("retest", name, gain=gain * self.retest_calibration(), cost=1.5))
        return out

    def retest_calibration(self) -> float:
        """What re-tests have gained for what they were expected to (a prior of RETEST_PRIOR noise sds of
        each): close calls are re-tested less where the re-tests keep confirming them."""
        prior = RETEST_PRIOR * self.lab.sigma()
        expected, gained = self.retest_record
        return (prior + gained) / (prior + expected)

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

    def why_stop(self, pending: list[str]) -> str:
        """Why nothing left is worth a run: what was decided, and what was left and why."""
        if self.capped_tuning():
            return f"done: {self.tune_trials} tune proposals (--tune-trials; no --runs or --budget-hours)"
        s = self.lab.sigma()
        undecided = [n for n, d in self.effects.items() if d.delta is not None and d.se and abs(d.delta) < 2 * d.se]
        swept = sum(1 for n in self.stack if n in self.candidates for k in self.tune.params(n)
                    if (n, k) in self.tune.tried)
        params = sum(len(self.tune.params(n)) for n in self.stack if n in self.candidates)
        parts = ["every close call decided" if not undecided else
                 f"close calls left within noise ({', '.join(undecided[:4])})",
                 f"{sum(self.tune.probes.values())} probe rounds over {len(self.tune.probes)} losing candidates",
                 f"{swept} of the stack's {params} params swept"]
        if swept < params and self.runs_left() < 4:  # a sweep needs its values' runs and one more
            parts.append(f"{self.runs_left():g} runs left: too few for a sweep of the {params - swept} params left")
        return (f"done: nothing left expected to gain {STOP_VALUE:g} noise sd ({STOP_VALUE * s:.5f} BPB) a run; "
                + "; ".join(parts) + (f"; the sweeps found {self.tune.prior('sweep', s):.4f} BPB a param on average"
                                       if self.tune.found["sweep"] else ""))

    def result(self, stack: Plugins, stopped: str) -> PlanResult:
        m = self.measured(self.stack)
        self.say(f"plan {self.d.name}: {self.used} runs, chose {describe_plugins(self.stack, self.reg)}"
                 + (f" ({m.mean:.4f}, n={len(m.values)})" if m.ok else "") + f"; stopped: {stopped}")
        self.planner.choose(self.stack, "plan", stopped=stopped)
        tried = {d.change[1:] for d in self.decisions if d.change[:1] in "+-"}
        untested = [n for n in self.candidates if n not in tried and n not in self.stack]
        unswept = [f"{n}.{k}" for n in self.stack if n in self.candidates for k in self.tune.params(n)
                   if (n, k) not in self.tune.tried]
        return PlanResult(dict(self.stack), m.values, stack, self.measured(stack).values, self.used, stopped,
                          self.decisions, self.planner, untested,
                          any(d.phase in ("probe", "sweep", "refine") for d in self.decisions), unswept)


def explain(result: PlanResult, registry: Any, base: Plugins | None = None) -> list[str]:
    """What the plan chose and why (each technique's measured effect where it was added, with its
    significance; each value found and its race), and what to try next (close calls, untested candidates,
    params never swept)."""
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
            lines.append(f"  + value {d.change}: {d.delta:+.4f} BPB ± {d.se:.4f} on fresh seeds, "
                         f"p = {two_sided_p(d.delta, d.se or 0.0):.2g}")
    nexts = [f"{name} ({'in' if name in result.plugins else 'out'}: {d.delta:+.4f} ± {d.se:.4f}, p = "
             f"{two_sided_p(d.delta, d.se):.2g}): more seeds" for name, d in last.items()
             if d.delta is not None and d.se and abs(d.delta) < 2 * d.se]
    nexts += [f"{name}: never tested (the run cap or the budget)" for name in result.untested]
    if result.unswept:
        nexts.append(f"params never swept: {', '.join(result.unswept[:6])}" +
                     (f" and {len(result.unswept) - 6} more" if len(result.unswept) > 6 else "") +
                     " (raise --runs)")
    if nexts:
        lines.append("what to try next:")
        lines += [f"  - {x}" for x in nexts[:8]]
    return lines


def plan(definition: StudyDef, registry: Registry, runner: Any = None, storage: Any = None,
         max_runs: int | None = None, out_dir: str = "runs", say: Callable[[str], None] | None = None,
         planner_say: Callable[[str], None] | None = None, tune_trials: int = 12, jobs: int | None = None) -> PlanResult:
    """Run the strategy over ``definition.plugins`` (candidates) on ``definition.fixed`` (the baseline), in
    the study ``definition.name``; its ``repeats`` is ignored (the strategy decides the seeds), its
    ``budget_hours`` bounds the time. ``tune_trials``: value-search proposals when there is neither
    ``max_runs`` nor ``budget_hours``. ``result.planner`` is the study's Planner (for ``write_report``)."""
    return StackTuneStrategy(definition, registry, storage=storage, runner=runner, max_runs=max_runs,
                             out_dir=out_dir, say=say, planner_say=planner_say, tune_trials=tune_trials,
                             jobs=jobs).run()
