"""The ``golfplan`` command.

    golfplan run       train one model (the challenge's train_gpt.py, with plugins)
    golfplan check     preflight a combination of plugins before any GPU time is spent
    golfplan plugins   list the techniques (``--json``; ``plugins show NAME``)
    golfplan hooks     every hook a technique can implement (``hooks NAME`` for one)
    golfplan config    every config key, resolved for a profile
    golfplan data      build the embedded dataset, or fetch the challenge's shards
    golfplan study / ablate / stack / plan / report / worker   the planner

Errors a user can cause end with one ``error:`` line and exit status 2; a run or
check that fails exits with 1.

The command line sits on top of everything: it imports the planner, the check, the registry
and the core; nothing imports it back.
"""

from __future__ import annotations

import argparse
import os
import sys

from golfplan.cli.options import EXIT_OK, EXIT_USAGE, Parser
from golfplan.core.errors import GolfplanError


def build_parser() -> argparse.ArgumentParser:
    from golfplan.cli import catalog, check, data, export, run, study

    parser = Parser(prog="golfplan", description="Plan, check and run Parameter Golf experiments.")
    parser.add_argument("--version", action="version", version=f"golfplan {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run.add_parser(sub)
    check.add_parser(sub)
    catalog.add_parser(sub)
    data.add_parser(sub)
    study.add_parsers(sub)
    export.add_parser(sub)
    return parser


def _version() -> str:
    import golfplan

    return golfplan.__version__


def main(argv: list[str] | None = None) -> int:
    # Before torch is imported: idle OpenMP threads sleep instead of spinning. On a busy machine
    # spinning threads made a cpu-profile step ~6x slower (benchmarks/cpu_load.py).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except GolfplanError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `golfplan plugins | head`: the reader left; exit quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
