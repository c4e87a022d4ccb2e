"""The search space of a study, read from the plugins' metadata.

Each searched plugin is switched on or off, and its params are sampled from their declared
ranges only while it is on (conditional params, named ``plugin.param``). Plugins that share a
slot (two LR schedules, two activations) are one categorical choice, so a combination the
slot rules forbid is never proposed:

    tidal                     bool: a plugin alone in its slots
    slot:lr_schedule          categorical: none | cosine | tidal | ...
    slot:lr_schedule+wd_schedule   several slots linked by a plugin that fills both:
                              every slot-compatible combination (tidal+wd_ramp, predator_prey, ...)

``conflicts`` and ``requires`` are applied while sampling: a plugin that conflicts with one
already on, or whose requirement is off, is not offered. Combinations the preflight refused
are remembered as *forbidden subsets* (a set of plugins that fails whatever else is on, e.g. a
plugin that is not compile-safe, or two that fail the trace together) and are never proposed
again. When a choice loses options this way its param gets a new name listing the options
left (``slot:lr_schedule[none|tidal]``), because Optuna needs one distribution per name.

Params a plugin declares ordered (``Float(..., at_least="boost_min")``) are sampled lower one
first, then the higher one within ``[max(its low, the lower's value), its high]``, so a combination
the plugin would reject is never proposed (the lower one's range stops where the higher one can
still follow). Their ranges then differ from trial to trial, which Optuna allows for numbers.

Plugins that are ``always`` on have their params searched; ``fixed`` plugins are on with fixed
params. A searched plugin that shares a slot with a fixed one replaces it while on.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Iterable

from golfplan.core.technique import Param

Plugins = dict[str, dict[str, Any]]
MAX_COMBOS = 512
PREFILTER_MAX_VALUES = 64


@dataclass
class Group:
    """One decision of the sampler: a bool for a lone plugin, or a categorical over combinations."""

    name: str
    plugins: list[str]
    combos: list[tuple[str, ...]] = field(default_factory=list)  # categorical only; () is "none"

    @property
    def is_flag(self) -> bool:
        return not self.combos

    @staticmethod
    def label(combo: tuple[str, ...]) -> str:
        return "+".join(combo) if combo else "none"


class SearchSpace:
    """On/off choices and params of ``optional`` plugins, params of ``always`` plugins."""

    def __init__(self, registry: Any, optional: Plugins, always: Plugins | None = None,
                 fixed: Plugins | None = None, domains: dict[str, dict[str, list]] | None = None) -> None:
        self.registry = registry
        self.optional = dict(optional)
        self.always = dict(always or {})
        self.fixed = dict(fixed or {})
        self.domains = domains or {}  # plugin -> param -> the values the static check accepts
        self.forbidden: list[frozenset[str]] = []
        self.groups = self._groups()

    # ---- structure -----------------------------------------------------------------
    def _slots(self, name: str) -> tuple[str, ...]:
        return self.registry.get(name).slots()

    def _groups(self) -> list[Group]:
        names = list(self.optional)
        parent = {n: n for n in names}

        def find(n: str) -> str:
            while parent[n] != n:
                parent[n] = parent[parent[n]]
                n = parent[n]
            return n

        for a, b in itertools.combinations(names, 2):
            if set(self._slots(a)) & set(self._slots(b)):
                parent[find(a)] = find(b)
        comps: dict[str, list[str]] = {}
        for n in names:
            comps.setdefault(find(n), []).append(n)
        groups: list[Group] = []
        for members in comps.values():
            if len(members) == 1:
                groups.append(Group(members[0], members))
                continue
            slots = sorted({s for m in members for s in self._slots(m)})
            combos = self._combos(members)
            groups.append(Group("slot:" + "+".join(slots), members, combos))
        # plugins whose requirements are searched come after the plugins they require
        searched = set(names)

        def needs_later(g: Group) -> bool:
            return any(r in searched and r not in g.plugins for m in g.plugins for r in self.registry.get(m).requires)

        return [g for g in groups if not needs_later(g)] + [g for g in groups if needs_later(g)]

    def _combos(self, members: list[str]) -> list[tuple[str, ...]]:
        out: list[tuple[str, ...]] = [()]
        for size in range(1, len(members) + 1):
            for combo in itertools.combinations(members, size):
                slots = [s for m in combo for s in self._slots(m)]
                if len(slots) == len(set(slots)) and not self._static_clash(combo):
                    out.append(combo)
                    if len(out) > MAX_COMBOS:
                        from golfplan.planner.definition import StudyError

                        raise StudyError(f"plugins {', '.join(members)} give more than {MAX_COMBOS} slot combinations")
        return out

    def _static_clash(self, names: Iterable[str]) -> bool:
        names = list(names)
        for a, b in itertools.combinations(names, 2):
            if b in self.registry.get(a).conflicts or a in self.registry.get(b).conflicts:
                return True
        return False

    # ---- forbidden subsets -------------------------------------------------------------
    def forbid(self, subset: Iterable[str]) -> None:
        s = frozenset(subset)
        if s and s not in self.forbidden:
            self.forbidden.append(s)

    def is_forbidden(self, names: Iterable[str]) -> bool:
        on = set(names)
        return any(s <= on for s in self.forbidden)

    def assemble(self, chosen: Iterable[str]) -> list[str]:
        """The plugins a trial runs: fixed ones (minus slot-mates of chosen ones), always, chosen."""
        chosen = list(chosen)
        taken = {s for c in chosen for s in self._slots(c)}
        fixed = [f for f in self.fixed if not (set(self._slots(f)) & taken)]
        return fixed + list(self.always) + chosen

    def _allowed(self, combo: tuple[str, ...], chosen: list[str], decided: set[str]) -> bool:
        if not combo:
            return True
        names = self.assemble(chosen + list(combo))
        for c in combo:
            cls = self.registry.get(c)
            for other in names:
                if other != c and (other in cls.conflicts or c in self.registry.get(other).conflicts):
                    return False
            for req in cls.requires:
                if req not in names and (req in decided or req not in self.optional):
                    return False
        return not self.is_forbidden(names)

    # ---- sampling --------------------------------------------------------------------
    def sample(self, trial: Any) -> Plugins:
        """The trial's plugins ({name: params}, fixed ones included) from an Optuna-like trial."""
        chosen: list[str] = []
        decided: set[str] = set()
        for g in self.groups:
            if g.is_flag:
                if self._allowed((g.name,), chosen, decided):
                    if trial.suggest_categorical(g.name, [False, True]):
                        chosen.append(g.name)
            else:
                options = [c for c in g.combos if self._allowed(c, chosen, decided)]
                if len(options) > 1:
                    labels = [Group.label(c) for c in options]
                    name = g.name if len(options) == len(g.combos) else f"{g.name}[{'|'.join(labels)}]"
                    pick = trial.suggest_categorical(name, labels)
                    chosen += list(options[labels.index(pick)])
            decided.update(g.plugins)
        out: Plugins = {}
        for name in self.assemble(chosen):
            if name in self.fixed:
                out[name] = dict(self.fixed[name])
            else:
                out[name] = self._sample_params(trial, name)
        return out

    def _sample_params(self, trial: Any, name: str) -> dict[str, Any]:
        """The plugin's params: given ones as given, the others sampled from their ranges (or the
        values the static screening kept). A param ordered after another (``at_least``/``above``)
        is sampled after it, within what it leaves, so only valid combinations are proposed."""
        cls = self.registry.get(name)
        given = self.optional.get(name, self.always.get(name, {}))
        values = dict(given)
        highs = ordered_highs(cls, given)
        for pname in sampling_order(cls):
            spec = cls.params[pname]
            if pname in given:
                continue
            key = f"{name}.{pname}"
            domain = self.domains.get(name, {}).get(pname)
            if domain is not None:
                values[pname] = trial.suggest_categorical(key, domain)
                continue
            low = spec.low
            if spec.lower is not None:
                low = max(low, above(values[spec.lower] + spec.gap(), spec))
            high = highs.get(pname, spec.high)
            if spec.kind == "float":
                values[pname] = trial.suggest_float(key, low, high, log=spec.log)
            elif spec.kind == "int":
                values[pname] = trial.suggest_int(key, low, high, log=spec.log)
            else:
                values[pname] = spec.suggest(trial, key)
        return {p: values[p] for p in cls.params if p in values}

    # ---- encoding fixed configurations as params (enqueued trials) ----------------------
    def encode(self, chosen: Plugins) -> dict[str, Any]:
        """Optuna params that make ``sample`` return ``chosen`` (its searched plugins and params)."""
        params: dict[str, Any] = {}
        for g in self.groups:
            on = tuple(p for p in g.plugins if p in chosen)
            if g.is_flag:
                params[g.name] = bool(on)
            else:
                params[g.name] = Group.label(on)
        for name, values in chosen.items():
            if name in self.fixed and name not in self.optional:
                continue
            given = self.optional.get(name, self.always.get(name, {}))
            for pname in self.registry.get(name).params:
                if pname not in given and pname in values:
                    params[f"{name}.{pname}"] = values[pname]
        return params

    def defaults(self, name: str) -> dict[str, Any]:
        given = self.optional.get(name, self.always.get(name, {}))
        vals = self.registry.get(name).completed(given)
        for pname, domain in self.domains.get(name, {}).items():
            if pname not in given and vals.get(pname) not in domain and domain:
                vals[pname] = domain[0]
        return vals

    def all_on(self) -> Plugins:
        """Every searched plugin on with default params, keeping the first of any slot clash."""
        chosen: list[str] = []
        decided: set[str] = set()
        for g in self.groups:
            candidates = [(p,) for p in g.plugins] if not g.is_flag else [(g.name,)]
            if not g.is_flag:
                # the largest compatible combination, in listed order
                candidates = sorted([c for c in g.combos if c], key=lambda c: (-len(c), [g.plugins.index(x) for x in c]))
            for c in candidates:
                if self._allowed(c, chosen, decided):
                    chosen += list(c)
                    break
            decided.update(g.plugins)
        return {n: self.defaults(n) for n in chosen}

    def describe(self) -> list[str]:
        """One line per decision, for the study's header."""
        lines = []
        for g in self.groups:
            if g.is_flag:
                lines.append(f"{g.name}: on/off" + self._param_note(g.name))
            else:
                lines.append(f"{g.name}: one of {', '.join(Group.label(c) for c in g.combos)}")
                for p in g.plugins:
                    note = self._param_note(p)
                    if note:
                        lines.append(f"  {p}{note}")
        for name in self.always:
            lines.append(f"{name}: always on" + self._param_note(name))
        return lines

    def _param_note(self, name: str) -> str:
        given = self.optional.get(name, self.always.get(name, {}))
        parts = []
        for pname, spec in self.registry.get(name).params.items():
            if pname in given:
                parts.append(f"{pname}={given[pname]} (fixed)")
            elif pname in self.domains.get(name, {}):
                parts.append(f"{pname} in {self.domains[name][pname]}")
            else:
                parts.append(f"{pname} {spec.describe()}")
        return (": " + ", ".join(parts)) if parts else ""


def sampling_order(cls: Any) -> list[str]:
    """The plugin's params, each after the param it is ordered after."""
    later = [hi for _, hi in cls.ordered_params()]
    return [p for p in cls.params if p not in later] + later


def ordered_highs(cls: Any, given: dict[str, Any]) -> dict[str, Any]:
    """The highest value each lower param of an order may take so that its higher param keeps a
    valid value (``boost_min`` up to ``boost_max``'s high, or its given value)."""
    highs: dict[str, Any] = {}
    for lower, higher in reversed(cls.ordered_params()):
        spec = cls.params[higher]
        top = below(given.get(higher, highs.get(higher, spec.high)) - spec.gap(), spec)
        highs[lower] = min(highs.get(lower, cls.params[lower].high), top)
    return highs


def above(value: Any, spec: Param) -> Any:
    """The least value ``spec`` may take above ``value`` (the next float for a strict float order)."""
    return math.nextafter(value, math.inf) if spec.above and spec.kind == "float" else value


def below(value: Any, spec: Param) -> Any:
    """The greatest value the lower param may take under ``value`` of the higher ``spec``."""
    return math.nextafter(value, -math.inf) if spec.above and spec.kind == "float" else value


def ordered(cls: Any, pname: str) -> bool:
    """True when ``pname`` is in an order with another param of the plugin."""
    return any(pname in pair for pair in cls.ordered_params())


def param_domain(spec: Param) -> list | None:
    """Every value of a small int or choice param (None for floats and large ranges)."""
    if spec.kind == "int" and not spec.log and spec.high - spec.low < PREFILTER_MAX_VALUES:
        return list(range(spec.low, spec.high + 1))
    if spec.kind == "choice":
        return list(spec.choices)
    return None
