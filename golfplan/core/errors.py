"""Errors a user can cause. The CLI prints them as one line and exits non-zero."""

from __future__ import annotations

import difflib
from typing import Iterable


class GolfplanError(Exception):
    """A mistake in the user's input (config, plugin choice, data path, ...).

    The CLI prints ``error: <message>`` and exits with status 2, never a traceback.
    """


class ConfigError(GolfplanError):
    """A config key, value or combination that is not valid."""


class DataError(GolfplanError):
    """Missing or malformed shards, or a tokenizer that does not match them."""


class PluginError(GolfplanError):
    """An unknown plugin, a bad plugin parameter, or plugins that cannot be combined."""


def closest(name: str, choices: Iterable[str], hint: str = "") -> str:
    """A ``; did you mean 'x'?`` suffix naming the closest valid choice; else the choices when they
    are few, else ``hint`` (where to find them); '' when there is nothing to offer."""
    choices = sorted(set(choices))
    if not choices:
        return f"; {hint}" if hint else ""
    match = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    if match:
        return f"; did you mean '{match[0]}'?"
    if len(choices) <= 12:
        return f"; valid: {', '.join(choices)}"
    return f"; {hint}" if hint else ""
