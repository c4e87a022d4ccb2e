"""The technique registry: built-in plugins, entry points and ``--plugin-path`` files.

Discovery, in order:
1. every module of ``golfplan.plugins`` (the built-ins);
2. the entry-point group ``golfplan`` (an entry point names a module or a Technique class);
3. each ``--plugin-path FILE_OR_DIR`` (a ``.py`` file, or every ``.py`` file of a folder).

A module contributes every ``Technique`` subclass it defines that has a ``name``.
The registry also holds the static rules of a combination (slots, conflicts, requires).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import pkgutil
from pathlib import Path
from types import ModuleType
from typing import Any, Iterable

from golfplan.core.errors import GolfplanError, PluginError, closest
from golfplan.core.modules import import_file
from golfplan.core.technique import Technique

ENTRY_POINT_GROUP = "golfplan"


def techniques_in(obj: Any) -> list[type[Technique]]:
    """The Technique classes a module defines (or the class itself)."""
    if inspect.isclass(obj):
        return [obj] if issubclass(obj, Technique) and obj.name else []
    if isinstance(obj, ModuleType):
        return [c for _, c in inspect.getmembers(obj, inspect.isclass)
                if issubclass(c, Technique) and c is not Technique and c.name and c.__module__ == obj.__name__]
    return []


class Registry:
    def __init__(self, plugin_paths: Iterable[str | Path] = (), entry_points: bool = True) -> None:
        self.techniques: dict[str, type[Technique]] = {}
        self.origins: dict[str, str] = {}
        self._load_builtins()
        if entry_points:
            self._load_entry_points()
        for path in plugin_paths:
            self.load_path(path)

    # ---- discovery -----------------------------------------------------------------
    def add(self, cls: type[Technique], origin: str) -> None:
        existing = self.techniques.get(cls.name)
        if existing is not None and existing is not cls:
            raise PluginError(f"plugin name '{cls.name}' is defined twice: {self.origins[cls.name]} and {origin}")
        _check_metadata(cls, origin)
        self.techniques[cls.name] = cls
        self.origins[cls.name] = origin

    def _load_builtins(self) -> None:
        import golfplan.plugins as pkg

        for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
            if info.name.startswith("_"):
                continue
            mod = importlib.import_module(f"{pkg.__name__}.{info.name}")
            for cls in techniques_in(mod):
                self.add(cls, "builtin")

    def _load_entry_points(self) -> None:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            try:
                obj = ep.load()
            except Exception as e:  # a broken third-party package must say which
                raise PluginError(f"entry point '{ep.name} = {ep.value}' failed to load: {type(e).__name__}: {e}") from None
            for cls in techniques_in(obj):
                self.add(cls, f"entry point {ep.value}")

    def load_path(self, path: str | Path) -> list[type[Technique]]:
        p = Path(path)
        if p.is_dir():
            files = sorted(f for f in p.glob("*.py") if not f.name.startswith("_"))
        elif p.is_file():
            files = [p]
        else:
            raise PluginError(f"--plugin-path {p}: no such file or folder")
        found: list[type[Technique]] = []
        for f in files:
            try:
                mod = import_file(f, "golfplan_user_plugins", "plugin file")
            except GolfplanError as e:
                raise PluginError(str(e)) from None
            classes = techniques_in(mod)
            if not classes and p.is_file():
                raise PluginError(f"{f} defines no Technique subclass with a name")
            for cls in classes:
                self.add(cls, str(f))
                found.append(cls)
        return found

    # ---- lookup --------------------------------------------------------------------
    def names(self) -> list[str]:
        return sorted(self.techniques)

    def get(self, name: str) -> type[Technique]:
        try:
            return self.techniques[name]
        except KeyError:
            raise PluginError(f"unknown plugin '{name}'{closest(name, self.techniques)}") from None

    def classes(self, names: Iterable[str]) -> list[type[Technique]]:
        return [self.get(n) for n in names]

    def instantiate(self, plugins: dict[str, dict[str, Any]]) -> list[Technique]:
        """Technique instances for ``{name: params}``, after the static combination rules."""
        classes = self.classes(plugins)
        problems = combination_problems(classes)
        if problems:
            raise PluginError(problems[0])
        return [cls(**plugins[cls.name]) for cls in classes]


def clash(a: type[Technique], b: type[Technique]) -> bool:
    """Whether two techniques cannot run together: they share a slot or one conflicts with the other."""
    return bool(set(a.slots()) & set(b.slots())) or b.name in a.conflicts or a.name in b.conflicts


def combination_problems(classes: list[type[Technique]]) -> list[str]:
    """Slots shared, conflicts present, requirements missing: each as one sentence."""
    problems: list[str] = []
    names = [c.name for c in classes]
    dup = sorted({n for n in names if names.count(n) > 1})
    problems += [f"plugin '{n}' is listed twice" for n in dup]
    by_slot: dict[str, str] = {}
    for c in classes:
        for slot in c.slots():
            if slot in by_slot and by_slot[slot] != c.name:
                problems.append(f"plugins '{by_slot[slot]}' and '{c.name}' both fill the '{slot}' slot; pick one")
            by_slot.setdefault(slot, c.name)
    for i, a in enumerate(classes):
        for b in classes[i + 1:]:
            if b.name in a.conflicts or a.name in b.conflicts:
                problems.append(f"plugins '{a.name}' and '{b.name}' conflict; pick one")
    for c in classes:
        for req in c.requires:
            if req not in names:
                problems.append(f"plugin '{c.name}' requires '{req}' (add it to --plugins)")
    return problems


def _check_metadata(cls: type[Technique], origin: str) -> None:
    where = f"plugin '{cls.name}' ({origin})"
    if not cls.name.replace("_", "").isalnum() or not cls.name[0].isalpha():
        raise PluginError(f"{where}: name must be an identifier-like word")
    if not cls.summary:
        raise PluginError(f"{where}: needs a one-line summary")
    if not isinstance(cls.params, dict):
        raise PluginError(f"{where}: params must be a dict of Float/Int/Choice/Bool")
