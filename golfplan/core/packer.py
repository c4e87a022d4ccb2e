"""The code packer: one self-contained ``train_gpt.py`` from golfplan's modules and a run's config.

``pack(config, techniques)`` collects the modules the packed file needs (the import closure of
the trainer and of each technique's module, following every ``golfplan`` import, lazy ones
included, and imports inside a plugin's own package), minifies each with python-minifier
(the record's options: no renaming, no literal hoisting, docstrings removed, one line where it
can; asserts are kept), and writes them as a module table served by an import hook, followed by
the run's configuration baked in as JSON and a call to :func:`golfplan.core.entry.run_packed`.
That program is brotli-11 compressed, base85 encoded and wrapped in the record's two-line stub::

    import brotli as B,base64 as b
    exec(B.decompress(b.b85decode("...")))

The output is a function of the module sources and the baked configuration only (no paths,
times or versions; the data paths and the seed are not baked: the packed file reads DATA_PATH,
TOKENIZER_PATH and SEED, so every seed of a submission runs one file), so the trainer's code
bytes, the budget check's and ``golfplan export``'s file agree to the byte. This module is a
build tool: it is never packed itself (the packed file counts its own length).

Speed: minified modules and each module's imports are cached by content (in the process and
under ``$GOLFPLAN_CACHE/pack``), so only the first pack of new sources pays python-minifier
(measured on the 2-core dev machine: 3.2 s for core + two plugins cold); after that a pack is the
import closure and one brotli-11 pass (0.26 s there, up to 1 s with the machine loaded).
"""

from __future__ import annotations

import ast
import base64
import functools
import hashlib
import importlib.util
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from golfplan.core.errors import GolfplanError

ROOTS = ("golfplan.core.entry", "golfplan.core.trainer")  # the packed file's entry point and the trainer
BUILD_ONLY = frozenset({"golfplan.core.packer"})  # never packed: the packed file counts its own length
BUILD_ONLY_IMPORTS = frozenset({"python_minifier"})  # the packer's tool: not a requirement of the packed file
MINIFY_OPTIONS = dict(remove_literal_statements=True, rename_locals=False, rename_globals=False, hoist_literals=False,
                      remove_asserts=False, remove_debug=False, prefer_single_line=True)
BROTLI_QUALITY = 11
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
from golfplan.core.entry import run_packed
raise SystemExit(run_packed({baked},F))
"""
WRAPPER = b'import brotli as B,base64 as b\nexec(B.decompress(b.b85decode("%s")))\n'


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
    from golfplan.core.corpus import cache_root

    return cache_root() / "pack"


@functools.lru_cache(maxsize=1)
def _minifier_version() -> str:
    import importlib.metadata as md

    try:
        return md.version("python-minifier")
    except md.PackageNotFoundError:
        return ""


def minify(source: str, where: str = "") -> str:
    """``source`` minified with the record's python-minifier options (cached by content)."""
    if not source.strip():
        return ""
    try:
        import python_minifier
    except ImportError:
        raise GolfplanError("packing the code needs python-minifier: pip install python-minifier") from None
    key = hashlib.sha256(repr((_minifier_version(), sorted(MINIFY_OPTIONS.items()), source)).encode()).hexdigest()
    if key in _minified:
        return _minified[key]
    path = _cache_dir() / f"{key}.py"
    try:
        out = path.read_text(encoding="utf-8")
    except OSError:
        out = python_minifier.minify(source, filename=where or None, **MINIFY_OPTIONS)
        _write(path, out)
    _minified[key] = out
    return out


def _write(path: Path, text: str) -> None:
    """Write a cache file atomically (a read-only or missing cache only costs time)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass


def bake(config: Any, techniques: Sequence[Any]) -> dict[str, Any]:
    """What the packed file trains: the resolved (configured) config, :data:`DROPPED_KEYS` at their
    defaults, and each technique as ``[module, class, params]`` in hook order."""
    values = config.to_dict()
    defaults = type(config)()
    for key in DROPPED_KEYS:
        values[key] = getattr(defaults, key)
    return {"config": values,
            "plugins": [[type(t).__module__, type(t).__name__, dict(t.values)] for t in techniques]}


def pack(config: Any, techniques: Sequence[Any] = ()) -> Packed:
    """The packed ``train_gpt.py`` for ``config`` (as the trainer runs it: after the plugins'
    ``configure``) and ``techniques``."""
    t0 = time.perf_counter()
    baked = bake(config, techniques)
    modules, third = closure(list(ROOTS) + technique_modules(techniques))
    baked_json = json.dumps(baked, sort_keys=True, separators=(",", ":"))
    key = hashlib.sha256(repr((baked_json, sorted((n, m.source) for n, m in modules.items()))).encode()).hexdigest()
    if key in _packed:
        return _packed[key]
    table = {name: minify(modules[name].source, modules[name].path) for name in sorted(modules)}
    packages = sorted(n for n, m in modules.items() if m.package)  # a set literal in a fixed order
    program = STUB.format(modules=repr(table), packages="{" + ",".join(map(repr, packages)) + "}",
                          baked=repr(baked_json)).encode("utf-8")
    try:
        import brotli
    except ImportError:
        raise GolfplanError("packing the code needs brotli: pip install brotli") from None
    code = WRAPPER % base64.b85encode(brotli.compress(program, quality=BROTLI_QUALITY))
    out = Packed(code=code, modules={n: m.path for n, m in sorted(modules.items())}, third_party=sorted(third),
                 source_bytes=sum(len(m.source.encode("utf-8")) for m in modules.values()),
                 minified_bytes=len(program), seconds=round(time.perf_counter() - t0, 3), baked=baked)
    _packed[key] = out
    return out


def unpack(code: bytes) -> str:
    """The program inside a packed file (for tests and for reading what was submitted)."""
    import brotli

    start = code.index(b'b85decode("') + len(b'b85decode("')
    return brotli.decompress(base64.b85decode(code[start: code.index(b'")', start)])).decode("utf-8")


# ---- requirements --------------------------------------------------------------------------

def requirements(third_party: Sequence[str]) -> list[str]:
    """``requirements.txt`` lines for the packed file: brotli (it decompresses itself) and every
    distribution its modules import, pinned to the versions installed here (torch without its
    local build tag: install the build for your machine). Imports of packages not installed here
    (optional ones) become comments."""
    import importlib.metadata as md

    dists = md.packages_distributions()
    lines: dict[str, str] = {}
    missing: list[str] = []
    for top in sorted(set(third_party) | {"brotli"}):
        names = dists.get(top)
        if not names:
            missing.append(top)
            continue
        dist = names[0]
        version = md.version(dist)
        local = version.partition("+")
        pin = f"{dist}=={local[0]}"
        if local[2]:
            pin += f"  # built and run with {version}; install the build for your machine"
        lines[dist.lower()] = pin
    out = [lines[k] for k in sorted(lines)]
    out += [f"# optional, not installed where this was packed: {m}" for m in missing]
    return out
