"""Reading YAML: config files and ``--set key=value`` values.

PyYAML follows YAML 1.1, whose floats need a dot (``1.0e-4``), so a learning rate written
``1e-4`` would be a string and refused as "expects float"; the loader here reads it as a number,
as YAML 1.2 does. Errors are one-line ConfigErrors naming the file and line.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from golfplan.core.errors import ConfigError


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, reading ``1e-4`` and ``3e6`` as numbers as YAML 1.2 does."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"""),
    list("-+0123456789."),
)


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)


def parse_set(item: str) -> tuple[str, Any]:
    """``key=value`` with the value read as YAML (``3``, ``0.5``, ``true``, ``foo``)."""
    if "=" not in item:
        raise ConfigError(f"--set expects key=value, got '{item}'")
    key, raw = item.split("=", 1)
    key = key.strip()
    try:
        value = load_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def read_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        data = load_yaml(p.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{p}:{where} is not valid YAML ({getattr(e, 'problem', None) or e})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of config keys at the top level")
    return data
