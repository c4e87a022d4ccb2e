"""The code packer: one self-contained ``train_gpt.py`` from golfplan's modules and a run's config.

``pack(config, techniques)`` collects the modules the packed file needs (the import closure of
the trainer and of each technique's module, following every ``golfplan`` import, lazy ones
included, and imports inside a plugin's own package), shakes out what the run cannot reach
(:mod:`golfplan.core.export.shake`: the command line's, the planner's and the plugin catalogue's code,
plugin metadata, hooks nobody calls, what only the library does, modules only they import),
minifies each module with python-minifier (docstrings and annotations removed, local names and a
module's own global names shortened, one line where it can; asserts kept), and writes them as a
module table served by an import hook, followed by the run's configuration baked in as JSON (the
keys that differ from the defaults) and a call to :func:`golfplan.core.export.entry.run_packed`. That
program is ZPAQ-compressed (level 5, one thread:
the codec of the record's weights, 18 % smaller than brotli-11 on the frontier's program), written as
one base-93 number in a string of printable ASCII (every character from space to ``~`` but the
double quote and the backslash: 1.22 characters a byte, where the record's base85 takes 1.25) and
wrapped in a four-line stub (:mod:`golfplan.core.export.wrapper`), as the record wraps its base85 brotli-11 code::

    import zpaq
    n=0
    for c in DIGITS:n=n*93+ord(c)-32-(c>'"')-(c>'\\')
    exec(zpaq.decompress(n.to_bytes(LENGTH,'big')))

(``DIGITS``: the digits in a triple-quoted string; ``LENGTH``: the compressed program's bytes.)

The output is a function of the module sources and the baked configuration only (no paths,
times or versions; the data paths and the seed are not baked: the packed file reads DATA_PATH,
TOKENIZER_PATH and SEED, so every seed of a submission runs one file), so the trainer's code
bytes, the budget check's and ``golfplan export``'s file agree to the byte. This module and the
shaker are build tools: they are never packed (the packed file counts its own length).
``benchmarks/code_size.py`` prints what each packed module costs.

Speed: the packer caches by content, in the process and under ``$GOLFPLAN_CACHE/pack``: each
module's imports, its shake summary (what each of its definitions defines and references,
:mod:`golfplan.core.export.shake`) and its shaken source for each set of definitions kept, each minified
module (by shaken source and kept names), each compressed program and each packed file. A pack
with empty caches parses, shakes and minifies every module. A new set of plugins whose modules were
seen before shakes as a walk over their summaries, runs python-minifier only on the modules whose
kept part or kept names are new, and pays one ZPAQ pass (most of its time); a configuration packed
before (a study's repeat with another seed: the seed is not baked) pays only the import closure.
``python benchmarks/code_size.py --timing`` (the frontier stack on 8xh100, on a 2-core machine
shared with other jobs): 1.86 s cold, 0.28-0.43 s for each of 5 new sets (the stack less one
plugin, the last from the disk cache alone; warm / cold 0.18 on average), 0.007 s for a repeat.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from golfplan.core.errors import GolfplanError
from golfplan.core.export.wrapper import wrap

ROOTS = ("golfplan.core.export.entry", "golfplan.core.train.trainer")  # the packed file's entry point and the trainer
ENTRY = "run_packed"  # the name the stub calls: with the plugin classes, the shaker's roots
BUILD_ONLY = frozenset({"golfplan.core.export.packer", "golfplan.core.export.shake", "golfplan.core.export.fold",
                        "golfplan.core.export.wrapper"})  # build tools, never packed: the file counts its own length
BUILD_ONLY_IMPORTS = frozenset({"python_minifier"})  # the packer's tool: not a requirement of the packed file
# Local names shortened (parameters keep their names: hooks are called by keyword); a module's own
# module-level names too (pack: the names other modules import or read are kept). Literal hoisting
# made the file bigger.
MINIFY_OPTIONS = dict(remove_literal_statements=True, rename_locals=True, rename_globals=False, hoist_literals=False,
                      remove_asserts=False, remove_debug=False, prefer_single_line=True)
CODE_LEVEL = 5  # ZPAQ level of the program (golfplan.core.export.codec's strongest)
# What only the plugin catalogue, the planner and the export's README read (golfplan plugins, the
# params' search ranges are still checked): a technique's descriptions and sources, and its params'
# help texts. The packed file leaves them out (golfplan.core.export.shake).
CATALOGUE = ("Technique", frozenset({"summary", "source", "source_result", "seed_refs", "seed_result"}),
             {"help": frozenset({"Float", "Int", "Choice", "Bool"})})
# Not baked (the packed file reads them from DATA_PATH, TOKENIZER_PATH and SEED, with the baseline's
# defaults): machine paths, and the seed, so every seed of a submission runs the same file.
DROPPED_KEYS = ("data_path", "tokenizer_path", "seed")

STUB = """import sys,linecache
from importlib.util import spec_from_loader
S={modules}
P={packages}
F=__file__
class _L:
 @classmethod
 def find_spec(c,n,p=None,t=None):return spec_from_loader(n,c,is_package=n in P)if n in S else None
 @staticmethod
 def create_module(s):return None
 @staticmethod
 def exec_module(m):
  n=m.__name__;s=S[n];f=F+'/'+n.replace('.','/')+('/__init__.py'if n in P else'.py')
  linecache.cache[f]=len(s),None,s.splitlines(True),f;m.__file__=f
  exec(compile(s,f,'exec'),m.__dict__)
sys.meta_path.insert(0,_L)
from golfplan.core.export.entry import run_packed
raise SystemExit(run_packed({baked},F))
"""

@dataclass
class Packed:
    """A packed ``train_gpt.py`` and what went into it."""

    code: bytes  # the file
    modules: dict[str, str]  # packed module name -> the source file it came from ("" for a synthesized package)
    third_party: list[str]  # top-level names of the non-stdlib packages the packed modules import
    source_bytes: int  # the modules' source before minification
    minified_bytes: int  # the program before compression (module table + stub + config)
    seconds: float = 0.0
    baked: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Module:
    name: str
    path: str
    source: str
    package: bool


_minified: dict[str, str] = {}
_scanned: dict[str, tuple[set[str], set[str]]] = {}
_packed: dict[str, Packed] = {}


# ---- which modules -------------------------------------------------------------------------

def _load(name: str) -> _Module | None:
    """A module's source, or None when ``name`` is not a module with Python source."""
    mod = sys.modules.get(name)
    spec = getattr(mod, "__spec__", None) if mod is not None else None
    if spec is None:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError, AttributeError):
            return None
    origin = getattr(spec, "origin", None) or getattr(mod, "__file__", None)
    if not origin or not str(origin).endswith(".py") or not Path(origin).is_file():
        return None
    package = spec.submodule_search_locations is not None
    return _Module(name, str(origin), Path(origin).read_text(encoding="utf-8"), package)


def _imports(m: _Module) -> tuple[set[str], set[str]]:
    """``(module names, top-level names)`` a module imports: the first with ``from a import b`` as
    both ``a`` and ``a.b`` (b may be a submodule), relative imports resolved. Cached by content."""
    key = hashlib.sha256(repr((m.name, m.package, m.source)).encode()).hexdigest()
    if key not in _scanned:
        path = _cache_dir() / f"{key}.imports.json"
        try:
            names, tops = json.loads(path.read_text())
        except (OSError, ValueError):
            names, tops = (sorted(x) for x in _scan(m))
            _write(path, json.dumps([names, tops]))
        _scanned[key] = (set(names), set(tops))
    return _scanned[key]


def _scan(m: _Module) -> tuple[set[str], set[str]]:
    names: set[str] = set()
    tops: set[str] = set()
    package = m.name if m.package else m.name.rpartition(".")[0]
    for node in ast.walk(ast.parse(m.source, m.path)):
        if isinstance(node, ast.Import):
            for a in node.names:
                names.add(a.name)
                tops.add(a.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            elif base:
                tops.add(base.split(".")[0])
            names.add(base)
            names |= {f"{base}.{a.name}" for a in node.names if a.name != "*"}
    names.discard("")
    tops.discard("__future__")
    return names, tops


def technique_modules(techniques: Sequence[Any]) -> list[str]:
    """The module of each technique's class (in order, without repeats)."""
    out: list[str] = []
    for t in techniques:
        name = type(t).__module__
        if name == "__main__":
            raise GolfplanError(f"technique '{t.name}' is defined in __main__: put it in a module file (a "
                                f"--plugin-path file) so its code can be packed and counted")
        if name not in out:
            out.append(name)
    return out


def closure(roots: Sequence[str]) -> tuple[dict[str, _Module], set[str]]:
    """Every module the packed file needs, from ``roots``, and the third-party top-level names they
    import. Imports are followed inside ``golfplan`` and inside each root's own top-level package."""
    owned = {"golfplan"} | {r.split(".")[0] for r in roots}
    found: dict[str, _Module] = {}
    third: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in found or name in BUILD_ONLY:
            continue
        m = _load(name)
        if m is None:
            if name in roots:
                raise GolfplanError(f"cannot pack module '{name}': no Python source file")
            continue
        found[name] = m
        names, tops = _imports(m)
        todo += [n for n in names if n.split(".")[0] in owned]
        third |= {t for t in tops if t not in owned and t not in sys.stdlib_module_names}
    for name in list(found):  # every parent package, with its __init__ where it has one
        parts = name.split(".")
        for i in range(1, len(parts)):
            parent = ".".join(parts[:i])
            if parent not in found:
                found[parent] = _load(parent) or _Module(parent, "", "", True)
            found[parent].package = True
    return found, third - BUILD_ONLY_IMPORTS


# ---- minify, bake, compress ------------------------------------------------------------------

def _cache_dir() -> Path:
    from golfplan.core.data.corpus import cache_root

    return cache_root() / "pack"


@functools.lru_cache(maxsize=None)
def _version(distribution: str) -> str:
    """An installed distribution's version ("" where it is not installed): part of the cache keys."""
    import importlib.metadata as md

    try:
        return md.version(distribution)
    except md.PackageNotFoundError:
        return ""


def minify(source: str, where: str = "", keep: Sequence[str] | None = None) -> str:
    """``source`` minified with :data:`MINIFY_OPTIONS` (cached by content); with ``keep``, its
    module-level names but those are shortened too (the names other modules or strings use:
    :func:`golfplan.core.export.shake.kept_names`)."""
    if not source.strip():
        return ""
    try:
        import python_minifier
    except ImportError:
        raise GolfplanError("packing the code needs python-minifier: pip install python-minifier") from None
    options = dict(MINIFY_OPTIONS)
    if keep is not None:
        options.update(rename_globals=True, preserve_globals=sorted(keep))
    key = hashlib.sha256(repr((_version("python-minifier"), sorted(options.items()), source)).encode()).hexdigest()
    if key in _minified:
        return _minified[key]
    path = _cache_dir() / f"{key}.py"
    try:
        out = path.read_text(encoding="utf-8")
    except OSError:
        out = python_minifier.minify(source, filename=where or None, **options)
        _write(path, out)
    _minified[key] = out
    return out


def _write(path: Path, data: str | bytes) -> None:
    """Write a cache file atomically (a read-only or missing cache only costs time)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    except OSError:
        pass


def bake(config: Any, techniques: Sequence[Any]) -> dict[str, Any]:
    """What the packed file trains: the resolved (configured) config's keys that differ from the
    defaults (:data:`DROPPED_KEYS` never baked), and each technique as ``[module, class, params]``
    in hook order, its params those that differ from their defaults."""
    defaults = type(config)()
    values = {k: v for k, v in config.to_dict().items() if k not in DROPPED_KEYS and v != getattr(defaults, k)}

    def changed(t: Any) -> dict[str, Any]:
        specs = getattr(type(t), "params", {})
        return {k: v for k, v in t.values.items() if k not in specs or v != specs[k].default}

    return {"config": values, "plugins": [[type(t).__module__, type(t).__name__, changed(t)] for t in techniques]}


@functools.lru_cache(maxsize=1)
def _tools() -> str:
    """A digest of the packer's and the shaker's own code, python-minifier's version and Python's
    (its ``ast`` parses and unparses): what the packer caches is stale once one of them changes."""
    from golfplan.core.export import shake

    sources = [Path(__file__).read_bytes(), Path(shake.__file__).read_bytes(), _version("python-minifier").encode(),
               sys.version.encode()]
    return hashlib.sha256(b"\0".join(sources)).hexdigest()


_memo: dict[str, Any] = {}


def _cached(key: str, compute: Callable[[], Any]) -> Any:
    """The shaker's memo (:data:`golfplan.core.export.shake.Memo`): JSON values by key, in the process and
    under the cache folder."""
    key = hashlib.sha256(f"{_tools()}:{key}".encode()).hexdigest()
    if key not in _memo:
        path = _cache_dir() / f"{key}.shake.json"
        try:
            _memo[key] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            _memo[key] = compute()
            _write(path, json.dumps(_memo[key], separators=(",", ":")))
    return _memo[key]


def shaken_program(modules: dict[str, _Module], roots: Sequence[str],
                   techniques: Sequence[Any]) -> tuple[dict[str, str], dict[str, list[str]]]:
    """``({module: source}, {module: names the minifier keeps})`` of what the run reaches
    (:func:`golfplan.core.shake.shake`, :func:`golfplan.core.export.shake.kept_names`). Each module's part
    of the work is cached by content (:func:`_cached`): a new set of plugins shakes as a walk over
    the summaries of the modules seen before, parsing only the new ones and the modules whose kept
    part is new."""
    from golfplan.core.export.shake import kept_names, shake

    names = {ENTRY} | {type(t).__name__ for t in techniques}
    sources = shake({n: (m.source, m.package) for n, m in modules.items()}, names, list(roots), CATALOGUE, _cached)
    keep = kept_names({n: s for n, s in sources.items() if s}, {ENTRY}, _cached)
    return sources, {n: sorted(k) for n, k in keep.items()}


def compress_program(program: bytes) -> bytes:
    """``program`` ZPAQ-compressed as the packed file holds it (level :data:`CODE_LEVEL`, one thread)."""
    try:
        import zpaq
    except ImportError:
        raise GolfplanError("packing the code needs zpaq: pip install zpaq") from None
    return zpaq.compress(program, level=CODE_LEVEL, threads=1, hints=False)


_compressed: dict[str, bytes] = {}


def _compress_cached(program: bytes) -> bytes:
    """:func:`compress_program`, cached by the program's content (in the process and on disk): a
    program packed before (after an edit of a docstring, of code no run reaches, or of the packer)
    is not compressed again."""
    key = hashlib.sha256(f"{_version('zpaq')}:{CODE_LEVEL}:".encode() + program).hexdigest()
    if key not in _compressed:
        path = _cache_dir() / f"{key}.zpaq"
        try:
            _compressed[key] = path.read_bytes()
        except OSError:
            _compressed[key] = compress_program(program)
            _write(path, _compressed[key])
    return _compressed[key]


def clear_cache() -> None:
    """Forget what this process cached (the files under the cache folder stay: a pack with an empty
    cache also points ``GOLFPLAN_CACHE`` at an empty folder)."""
    for cache in (_minified, _scanned, _packed, _memo, _compressed):
        cache.clear()


def pack(config: Any, techniques: Sequence[Any] = ()) -> Packed:
    """The packed ``train_gpt.py`` for ``config`` (as the trainer runs it: after the plugins'
    ``configure``) and ``techniques``; cached by content in the process and on disk (a seed's
    repeat of a configuration packs the same file: the seed is not baked)."""
    t0 = time.perf_counter()
    baked = bake(config, techniques)
    roots = list(ROOTS) + technique_modules(techniques)
    modules, _ = closure(roots)
    baked_json = json.dumps(baked, sort_keys=True, separators=(",", ":"))
    key = hashlib.sha256(repr((_tools(), baked_json, sorted((n, m.source) for n, m in modules.items())))
                         .encode()).hexdigest()
    if key in _packed:
        return _packed[key]
    path = _cache_dir() / f"{key}.packed.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        out = Packed(code=data.pop("code").encode("ascii"), **data, seconds=round(time.perf_counter() - t0, 3))
    except (OSError, ValueError, TypeError, KeyError):
        out = _pack(modules, roots, techniques, baked, baked_json)
        _write(path, json.dumps({"code": out.code.decode("ascii"), "modules": out.modules,
                                 "third_party": out.third_party, "source_bytes": out.source_bytes,
                                 "minified_bytes": out.minified_bytes, "baked": out.baked}))
        out.seconds = round(time.perf_counter() - t0, 3)
    _packed[key] = out
    return out


def _pack(modules: dict[str, _Module], roots: list[str], techniques: Sequence[Any], baked: dict[str, Any],
          baked_json: str) -> Packed:
    shaken, keep = shaken_program(modules, roots, techniques)
    table = {name: minify(source, modules[name].path, keep.get(name)) for name, source in sorted(shaken.items())}
    packages = sorted(n for n in shaken if modules[n].package)  # a set literal in a fixed order
    third: set[str] = set()
    for name, source in shaken.items():
        third |= _imports(_Module(name, modules[name].path, source, modules[name].package))[1]
    third = {t for t in third if t != "golfplan" and t not in sys.stdlib_module_names} - BUILD_ONLY_IMPORTS
    program = STUB.format(modules=repr(table), packages="{" + ",".join(map(repr, packages)) + "}",
                          baked=repr(baked_json)).encode("utf-8")
    return Packed(code=wrap(_compress_cached(program)), modules={n: modules[n].path for n in sorted(shaken)},
                  third_party=sorted(third), source_bytes=sum(len(modules[n].source.encode("utf-8")) for n in shaken),
                  minified_bytes=len(program), baked=baked)
