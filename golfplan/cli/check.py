"""``golfplan check``: preflight a combination of plugins before any GPU time is spent."""

from __future__ import annotations

import argparse
import json
from typing import Any

from golfplan.cli.options import EXIT_FAILED, EXIT_OK, add_spec_options, positive_float, positive_int, spec_from_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    from golfplan.check import stages

    p = sub.add_parser("check", help="preflight a combination of plugins before any GPU time is spent",
                       description=stages.__doc__.split("\n\n")[0])
    add_spec_options(p)
    p.add_argument("--spec", metavar="FILE", help="a resolved run spec (RunSpec.to_dict) instead of the options above")
    p.add_argument("--smoke-steps", type=positive_int, default=30, help="CPU training steps of the smoke check")
    add_check_timeout(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--legal", action="store_true", help="the challenge's rules instead (golfplan.check.legal): "
                   "bytes, data access, causality, time limits, significance")
    p.add_argument("--run", action="append", default=[], metavar="RUN_DIR",
                   help="with --legal: judge these finished runs (their seeds; repeatable) on measured figures")
    p.add_argument("--reference", metavar="RUN_DIR_OR_BPB", help="with --legal: the record to beat (significance)")
    p.set_defaults(func=cmd_check)


class _ExportCheckTimeout(argparse.Action):
    """``--check-timeout`` of a planner command: every check the planner starts reads it from the
    environment (``GOLFPLAN_CHECK_TIMEOUT``): the one in a trial's run, a ``golfplan check`` child, the
    static stage in the planner's own process."""

    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[override]
        import os

        from golfplan.check.stages import TIMEOUT_ENV

        setattr(namespace, self.dest, values)
        os.environ[TIMEOUT_ENV] = str(values)


def add_check_timeout(p: argparse.ArgumentParser | Any, planner: bool = False) -> None:
    """``--check-timeout``: the time limit of each check stage (``golfplan check``, ``golfplan run``;
    with ``planner``, for every check a planner command starts)."""
    p.add_argument("--check-timeout", type=positive_float, default=None, metavar="S",
                   action=_ExportCheckTimeout if planner else "store",
                   help="seconds each check stage may take before it fails as a timeout (default: "
                        "$GOLFPLAN_CHECK_TIMEOUT, else 300 on a CPU profile, 600 on a GPU one)")


def cmd_check(args: argparse.Namespace) -> int:
    from golfplan.check import CheckReport, CheckResult, format_result, run_checks
    from golfplan.core.errors import PluginError
    from golfplan.registry import Registry

    if args.legal:
        return cmd_legal(args)
    spec = spec_from_args(args)
    try:
        registry = Registry(plugin_paths=spec.plugin_paths)
    except PluginError as e:  # a broken --plugin-path file fails the static check
        report = CheckReport([CheckResult("static", "fail", 0.0, str(e))])
    else:
        if not args.json:
            print(f"golfplan check: {', '.join(spec.plugins) or 'baseline'} on profile {spec.profile}")
        report = run_checks(spec, registry, smoke_steps=args.smoke_steps, timeout_s=args.check_timeout,
                            log=None if args.json else (lambda r: print(format_result(r), flush=True)))
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        total = sum(r.seconds for r in report.results)
        if report.ok:
            mode = "eager (compile-unsafe plugins allowed)" if report.eager else "compiled where the profile compiles"
            print(f"all {len(report.results)} checks passed in {total:.1f}s; the run will be {mode}")
        else:
            print(f"check failed in {total:.1f}s: {report.reason}")
    return EXIT_OK if report.ok else EXIT_FAILED


def cmd_legal(args: argparse.Namespace) -> int:
    """``golfplan check --legal``: the challenge's rules (golfplan.check.legal) on ``--run``
    directories (measured), else on the configuration (estimates)."""
    from golfplan.check.legal import check_legal, format_rule, load_runs, run_composition

    if args.run:
        runs = load_runs(args.run)
        comp = run_composition(runs[0], list(args.plugin_path))
        what = f"{len(runs)} run(s) in {', '.join(args.run)}"
    else:
        from golfplan.core.hooks import compose
        from golfplan.registry import Registry

        spec = spec_from_args(args)
        comp = compose(Registry(plugin_paths=spec.plugin_paths).instantiate(spec.plugins), spec.config, spec.explicit)
        runs = []
        what = f"{', '.join(spec.plugins) or 'baseline'} on profile {spec.profile} (estimates: no run given)"
    if not args.json:
        print(f"golfplan check --legal: {what}")
    report = check_legal(comp.config, comp.techniques, runs, reference=args.reference,
                         log=None if args.json else (lambda r: print(format_rule(r), flush=True)))
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print("legal: every rule holds" if report.ok else f"not legal: {report.reason}")
    return EXIT_OK if report.ok else EXIT_FAILED
