"""Loading Python code from a file the user names (``--plugin-path``, ``--runner file.py:fn``)."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from golfplan.core.errors import GolfplanError


def import_file(path: str | Path, package: str, what: str = "file") -> ModuleType:
    """Import ``path`` as a module under the synthetic package name ``package`` (once per file).

    Any error while loading it (a syntax error, a failing import) becomes one GolfplanError line
    naming the file.
    """
    p = Path(path)
    if not p.is_file():
        raise GolfplanError(f"{what} {p}: no such file")
    digest = hashlib.sha1(str(p.resolve()).encode()).hexdigest()[:10]
    name = f"{package}.{p.stem}_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, p)
    if spec is None or spec.loader is None:
        raise GolfplanError(f"cannot import {what} {p}")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    try:
        spec.loader.exec_module(mod)
    except Exception as e:  # noqa: BLE001 - user code: any error, as one line
        del sys.modules[name]
        raise GolfplanError(f"could not load {what} {p}: {type(e).__name__}: {e}") from None
    return mod
