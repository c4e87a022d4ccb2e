"""The Technique base class and its typed parameters.

A technique is a class whose metadata (name, slot, conflicts, ``compile_safe``,
params with search ranges, the seed experiments it reproduces) sits next to its
``@hookimpl`` methods. A run instantiates each enabled technique with its params
and registers the instance with a fresh plugin manager.

    class Tidal(Technique):
        name = "tidal"
        summary = "golden-ratio warmup (38.2 %) then cosine decay"
        slot = "lr_schedule"
        params = {"warmup_frac": Float(0.382, 0.1, 0.6)}
        seed_refs = ("N2", "F8")

        @hookimpl
        def lr_schedule(self, clock, config):
            ...

Two params that must be ordered say so on the higher one: ``Float(3.0, 1.0, 10.0,
at_least="boost_min")`` (never below ``boost_min``) or ``Int(16, 2, 32, above="end_heads")``
(strictly above). Every instance is checked (a clear PluginError), ``info()`` and ``golfplan plugins
show`` list the order, and the planner samples the lower param first, so it proposes only valid
combinations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, ClassVar

import pluggy

from golfplan.core.errors import PluginError, closest

PROJECT = "golfplan"
hookimpl = pluggy.HookimplMarker(PROJECT)


@dataclass(frozen=True)
class Param:
    """A typed technique parameter: its default and the range the planner searches."""

    kind: str  # float | int | choice | bool
    default: Any
    low: Any = None
    high: Any = None
    log: bool = False
    choices: tuple = ()
    help: str = ""
    at_least: str | None = None  # another param of the plugin this one may not be below
    above: str | None = None  # another param this one must exceed (ints: by at least 1)

    @property
    def lower(self) -> str | None:
        """The param this one is ordered after (``at_least`` or ``above``), if any."""
        return self.at_least or self.above

    def gap(self) -> float:
        """How far above its lower param this one must be at least (0 for ``at_least``)."""
        return 0 if self.at_least else (1 if self.kind == "int" else 0)

    def validate(self, name: str, value: Any) -> Any:
        """Return ``value`` coerced to this param's type, or raise PluginError."""
        if self.kind == "bool":
            if isinstance(value, bool):
                return value
            raise PluginError(f"param '{name}' expects true/false, got {value!r}")
        if self.kind == "choice":
            if value in self.choices:
                return value
            raise PluginError(f"param '{name}' must be one of {list(self.choices)}, got {value!r}")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise PluginError(f"param '{name}' expects a number, got {value!r}")
        if self.kind == "int":
            if isinstance(value, float) and not value.is_integer():
                raise PluginError(f"param '{name}' expects an integer, got {value!r}")
            value = int(value)
        else:
            value = float(value)
            if not math.isfinite(value):
                raise PluginError(f"param '{name}' must be finite, got {value!r}")
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            raise PluginError(f"param '{name}'={value} is out of range [{self.low}, {self.high}]")
        return value

    def suggest(self, trial: Any, name: str) -> Any:
        """Sample this param with an Optuna-like ``trial`` (duck-typed; core imports no optuna)."""
        if self.kind == "float":
            return trial.suggest_float(name, self.low, self.high, log=self.log)
        if self.kind == "int":
            return trial.suggest_int(name, self.low, self.high, log=self.log)
        if self.kind == "bool":
            return trial.suggest_categorical(name, [False, True])
        return trial.suggest_categorical(name, list(self.choices))

    def describe(self) -> str:
        if self.kind in ("float", "int"):
            scale = " log" if self.log else ""
            order = f" >= {self.at_least}" if self.at_least else (f" > {self.above}" if self.above else "")
            return f"{self.default} [{self.low}, {self.high}{scale}]{order}"
        if self.kind == "choice":
            return f"{self.default} {{{', '.join(map(str, self.choices))}}}"
        return str(self.default)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": self.kind, "default": self.default}
        if self.kind in ("float", "int"):
            d.update(low=self.low, high=self.high, log=self.log)
            if self.at_least:
                d["at_least"] = self.at_least
            if self.above:
                d["above"] = self.above
        if self.kind == "choice":
            d["choices"] = list(self.choices)
        if self.help:
            d["help"] = self.help
        return d


def Float(default: float, low: float, high: float, log: bool = False, help: str = "", at_least: str | None = None,
          above: str | None = None) -> Param:
    """A float param. ``at_least="other"``: never below the plugin's param ``other`` (``above``:
    strictly above it); the planner samples ``other`` first, then this one within the valid range."""
    if not low <= default <= high:
        raise ValueError(f"default {default} outside [{low}, {high}]")
    if at_least and above:
        raise ValueError("a param is ordered after one other param: give at_least or above, not both")
    return Param("float", float(default), float(low), float(high), log, help=help, at_least=at_least, above=above)


def Int(default: int, low: int, high: int, log: bool = False, help: str = "", at_least: str | None = None,
        above: str | None = None) -> Param:
    """An int param; ``at_least`` / ``above`` as for :func:`Float` (``above``: at least one more)."""
    if not low <= default <= high:
        raise ValueError(f"default {default} outside [{low}, {high}]")
    if at_least and above:
        raise ValueError("a param is ordered after one other param: give at_least or above, not both")
    return Param("int", int(default), int(low), int(high), log, help=help, at_least=at_least, above=above)


def Choice(default: Any, choices: tuple | list, help: str = "") -> Param:
    if default not in choices:
        raise ValueError(f"default {default!r} not among {choices}")
    return Param("choice", default, choices=tuple(choices), help=help)


def Bool(default: bool, help: str = "") -> Param:
    return Param("bool", bool(default), help=help)


class Technique:
    """Base class of every technique plugin. Subclasses set the metadata below."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    slot: ClassVar[str | tuple[str, ...] | None] = None  # at most one plugin per slot in a run
    conflicts: ClassVar[tuple[str, ...]] = ()
    requires: ClassVar[tuple[str, ...]] = ()
    compile_safe: ClassVar[bool] = True
    unsafe_reason: ClassVar[str] = ""  # why it is not compile-safe (shown when refused)
    params: ClassVar[dict[str, Param]] = {}
    seed_refs: ClassVar[tuple[str, ...]] = ()  # seed experiment IDs this technique reproduces
    seed_result: ClassVar[str] = ""  # what the seed log reported for it
    source: ClassVar[str] = ""  # where a technique from outside the seed log comes from (a leaderboard record)
    source_result: ClassVar[str] = ""  # what that source measured for it

    def __init__(self, **values: Any) -> None:
        resolved: dict[str, Any] = {}
        for key in values:
            if key not in self.params:
                raise PluginError(f"plugin '{self.name}' has no param '{key}'{closest(key, self.params)}")
        for key, spec in self.params.items():
            try:
                resolved[key] = spec.validate(key, values.get(key, spec.default))
            except PluginError as e:
                raise PluginError(f"plugin '{self.name}': {e}") from None
        for low_name, high_name in self.ordered_params():
            spec = self.params[high_name]
            lo, hi = resolved[low_name], resolved[high_name]
            if hi < lo + spec.gap() or (spec.above and spec.kind == "float" and hi <= lo):
                rel = "must not exceed" if spec.at_least else "must be below"
                raise PluginError(f"plugin '{self.name}': {low_name}={lo} {rel} {high_name}={hi}")
        self.values: dict[str, Any] = resolved
        self.p = SimpleNamespace(**resolved)

    def fresh(self) -> "Technique":
        """A new instance with the same params: what each separate model build gets (the check's
        traces, its smoke run and the run itself never share per-run state kept on ``self``)."""
        return type(self)(**self.values)

    @classmethod
    def ordered_params(cls) -> list[tuple[str, str]]:
        """``(lower, higher)`` for every param declared ``at_least``/``above`` another, lower ones
        first (so sampling in this order always knows a param's lower bound). Raises PluginError
        for a declaration that names no numeric param of the same kind, circles, or leaves the
        higher param no valid value."""
        pairs: list[tuple[str, str]] = []
        for name, spec in cls.params.items():
            other = spec.lower
            if other is None:
                continue
            where = f"plugin '{cls.name}': param '{name}' is ordered after '{other}'"
            if other not in cls.params or other == name:
                raise PluginError(f"{where}, which is not another param of it{closest(other, cls.params)}")
            low = cls.params[other]
            if spec.kind not in ("int", "float") or low.kind != spec.kind:
                raise PluginError(f"{where}: both must be int or both float params")
            if low.low + spec.gap() > spec.high:
                raise PluginError(f"{where}: no value of '{name}' up to {spec.high} can exceed '{other}' >= {low.low}")
            pairs.append((other, name))
        order: list[str] = []
        pending = dict((h, l) for l, h in pairs)
        while pending:
            ready = [h for h, l in pending.items() if l not in pending]
            if not ready:
                raise PluginError(f"plugin '{cls.name}': params {', '.join(sorted(pending))} are ordered in a circle")
            for h in ready:
                order.append(h)
                del pending[h]
        rank = {n: i for i, n in enumerate(order)}
        return sorted(pairs, key=lambda p: rank[p[1]])

    @classmethod
    def completed(cls, given: dict[str, Any]) -> dict[str, Any]:
        """``given`` with every other param at its default, a default moved where a declared order
        needs it (a default ``boost_max`` below a given ``boost_min`` becomes ``boost_min``): the
        params a planner starts from when only some are fixed."""
        values = {k: spec.default for k, spec in cls.params.items()}
        values.update(given)
        for lower, higher in cls.ordered_params():
            spec = cls.params[higher]
            try:
                lo, hi = values[lower], values[higher]
                if hi >= lo + spec.gap() and not (spec.above and spec.kind == "float" and hi <= lo):
                    continue
                strict = spec.above and spec.kind == "float"
                if higher not in given:
                    values[higher] = min(spec.high, math.nextafter(lo, math.inf) if strict else lo + spec.gap())
                elif lower not in given:
                    values[lower] = max(cls.params[lower].low, math.nextafter(hi, -math.inf) if strict else
                                        hi - spec.gap())
            except TypeError:  # a given value of the wrong type: the constructor says so
                continue
        return values

    @classmethod
    def slots(cls) -> tuple[str, ...]:
        if cls.slot is None:
            return ()
        return (cls.slot,) if isinstance(cls.slot, str) else tuple(cls.slot)

    @classmethod
    def info(cls) -> dict[str, Any]:
        """The plugin's metadata as plain data (``golfplan plugins --json``)."""
        return {
            "name": cls.name,
            "summary": cls.summary,
            "slot": list(cls.slots()),
            "conflicts": list(cls.conflicts),
            "requires": list(cls.requires),
            "compile_safe": cls.compile_safe,
            "unsafe_reason": cls.unsafe_reason,
            "params": {k: v.to_dict() for k, v in cls.params.items()},
            "ordered": [{"lower": lo, "higher": hi, "strict": bool(cls.params[hi].above)}
                        for lo, hi in cls.ordered_params()],
            "seed_refs": list(cls.seed_refs),
            "seed_result": cls.seed_result,
            "source": cls.source,
            "source_result": cls.source_result,
            "module": cls.__module__,
        }

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.values.items())
        return f"{type(self).__name__}({args})"
