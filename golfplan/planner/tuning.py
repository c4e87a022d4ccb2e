"""The plan strategy's tune phase (:class:`TunePhase`): it finds values, not only switches defaults on.

A technique someone has just written has no known best values: its defaults may hurt where another
value helps. The tune phase offers the strategy three kinds of step, each an :class:`Option` with its
expected gain (BPB) and its cost (runs); the strategy takes whichever gains most per run:

* **probe** a candidate that lost at its defaults, before it is dropped: 2 configurations (3 when it
  has several params) with every param at values spread over its declared range (on its log scale
  where declared; ints, bools and choices too), each run once on the current stack (each point once,
  never the defaults it lost at: a bool may leave one point, and a second round none);
* **sweep** one param of a stack member: 2 values where its range has been tried least (a bool or
  choice: its other options; a small int: the values the static check accepts);
* **refine** a swept param: one value where a parabola through the best value and its neighbours
  puts the minimum.

A configuration that beat the stack on its one run is a challenger: it replaces the stack only if it
beats it again on fresh seeds (:meth:`TunePhase.race`; its first run, the best of several, is left
out), so a lucky run never replaces the stack.

Expected gains are learned from the study itself (empirical Bayes): the gains the probes (and,
separately, the sweeps, a param's refinements counting for its sweep) found beyond a noise sd,
averaged with a prior (PRIOR_SD noise sds) worth PRIOR_WEIGHT observations. Where probes and sweeps
find nothing (defaults that are already best) their expected gain falls and the strategy stops
spending runs on them; where they find much, it rises. A probe may gain what the candidate's best
values are worth beyond its measured harm: E[max(0, G - harm)] for G exponential with the learned
mean; a sweep's prior grows with the size of its plugin's effect.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from golfplan.core.errors import GolfplanError
from golfplan.planner.definition import Plugins, describe_plugins
from golfplan.planner.measure import Decision, Lab, Measured

MAX_REPEATS = 3
PARSIMONY = 0.25  # a change must win by a quarter of a standard error (a tie keeps the simpler config)
RACE_Z = {1: 2.5, 2: 2.25, 3: 2.0}  # fresh seeds -> standard errors a challenger must win by
RACE_GIVE_UP = 0.5  # a challenger not ahead by half a standard error on fresh seeds is dropped
RACE_COST = 1.5  # runs a race is expected to take (a challenger's fresh seeds, the stack's second)
CAPTURE = 0.6  # the share of a param's possible gain a sweep or a probe is expected to catch
# until measured, a probe (every param of a technique at once) is expected to find 8 noise sds, a sweep of one
# param 4; each prior is worth PRIOR_WEIGHT observations
PRIOR_SD, PRIOR_WEIGHT = {"probe": 8.0, "sweep": 4.0}, 2.0
PROBE_ROUNDS = 2  # probe rounds a losing candidate may get (each worth half the one before)
REFINES = 3  # refinements a param may get
SMALL = 64  # ints with fewer values than this, bools and choices: only the values the static check accepts


@dataclass
class Option:
    kind: str  # test | retest | probe | sweep | refine
    plugin: str
    param: str = ""
    gain: float = 0.0  # what it is expected to improve the final answer by (BPB)
    cost: float = 1.0  # runs

    @property
    def value(self) -> float:
        return self.gain / max(self.cost, 1e-9)


class TunePhase:
    """Probes, sweeps and refinements of one plan session, measured through ``lab``.

    ``given``: each candidate's params the user fixed (never searched); ``refusal(plugins)``: why the
    static check refuses a configuration ("" when it accepts it), to skip values of small ints and
    choices it refuses. The strategy asks for :meth:`options`, runs one with :meth:`take` and races what
    it returns with :meth:`race`; that is all it needs of this class.
    """

    def __init__(self, lab: Lab, registry: Any, given: Plugins, refusal: Callable[[Plugins], str],
                 say: Callable[[str], None]) -> None:
        self.lab, self.reg, self.given, self.refusal, self.say = lab, registry, given, refusal, say
        self.tried: dict[tuple[str, str], list[tuple[Any, float]]] = {}  # (plugin, param) -> (value, delta)
        self.probes: dict[str, int] = {}  # probe rounds run per candidate
        self.best_probe: dict[str, tuple[float, dict]] = {}  # a candidate's best probe: (delta, params)
        self.refined: dict[tuple[str, str], int] = {}
        self.found: dict[str, list[float]] = {"probe": [], "sweep": []}  # gains found, in noise sds x weight
        self.proposals = 0  # configurations probes, sweeps and refinements ran
        self._domains: dict[tuple, list] = {}  # the static check's verdicts on small params' values
        # the last probe's, sweep's or refinement's gain (kind, noise sds, the delta it is measured from, param),
        # until its race
        self.pending: tuple[str, float, float, tuple[str, str]] | None = None
        self.swept_at: dict[tuple[str, str], int] = {}  # (plugin, param) -> its sweep's entry in found["sweep"]
        self.probed: dict[tuple[str, str], list[Any]] = {}  # (candidate, param) -> the values its probes tried

    # ---- what a plugin's params are ---------------------------------------------------------------
    def params(self, name: str) -> list[str]:
        """The params of ``name`` the search may move (not given by the user, not a single value)."""
        return [k for k, s in self.reg.get(name).params.items() if k not in self.given.get(name, {})
                and not (s.kind in ("float", "int") and s.low == s.high)]

    def full(self, name: str, params: dict[str, Any]) -> dict[str, Any]:
        """``params`` with every param of ``name`` filled (defaults where not given)."""
        return self.reg.get(name).completed(dict(params))

    def domain(self, name: str, param: str, values: dict[str, Any]) -> list | None:
        """Every value a bool, choice or small int may take that the static check accepts with the plugin's
        other params at ``values`` (the plugin alone on the baseline; None: a range of numbers)."""
        spec = self.reg.get(name).params[param]
        if spec.kind == "bool":
            options = [False, True]
        elif spec.kind == "choice":
            options = list(spec.choices)
        elif spec.kind == "int" and spec.high - spec.low < SMALL:
            options = list(range(spec.low, spec.high + 1))
        else:
            return None
        key = (name, param, tuple(sorted((k, repr(v)) for k, v in values.items() if k != param)))
        if key not in self._domains:
            self._domains[key] = [v for v in options if not self.refusal({name: {**values, param: v}})]
        return [v for v in options if v == values.get(param) or v in self._domains[key]]

    # ---- what the strategy may do next ---------------------------------------------------------------
    def prior(self, kind: str, sigma: float) -> float:
        """The expected gain of a probe (``kind`` probe) or of a param's sweep, learned from this study."""
        found = self.found[kind]
        return sigma * (PRIOR_WEIGHT * PRIOR_SD[kind] + sum(found)) / (PRIOR_WEIGHT + len(found))

    def options(self, stack: Plugins, members: list[str], losers: dict[str, float], sizes: dict[str, float],
                runs_left: float) -> list[Option]:
        """Probes of ``losers`` (candidate -> its measured harm on the stack now), sweeps and refinements of
        the params of ``members`` (``sizes``: each plugin's effect, for the sweeps' priors)."""
        s = self.lab.sigma()
        out: list[Option] = []
        mu = self.prior("probe", s)
        typical = sum(sizes.values()) / len(sizes) if sizes else s
        for name, harm in losers.items():
            rounds = self.probes.get(name, 0)
            m = len(self._probe_points(name, keep=False)) if rounds < PROBE_ROUNDS else 0
            if not m or runs_left < m + 1:  # nothing left to probe: every option of its bools and choices tried
                continue
            h = min(harm, self.best_probe.get(name, (math.inf, {}))[0])
            g = mu * 0.5 ** rounds
            excess = g * math.exp(-h / g) if h >= 0 else g - h  # E[max(0, G - h)], G ~ Exp(mean g)
            out.append(Option("probe", name, gain=CAPTURE * excess, cost=m + RACE_COST))
        mu = self.prior("sweep", s)
        for name in members:
            w = math.sqrt((abs(sizes.get(name, 0.0)) + s) / (typical + s))
            for k in self.params(name):
                if (name, k) not in self.tried:
                    dom = self.domain(name, k, self.full(name, stack[name]))
                    m = min(len(dom) - 1, 3) if dom is not None else 2
                    if m > 0 and runs_left >= m + 1:
                        out.append(Option("sweep", name, k, CAPTURE * mu * w, m + RACE_COST))
                elif runs_left >= 2:
                    gain = self._refine_gain(name, k, stack)
                    if gain > 0:
                        out.append(Option("refine", name, k, gain, 1 + 0.5 * RACE_COST))
        return out

    # ---- doing it ---------------------------------------------------------------------------------------
    def take(self, opt: Option, stack: Plugins, base_of: Callable[[str, dict], Plugins | None]) -> Plugins | None:
        """Run the probe, sweep or refinement ``opt`` on ``stack``; the configuration that beat the stack
        (the challenger to race), or None. ``base_of(name, params)``: ``stack`` with ``name`` at ``params``
        (what adding it would displace, displaced; None where the rules forbid it)."""
        if opt.kind == "probe":
            self.probes[opt.plugin] = self.probes.get(opt.plugin, 0) + 1
            confs = [base_of(opt.plugin, p) for p in self._probe_points(opt.plugin, keep=True)]
        else:
            values = self._sweep_values(opt.plugin, opt.param, stack) if opt.kind == "sweep" else \
                self._refine_values(opt.plugin, opt.param, stack)
            if opt.kind == "refine":
                self.refined[(opt.plugin, opt.param)] = self.refined.get((opt.plugin, opt.param), 0) + 1
            now = self.full(opt.plugin, stack[opt.plugin])
            here = self.tried.setdefault((opt.plugin, opt.param), [])
            if not any(v == now[opt.param] for v, _ in here):
                here.append((now[opt.param], 0.0))  # the stack's own value, as measured now
            confs = [{**stack, opt.plugin: {**now, opt.param: v}} for v in values]
        cur = self.lab.measured(stack)
        best: tuple[float, float, Plugins] | None = None  # (delta, se, configuration)
        for conf in (c for c in confs if c is not None):
            try:
                if self.lab.key_of(conf) == self.lab.key_of(stack):
                    continue
            except GolfplanError:  # params a plugin rejects (e.g. a minimum above its maximum)
                continue
            m = self.lab.ensure(conf, 1, f"{opt.kind} {opt.plugin}", opt.kind)
            if m is None:
                break
            self.proposals += 1
            delta, se = self.lab.compare(m, cur)
            what = describe_plugins({opt.plugin: conf[opt.plugin]}, self.reg)
            self.lab.record(Decision(opt.kind, what, delta if math.isfinite(delta) else None, se, False,
                                     frozenset(stack) & frozenset(conf)))
            if opt.kind != "probe":
                self.tried[(opt.plugin, opt.param)].append((conf[opt.plugin][opt.param], delta))
            if math.isfinite(delta) and (best is None or delta < best[0]):
                best = (delta, se, conf)
        if best is None:
            self.pending = (opt.kind, 0.0, 0.0, (opt.plugin, opt.param))
            self.settle(None)
            return None
        s = self.lab.sigma()
        if opt.kind == "probe":
            old = self.best_probe.get(opt.plugin, (math.inf, {}))[0]
            if best[0] < old:
                self.best_probe[opt.plugin] = (best[0], dict(best[2][opt.plugin]))
            before = min(old, opt_harm(self.lab, opt))  # the best it had measured
            before = before if math.isfinite(before) else best[0]
            self.pending = ("probe", max(0.0, before - best[0] - s) / s, before, (opt.plugin, ""))
        else:
            self.pending = (opt.kind, max(0.0, -best[0] - s) / s, 0.0, (opt.plugin, opt.param))
        self.say(f"  {opt.kind} {opt.plugin}{'.' + opt.param if opt.param else ''}: best {best[0]:+.4f}")
        if best[0] < -PARSIMONY * best[1]:
            return best[2]
        self.settle(None)
        return None

    def settle(self, race: Decision | None) -> None:
        """Learn what the last probe, sweep or refinement found: on fresh seeds where it raced (its one run was
        the best of several, so optimistic), else its one run's gain beyond a noise sd. What a param's
        refinements find counts for its sweep: the sweeps' record is what sweeping a param (and refining
        it) gained."""
        if self.pending is None:
            return
        kind, gain, before, where = self.pending
        if race is not None and race.delta is not None and math.isfinite(race.delta):
            gain = min(gain, max(0.0, before - race.delta) / self.lab.sigma())
        if kind == "refine":
            if where in self.swept_at:
                self.found["sweep"][self.swept_at[where]] += gain
        else:
            if kind == "sweep":
                self.swept_at[where] = len(self.found["sweep"])
            self.found[kind].append(gain)
        self.pending = None

    def race(self, conf: Plugins, stack: Plugins, label: str) -> Decision | None:
        """``conf`` replaces ``stack`` only if fresh seeds of it (1, then 2, then 3) beat the stack's by
        RACE_Z[n] standard errors; it is dropped once it is not ahead by RACE_GIVE_UP of one. Its first run,
        the one that made it a challenger, is left out. None when the budget ran out first."""
        delta, se = math.inf, 0.0
        for n in (1, 2, MAX_REPEATS):
            got = self.lab.ensure(conf, n + 1, "race", "race")
            if got is None or self.lab.ensure(stack, min(n + 1, 2), label, "race") is None:
                return None
            fresh = Measured(got.values[1:], got.runs - 1, got.ok and len(got.values) > 1)
            delta, se = self.lab.compare(fresh, self.lab.measured(stack))
            if delta > -RACE_GIVE_UP * se or delta < -RACE_Z[n] * se:
                break
        kept = delta < -RACE_Z[n] * se
        what = describe_plugins({n_: p for n_, p in conf.items() if stack.get(n_) != p}, self.reg)
        d = self.lab.record(Decision("race", what, delta if math.isfinite(delta) else None, se, kept,
                                     frozenset(stack) & frozenset(conf)))
        self.say(f"  race {what}: " + (f"{delta:+.4f} ± {se:.4f}" if math.isfinite(delta) else "failed") +
                 (" (kept)" if kept else ""))
        return d

    # ---- where to try -------------------------------------------------------------------------------------
    def _probe_points(self, name: str, keep: bool) -> list[dict[str, Any]]:
        """Params spread over every searched param's range at once (a Latin square over the params), away
        from the values tried before (the defaults first); each point once, none at the defaults (its test).
        ``keep``: remember the values as tried (the probe runs them)."""
        cls = self.reg.get(name)
        ks = self.params(name)
        m = 2 if len(ks) == 1 else 3
        start = cls.completed(dict(self.given.get(name, {})))
        columns: dict[str, list[Any]] = {}
        for j, k in enumerate(ks):
            seen = self.probed.get((name, k), [start[k]])
            col = pick(cls.params[k], self.domain(name, k, start), seen, m)
            col = (col * m)[:m] if col else [start[k]] * m
            if keep:
                self.probed[(name, k)] = seen + col
            columns[k] = col[j % m:] + col[:j % m]  # each point differs from the others in every param
        points: list[dict[str, Any]] = []
        for p in (ordered(cls.params, {**start, **{k: columns[k][i] for k in ks}}) for i in range(m)):
            if p != start and p not in points:  # a bool or a choice runs out of options before a range does
                points.append(p)
        return points

    def _sweep_values(self, name: str, k: str, stack: Plugins) -> list[Any]:
        spec, now = self.reg.get(name).params[k], self.full(name, stack[name])
        dom = self.domain(name, k, now)
        m = min(len(dom) - 1, 3) if dom is not None else 2
        lo, hi = ordered_bounds(self.reg.get(name).params, k, now)
        vals = pick(spec, dom, [now[k]] + [v for v, _ in self.tried.get((name, k), [])], m)
        vals = [min(max(v, lo), hi) if spec.kind in ("int", "float") else v for v in vals]
        return [v for i, v in enumerate(vals) if v != now[k] and v not in vals[:i]]

    def _refine_points(self, name: str, k: str, stack: Plugins) -> tuple[float, Any] | None:
        """(expected gain, value) of the next refinement of a swept param: a parabola through the best
        value tried and its neighbours (in the param's unit scale)."""
        spec = self.reg.get(name).params[k]
        pts = sorted({unit(spec, v): d for v, d in self.tried.get((name, k), []) if math.isfinite(d)}.items())
        if len(pts) < 3 or spec.kind in ("bool", "choice") or self.domain(name, k, self.full(name, stack[name])):
            return None
        i = min(range(len(pts)), key=lambda j: pts[j][1])
        if 0 < i < len(pts) - 1:
            (u0, f0), (u1, f1), (u2, f2) = pts[i - 1], pts[i], pts[i + 1]
            den = (u1 - u0) * (f1 - f2) - (u1 - u2) * (f1 - f0)
            num = (u1 - u0) ** 2 * (f1 - f2) - (u1 - u2) ** 2 * (f1 - f0)
            u = u1 - 0.5 * num / den if den else (u0 + u1) / 2
            u = min(max(u, u0 + 0.25 * (u1 - u0)), u2 - 0.25 * (u2 - u1))
            a = ((f2 - f1) / (u2 - u1) - (f1 - f0) / (u1 - u0)) / (u2 - u0)  # the parabola's curvature
            gain = max(0.0, a * (u - u1) ** 2)
        else:  # the best is at an end of what was tried: halfway to the range's end
            j = 1 if i == 0 else len(pts) - 2
            edge = 0.0 if i == 0 else 1.0
            u = (pts[i][0] + edge) / 2
            gain = 0.5 * max(0.0, pts[j][1] - pts[i][1]) * abs(edge - pts[i][0]) / max(abs(pts[j][0] - pts[i][0]), 1e-9)
        if min(abs(u - p) for p, _ in pts) < 0.02:
            return None
        return gain, at_unit(spec, u)

    def _refine_gain(self, name: str, k: str, stack: Plugins) -> float:
        if self.refined.get((name, k), 0) >= REFINES:
            return 0.0
        got = self._refine_points(name, k, stack)  # a parabola through noisy points: trusted by half, and never
        return min(0.5 * got[0], CAPTURE * self.prior("sweep", self.lab.sigma())) if got else 0.0  # above a sweep

    def _refine_values(self, name: str, k: str, stack: Plugins) -> list[Any]:
        got = self._refine_points(name, k, stack)
        if got is None:
            return []
        lo, hi = ordered_bounds(self.reg.get(name).params, k, self.full(name, stack[name]))
        return [min(max(got[1], lo), hi)]


def opt_harm(lab: Lab, opt: Option) -> float:
    """What a probed candidate measured at its defaults (its first decision), or inf."""
    for d in lab.decisions:
        if d.change == "+" + opt.plugin and d.delta is not None:
            return d.delta
    return math.inf


def pick(spec: Any, domain: list | None, seen: list[Any], m: int) -> list[Any]:
    """``m`` values of a param spread over its range away from ``seen`` (a range: :func:`spread` on its
    scale; a small int: the allowed values nearest those points; a bool or choice: options not seen yet)."""
    if spec.kind in ("bool", "choice"):
        return [v for v in (domain if domain is not None else spec.choices) if v not in seen][:m]
    units = [unit(spec, v) for v in seen]
    if domain is None:
        return [at_unit(spec, u) for u in spread(units, m)]
    left, out = [v for v in domain if v not in seen], []
    for _ in range(m):
        if not left:
            break
        target = spread(units, 1)[0]
        v = min(left, key=lambda x: abs(unit(spec, x) - target))
        out.append(v)
        left.remove(v)
        units.append(unit(spec, v))
    return out


def unit(spec: Any, v: Any) -> float:
    """Where ``v`` lies in the param's range, 0 to 1 on its scale (log where declared)."""
    if spec.kind not in ("float", "int") or spec.high == spec.low:
        return 0.0
    if spec.log:
        return (math.log(v) - math.log(spec.low)) / (math.log(spec.high) - math.log(spec.low))
    return (v - spec.low) / (spec.high - spec.low)


def at_unit(spec: Any, u: float) -> Any:
    u = min(max(u, 0.0), 1.0)
    v = math.exp(math.log(spec.low) + u * (math.log(spec.high) - math.log(spec.low))) if spec.log else \
        spec.low + u * (spec.high - spec.low)
    return int(round(v)) if spec.kind == "int" else float(v)


def spread(seen: list[float], m: int) -> list[float]:
    """``m`` points of [0, 1] that leave the farthest place from a tried point (``seen``) nearest: each in
    turn where a point is farthest, the middle of the widest gap, or a third of the way into an end's gap
    (which leaves the end and the gap's far side equally near)."""
    pts, out = sorted(seen), []
    for _ in range(m):
        if not pts:
            u = 0.5
        else:
            gaps = [((b - a) / 2, (a + b) / 2) for a, b in zip(pts, pts[1:])]  # (how far, where to put one)
            gaps += [(pts[0], pts[0] / 3), (1 - pts[-1], 1 - (1 - pts[-1]) / 3)]  # a tie: inside the range first
            u = max(gaps, key=lambda g: round(g[0], 9))[1]
        out.append(u)
        pts = sorted(pts + [u])
    return out


def ordered(specs: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with params declared ordered (``at_least``/``above``) put in order."""
    out = dict(values)
    for k, spec in specs.items():
        low = getattr(spec, "lower", None)
        if low and out[k] < out[low] + spec.gap():
            out[k] = min(max(out[low] + spec.gap(), out[k]), spec.high)
            if out[k] < out[low] + spec.gap():
                out[low] = out[k] - spec.gap()
    return out


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
