"""Options and exit codes shared by every command: declared once here.

Exit codes: 0 success; 1 a run or a check that failed; 2 a usage error the user can fix (one
``error:`` line, never a traceback); 130 interrupted.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line (and exit status 2) instead of the usage block."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(EXIT_USAGE, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {v}")
    return v


def positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return v


def add_plugin_path(p: argparse.ArgumentParser | Any) -> None:
    p.add_argument("--plugin-path", action="append", default=[], metavar="FILE_OR_DIR",
                   help="load technique plugins from a .py file or a folder; repeatable")


def add_spec_options(p: argparse.ArgumentParser, plugins: bool = True) -> None:
    """Options that resolve a RunSpec: profile, YAML, --set, plugins, data."""
    g = p.add_argument_group("configuration")
    g.add_argument("--profile", help="hardware profile: cpu, rtx4000, 1xh100, 8xh100 (default: cpu without CUDA)")
    g.add_argument("--config", metavar="FILE", help="YAML file of config keys, 'plugins' and 'profile'")
    g.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key or a plugin param (PLUGIN.PARAM=VALUE); repeatable")
    if plugins:
        g.add_argument("--plugins", default=None, metavar="A,B,C", help="techniques to enable (comma-separated)")
    add_plugin_path(g)
    g.add_argument("--data", metavar="DIR", help="folder of fineweb_train_*.bin / fineweb_val_*.bin shards")
    g.add_argument("--tokenizer", metavar="FILE", help="the SentencePiece model the shards were made with")
    g.add_argument("--vocab-size", type=positive_int, help="vocabulary size (the embedded dataset is built at this size)")
    g.add_argument("--allow-eager", action="store_true", default=None,
                   help="let compile-unsafe plugins run, in eager mode")


def add_jobs(p: argparse.ArgumentParser | Any) -> None:
    p.add_argument("--jobs", type=positive_int, default=None, metavar="N",
                   help="trials side by side (default: what fits this host: its usable cores / --threads on a "
                        "CPU profile, one trial per --nproc GPUs on a GPU one; 1 with --runner)")


def spec_from_args(args: argparse.Namespace, plugins: Any = None, data: dict[str, Any] | None = None):
    """The RunSpec the options describe: resolved here, once, and passed on. ``data``: the mapping of
    ``--config`` when the caller has read it already (it is not read again)."""
    from golfplan.core.config import load_spec, read_spec_file

    if getattr(args, "spec", None):
        return read_spec_file(args.spec)
    overrides: dict[str, Any] = {}
    if getattr(args, "data", None):
        overrides["data_path"] = str(Path(args.data).resolve())
    if getattr(args, "tokenizer", None):
        overrides["tokenizer_path"] = str(Path(args.tokenizer).resolve())
    if getattr(args, "vocab_size", None):
        overrides["vocab_size"] = args.vocab_size
    if getattr(args, "allow_eager", None):
        overrides["allow_eager"] = True
    return load_spec(profile=args.profile, config_file=None if data is not None else args.config, data=data,
                     plugins=plugins if plugins is not None else getattr(args, "plugins", None),
                     sets=args.sets, plugin_paths=args.plugin_path, overrides=overrides,
                     where=args.config if data is not None else None)


def registry_for(paths: list[str]) -> Any:
    from golfplan.registry import Registry

    return Registry(plugin_paths=paths)
