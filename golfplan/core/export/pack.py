"""A run's code, as the challenge counts it: the one ``train_gpt.py`` that ``golfplan export`` writes.

The challenge counts the bytes of ``train_gpt.py``, not of the files it was made from. The
packer (:mod:`golfplan.core.export.packer`) bundles the core modules a run needs, the modules of the
plugins it used and its resolved configuration into one file that runs without golfplan
installed: what the run cannot reach shaken out, every module minified with python-minifier, the
lot ZPAQ-compressed and wrapped in a four-line self-extracting ``exec`` stub, as the record wraps
its brotli-11 code (its F:2629-2642).
:func:`code_size` is that file's length: what the trainer reports as the run's code bytes and
the budget check adds to the model.

The packed file's entry point is :func:`golfplan.core.export.entry.run_packed`; it reads the challenge's
environment variables with :func:`env_overrides` and :func:`default_data` below. Inside a packed
file :func:`code_size` is the file's own length, and :data:`PACKED` is true.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

PACKED_FILE: str | None = None  # the packed train_gpt.py this process runs from, if any
# True inside a packed train_gpt.py. The packer folds every read of it to True when it shakes the
# program (golfplan.core.export.shake), so code under ``if not PACKED`` (what only the library does:
# building the embedded dataset, running the plugins' ``configure``) is not packed at all.
PACKED = False

# The challenge's data layout (its README and baseline train_gpt.py): used when DATA_PATH /
# TOKENIZER_PATH are not set and these exist under the working directory.
DEFAULT_DATA = "./data/datasets/fineweb10B_sp{vocab}"
DEFAULT_TOKENIZER = "./data/tokenizers/fineweb_{vocab}_bpe.model"


def code_size(config: Any, techniques: Sequence[Any]) -> int:
    """Bytes of the run's code as submitted: the packed ``train_gpt.py`` for this configuration (as
    the trainer runs it, after the plugins' ``configure``) and these techniques. Inside a packed
    file: that file's own length."""
    if PACKED_FILE is not None:
        return os.path.getsize(PACKED_FILE)
    from golfplan.core.export.packer import pack

    return len(pack(config, techniques).code)


def env_overrides(environ: Any = None) -> dict[str, Any]:
    """Config keys set by environment variables, as the challenge's baseline reads them: every
    config key under its upper-case name (``DATA_PATH``, ``TOKENIZER_PATH``, ``SEED``,
    ``ITERATIONS``, ``MAX_WALLCLOCK_SECONDS``, ``VAL_LOSS_EVERY``, ...)."""
    from golfplan.core.config import FIELD_TYPES, coerce_field
    from golfplan.core.errors import ConfigError

    environ = os.environ if environ is None else environ
    out: dict[str, Any] = {}
    for key, typ in FIELD_TYPES.items():
        raw = environ.get(key.upper())
        if raw is None:
            continue
        try:
            value: Any = int(raw) if typ is int else float(raw) if typ is float else raw
        except ValueError:
            raise ConfigError(f"environment variable {key.upper()}={raw!r}: expected {typ.__name__}") from None
        out[key] = coerce_field(key, value)
    return out


def default_data(config: Any) -> Any:
    """The challenge's data layout under the working directory where no path is set (and it
    exists); otherwise the paths stay empty and the trainer uses golfplan's embedded dataset."""
    changes = {}
    if not config.data_path:
        path = DEFAULT_DATA.format(vocab=config.vocab_size)
        if Path(path).is_dir():
            changes["data_path"] = path
    if not config.tokenizer_path and (config.data_path or changes):
        path = DEFAULT_TOKENIZER.format(vocab=config.vocab_size)
        if Path(path).is_file():
            changes["tokenizer_path"] = path
    return config.replace(**changes) if changes else config
