"""Tree shaking for the packed ``train_gpt.py``: keep only the code a run can reach.

The packer (:mod:`golfplan.core.export.packer`) bundles whole modules, but a run reaches a small part of
them: ``config.py`` also resolves YAML files and profiles for the command line, ``technique.py``
describes params for the planner, ``hooks.py`` prints the hook reference, every plugin carries the
metadata ``golfplan plugins`` lists. The challenge counts every byte of ``train_gpt.py``, so what
the run never reaches must cost the user no weights. :func:`shake` removes it, on the syntax tree:

- a module-level definition (function, class, assignment, imported name) stays when its name is
  referenced by code that stays: as a name, an attribute (``module.name``) or an identifier-like
  string constant (``getattr(x, "name")``; a dict's keys are data and do not count);
- a class member (method, class attribute) stays when its name is referenced as an attribute or
  a string; members other code calls by name stay always:
  dunders, the methods torch calls (``forward``, ``backward`` ...), dataclass fields; a hook
  implementation stays when kept code calls its hook (``hooks.pm.hook.NAME``);
- a module stays when code that stays imports it (lazy imports inside functions included);
- every other statement (module-level code, ``if`` blocks, decorators with effects) stays, with
  everything it references.

Inside a packed file the flag ``golfplan.core.export.pack.PACKED`` is true: every read of it becomes
``True`` and the branches that cannot run there fold away (``if PACKED: ...`` keeps its body,
``if not PACKED and ...: ...`` its ``else``, statements after a ``raise`` or ``return`` go), so
what only the library needs (building the embedded dataset, the plugins' ``configure``, which
ran when the file was packed) is not reached. Hook implementations stay only where some kept
code calls their hook.

The analysis is by name across the whole program, not by scope: two things of one name are both
kept when either is used, so it keeps too much rather than too little. What it cannot see is a
name built at run time (``getattr(x, "get_" + kind)``); the packed file's tests run it end to end.
The roots are the entry point and the run's plugin classes.

Each module's part of the work (its tree read into units: what each defines, references and
imports; its shaken source for a set of live units; the names :func:`kept_names` reads) depends on
its source alone, so :func:`shake` and :func:`kept_names` take a ``memo`` that caches it by content:
the packer's keeps it in the process and on disk, and shaking a new set of modules seen before is
a walk over their summaries that parses only the modules whose kept part is new.
"""

from __future__ import annotations

import ast
import hashlib
from dataclasses import dataclass, field
from typing import Any, Callable

from golfplan.core.export.fold import FLAG, fold

# Decorators that only wrap what they decorate: a definition under them can be dropped when unused.
# Any other decorator may register the definition somewhere, so its definition always stays.
PURE_DECORATORS = frozenset({"dataclass", "lru_cache", "cache", "cached_property", "contextmanager", "no_grad",
                             "inference_mode", "wraps", "staticmethod", "classmethod", "property", "setter",
                             "hookspec", "compile", "total_ordering"})
HOOKIMPL = "hookimpl"  # golfplan.core.technique.hookimpl: pluggy calls the method by its name
# Methods torch (or Python's protocols) call by name on the classes that define them.
CALLED_BY_NAME = frozenset({"forward", "backward", "setup_context", "jvp", "vmap", "extra_repr", "reset_parameters",
                            "_load_from_state_dict", "_save_to_state_dict", "step", "zero_grad"})


@dataclass
class _Unit:
    node: ast.AST
    names: set[str] | None  # the names it defines; None: always kept (when its module and class are)
    member: bool = False  # a class member: referenced as an attribute
    parent: "_Unit | None" = None  # its class
    refs: set[str] | None = None  # names it references as names (None: not scanned)
    attrs: set[str] | None = None  # as attributes or strings
    imports: set[str] | None = None  # modules it imports


def _decorators(node: ast.AST) -> set[str]:
    out: set[str] = set()
    for d in getattr(node, "decorator_list", []):
        d = d.func if isinstance(d, ast.Call) else d
        out.add(d.attr if isinstance(d, ast.Attribute) else getattr(d, "id", ""))
    return out


def _absolute(node: ast.ImportFrom, package: str) -> str:
    base = node.module or ""
    if node.level:
        anchor = package.split(".")
        anchor = anchor[: len(anchor) - (node.level - 1)]
        base = ".".join(anchor + ([base] if base else []))
    return base


def _scan(nodes: list[ast.AST], package: str) -> tuple[set[str], set[str], set[str]]:
    """(names referenced, attributes and strings referenced, modules imported) under ``nodes``. A
    keyword argument names a parameter, not a member: dataclass fields, which keywords do name,
    always stay."""
    refs: set[str] = set()
    attrs: set[str] = set()
    mods: set[str] = set()
    for node in nodes:
        keys = {id(k) for x in ast.walk(node) if isinstance(x, ast.Dict) for k in x.keys if k is not None}
        for x in ast.walk(node):
            if id(x) in keys:  # a dict's string key is data, not a name looked up
                continue
            if isinstance(x, ast.Name):
                refs.add(x.id)
            elif isinstance(x, ast.Attribute):
                attrs.add(x.attr)
            elif isinstance(x, ast.Constant) and isinstance(x.value, str) and x.value.isidentifier():
                refs.add(x.value)
                attrs.add(x.value)
            elif isinstance(x, ast.Import):
                for a in x.names:
                    mods.add(a.name)
                    refs.add((a.asname or a.name).split(".")[0])
            elif isinstance(x, ast.ImportFrom):
                base = _absolute(x, package)
                mods.add(base)
                mods.update(f"{base}.{a.name}" for a in x.names)
                refs.update(a.name for a in x.names)
    return refs, attrs, mods


def _assigned(node: ast.AST) -> set[str] | None:
    """Names a plain assignment binds; None when it also writes elsewhere (an attribute, an item)."""
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    names: set[str] = set()
    for t in targets:
        for x in ast.walk(t):
            if isinstance(x, (ast.Attribute, ast.Subscript, ast.Starred)):
                return None
            if isinstance(x, ast.Name):
                names.add(x.id)
    return names


def _strip_signatures(tree: ast.AST) -> None:
    """Drop argument and return annotations (never evaluated under ``from __future__ import
    annotations``; the minifier drops them too), so a type named only there is not kept for them."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            node.returns = None
            a = node.args
            for arg in (*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg):
                if arg is not None:
                    arg.annotation = None


def _definition(node: ast.AST, member: bool, dataclass_body: bool) -> set[str] | None:
    """The names a statement defines, or None when it stays whenever its module (and class) does."""
    names: set[str] | None = None
    if isinstance(node, ast.ImportFrom) and node.module != "__future__":
        names = {a.asname or a.name for a in node.names}
    elif isinstance(node, ast.Import):
        names = {(a.asname or a.name).split(".")[0] for a in node.names}
    elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        decos = _decorators(node) - ({HOOKIMPL} if member else set())
        called = member and node.name in CALLED_BY_NAME
        names = None if called or not decos <= PURE_DECORATORS else {node.name}
    elif isinstance(node, ast.Assign):
        names = _assigned(node)
    elif isinstance(node, ast.AnnAssign) and node.value is not None and not dataclass_body:
        names = _assigned(node)
    if names is not None and any(n.startswith("__") for n in names):
        return None
    return names


def _units(tree: ast.Module, package: str, scan: bool = True) -> list[_Unit]:
    """The module's units in a fixed order (a class before its members), the tree's ``from a import
    b, c`` split into one statement a name. Without ``scan`` their references are not collected
    (:func:`_render` needs only the nodes)."""
    out: list[_Unit] = []

    def add(body: list, parent: _Unit | None, dataclass_body: bool) -> list:
        member = parent is not None
        new_body: list = []
        for node in body:
            if isinstance(node, ast.ImportFrom) and node.module != "__future__" and len(node.names) > 1:
                parts = [ast.ImportFrom(module=node.module, names=[a], level=node.level) for a in node.names]
            else:
                parts = [node]
            for part in parts:  # one unit per imported name, so unused names go one by one
                new_body.append(part)
                names = _definition(part, member, dataclass_body)
                if isinstance(part, ast.ClassDef):
                    head = [*part.bases, *[k.value for k in part.keywords], *part.decorator_list]
                    unit = _Unit(part, names, member, parent, *(_scan(head, package) if scan else ()))
                    out.append(unit)
                    fields = "dataclass" in _decorators(part) or bool({"NamedTuple", "TypedDict"} & set(_bases(part)))
                    part.body = add(part.body, unit, fields)
                    continue
                unit = _Unit(part, names, member, parent)
                if scan:
                    unit.refs, unit.attrs, unit.imports = _scan([part], package)
                    if isinstance(part, (ast.FunctionDef, ast.AsyncFunctionDef)) and member \
                            and HOOKIMPL in _decorators(part):
                        unit.attrs.add(part.name)  # pluggy finds its hookspec by this name: the spec must stay
                    elif names:
                        unit.attrs -= names  # a recursive method does not keep itself
                out.append(unit)
        return new_body

    tree.body = add(tree.body, None, False)
    return out


# ---- one module at a time, cached ------------------------------------------------------------
# A shake is a walk over per-module summaries (``Summary``), each a function of the module's source
# (and of which of its classes the catalogue strips); a module's shaken source is a function of its
# summary and the units that stay. ``memo`` caches both by content.

Memo = Callable[[str, Callable[[], Any]], Any]  # (key, compute) -> the value compute returns (JSON)


def _no_memo(key: str, compute: Callable[[], Any]) -> Any:
    return compute()


def _key(*parts: Any) -> str:
    return hashlib.sha256(repr(parts).encode("utf-8")).hexdigest()


def _parsed(source: str) -> ast.Module:
    """The module's tree as the shake reads it: annotations dropped, ``PACKED`` folded."""
    tree = ast.parse(source)
    _strip_signatures(tree)
    fold(tree)
    return tree


def _bases(node: ast.ClassDef) -> list[str]:
    return sorted({getattr(b, "attr", getattr(b, "id", "")) for b in node.bases})


def _classes(tree: ast.Module) -> list[list[Any]]:
    """``[name, base names]`` of every class in the tree (nested ones too)."""
    return [[n.name, _bases(n)] for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]


def _subclasses(classes: list[list[Any]], base: str) -> set[str]:
    """The names of ``base`` and its subclasses (by name, through ``classes``: ``[name, bases]``)."""
    out = {base}
    grew = True
    while grew:
        grew = False
        for name, bases in classes:
            if name not in out and out.intersection(bases):
                out.add(name)
                grew = True
    return out


def _strip_catalogue(tree: ast.Module, strip: set[str], attrs: frozenset[str],
                     keywords: dict[str, frozenset[str]]) -> None:
    """Remove what only a catalogue reads: the class attributes named in ``attrs`` of the classes
    named in ``strip`` (the catalogue base's subclasses), and the keyword arguments ``{keyword:
    callee names}``."""
    for c in ast.walk(tree) if strip else ():
        if isinstance(c, ast.ClassDef) and c.name in strip:
            c.body = [n for n in c.body if not (isinstance(n, ast.Assign) and len(n.targets) == 1
                                                and getattr(n.targets[0], "id", None) in attrs)] or [ast.Pass()]
    for call in ast.walk(tree):
        if isinstance(call, ast.Call):
            callee = getattr(call.func, "attr", getattr(call.func, "id", ""))
            call.keywords = [k for k in call.keywords if callee not in keywords.get(k.arg, ())]


@dataclass
class _Source:
    """One module to shake: its source, the package its relative imports resolve in, the classes
    the catalogue strips in it, and its tree and units while this shake holds them."""

    source: str
    package: str
    strip: list[str] = field(default_factory=list)
    tree: ast.Module | None = None  # parsed (annotations dropped, PACKED folded)
    units: list[_Unit] | None = None  # the tree's units, once the catalogue is stripped and imports split

    def prepared(self, catalogue: tuple[str, frozenset[str], dict[str, frozenset[str]]] | None,
                 scan: bool) -> tuple[ast.Module, list[_Unit]]:
        if self.units is None:
            tree = self.tree if self.tree is not None else _parsed(self.source)
            if catalogue is not None:
                _strip_catalogue(tree, set(self.strip), catalogue[1], catalogue[2])
            self.tree, self.units = tree, _units(tree, self.package, scan)
        return self.tree, self.units


Summary = list  # [[names or None, member, parent index or -1, refs, attrs, imports], ...]: a module's units


def _summary(units: list[_Unit]) -> Summary:
    index = {id(u): i for i, u in enumerate(units)}
    return [[None if u.names is None else sorted(u.names), u.member, index[id(u.parent)] if u.parent else -1,
             sorted(u.refs), sorted(u.attrs), sorted(u.imports)] for u in units]


def _render(tree: ast.Module, units: list[_Unit], live: set[int]) -> str:
    """The module's source without its units not in ``live`` (a class left empty gets ``pass``)."""
    dead = {id(u.node) for i, u in enumerate(units) if i not in live}
    for node in [tree, *ast.walk(tree)]:
        if isinstance(node, (ast.Module, ast.ClassDef)):
            node.body = [n for n in node.body if id(n) not in dead]
            if isinstance(node, ast.ClassDef) and not node.body:
                node.body = [ast.Pass()]
    return ast.unparse(tree) if tree.body else ""


def _walk(summaries: dict[str, Summary], roots: set[str], root_modules: list[str]) -> dict[str, set[int]]:
    """The live units of each module (by index) and the live modules: a unit lives when its module
    and its class do and it defines nothing or a name something live references (a member: as an
    attribute or a string). Each unit is checked again when one of these changes (the same least
    fixed point as checking every unit until none changes)."""
    top: dict[str, list[tuple[str, int]]] = {}
    children: dict[tuple[str, int], list[tuple[str, int]]] = {}
    wants: dict[str, list[tuple[str, int]]] = {}
    for m, units in summaries.items():
        top[m] = []
        for i, (unames, _, parent, *_) in enumerate(units):
            (top[m] if parent < 0 else children.setdefault((m, parent), [])).append((m, i))
            for n in unames or ():
                wants.setdefault(n, []).append((m, i))
    live: dict[str, set[int]] = {}
    names, attrs = set(roots), set(roots)
    todo: list[tuple[str, int]] = []

    def reach(module: str) -> None:
        parts = module.split(".")
        for i in range(1, len(parts) + 1):
            prefix = ".".join(parts[:i])
            if prefix not in live:
                live[prefix] = set()
                todo.extend(top.get(prefix, ()))

    for m in root_modules:
        reach(m)
    while todo:
        m, i = todo.pop()
        unames, member, parent, refs, uattrs, imports = summaries[m][i]
        if m not in live or i in live[m] or (parent >= 0 and parent not in live[m]):
            continue
        if unames is not None and not any(n in attrs or (not member and n in names) for n in unames):
            continue
        live[m].add(i)
        todo.extend(children.get((m, i), ()))
        for n in refs:
            if n not in names:
                names.add(n)
                todo.extend(wants.get(n, ()))
        for n in uattrs:
            if n not in attrs:
                attrs.add(n)
                todo.extend(wants.get(n, ()))
        for n in imports:
            if n in summaries:
                reach(n)
    return live


def shake(sources: dict[str, tuple[str, bool]], roots: set[str], root_modules: list[str],
          catalogue: tuple[str, frozenset[str], dict[str, frozenset[str]]] | None = None,
          memo: Memo = _no_memo) -> dict[str, str]:
    """``{module: (source, is_package)}`` -> ``{module: shaken source}`` for the modules the run
    reaches from ``root_modules``, keeping what ``roots`` (names) and their references reach.
    ``catalogue``: ``(base class, its subclasses' attributes, {keyword: callees})`` that only a
    catalogue reads (:func:`_strip_catalogue`), removed first. ``memo``: a cache of the per-module
    work by content (JSON values under keys that name everything they depend on)."""
    cat = None if catalogue is None else (catalogue[0], sorted(catalogue[1]),
                                          sorted((k, sorted(v)) for k, v in catalogue[2].items()))
    mods = {name: _Source(source, name if package else name.rpartition(".")[0])
            for name, (source, package) in sources.items()}
    if catalogue is not None:  # which classes it strips: the base's subclasses, through the program

        def parse(m: _Source) -> list[list[Any]]:
            m.tree = _parsed(m.source)
            return _classes(m.tree)

        classes = {name: memo(_key("classes", m.source), lambda m=m: parse(m)) for name, m in mods.items()}
        subclasses = _subclasses([c for cs in classes.values() for c in cs], catalogue[0]) - {catalogue[0]}
        for name, m in mods.items():
            m.strip = sorted({c[0] for c in classes[name]} & subclasses)
    summaries: dict[str, Summary] = {}
    keys: dict[str, str] = {}
    for name, m in mods.items():
        keys[name] = _key("units", m.package, m.strip, cat, m.source)
        summaries[name] = memo(keys[name], lambda m=m: _summary(m.prepared(catalogue, True)[1]))
    live = _walk(summaries, roots, root_modules)
    out: dict[str, str] = {}
    for name in sorted(set(live) & set(sources)):
        kept = sorted(live[name])
        out[name] = memo(_key("text", keys[name], kept),
                         lambda m=mods[name], kept=kept: _render(*m.prepared(catalogue, False), set(kept)))
    return out


def _names(source: str) -> list[list[str]]:
    """For :func:`kept_names`: ``[names read (as names, attributes, imported), identifier-like
    strings, names bound by a def or class anywhere, module-level functions and assigned names]``."""
    tree = ast.parse(source)
    names: set[str] = set()
    strings: set[str] = set()
    bound: set[str] = set()
    for x in ast.walk(tree):
        if isinstance(x, ast.Name):
            names.add(x.id)
        elif isinstance(x, ast.Attribute):
            names.add(x.attr)
        elif isinstance(x, ast.alias):
            names.update(filter(None, (x.name.split(".")[0], x.name.split(".")[-1], x.asname)))
        elif isinstance(x, ast.Constant) and isinstance(x.value, str) and x.value.isidentifier():
            strings.add(x.value)
        elif isinstance(x, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(x.name)
    top: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            top.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            top |= _assigned(node) or set()
    return [sorted(names), sorted(strings), sorted(bound), sorted(top)]


def kept_names(shaken: dict[str, str], roots: set[str], memo: Memo = _no_memo) -> dict[str, set[str]]:
    """For each module, the module-level names a minifier must not rename: the ``roots`` (what the
    packed file's stub calls), those another module reads (imported, or as ``module.name``, or any
    identifier-like string anywhere, a ``getattr``), its classes (their names show in ``repr`` and in
    the baked plugin list). The rest are the module's own and may be shortened. ``memo``: as
    :func:`shake`'s."""
    used: dict[str, set[str]] = {}
    defined: dict[str, set[str]] = {}
    every: dict[str, set[str]] = {}
    strings: set[str] = set()
    for name, source in shaken.items():
        names, texts, bound, top = memo(_key("names", source), lambda source=source: _names(source))
        used[name] = set(names)
        strings.update(texts)
        defined[name] = set(top)
        every[name] = used[name].union(bound)
    readers: dict[str, int] = {}
    for names in used.values():
        for n in names:
            readers[n] = readers.get(n, 0) + 1
    out: dict[str, set[str]] = {}
    for name in shaken:
        elsewhere = {n for n in defined[name] if readers.get(n, 0) - (n in used[name]) > 0}
        # only module-level functions and plain assignments are renamed: classes, imported names and
        # everything else keep their names (the minifier renames what its keep list leaves out)
        renamable = defined[name] - elsewhere - strings - roots - {FLAG}
        out[name] = every[name] - renamable
    return out
