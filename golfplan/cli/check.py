"""``golfplan check``: preflight a combination of plugins before any GPU time is spent."""

from __future__ import annotations

import argparse
import json

from golfplan.cli.options import EXIT_FAILED, EXIT_OK, add_spec_options, positive_int, spec_from_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    from golfplan.check import stages

    p = sub.add_parser("check", help="preflight a combination of plugins before any GPU time is spent",
                       description=stages.__doc__.split("\n\n")[0])
    add_spec_options(p)
    p.add_argument("--spec", metavar="FILE", help="a resolved run spec (RunSpec.to_dict) instead of the options above")
    p.add_argument("--smoke-steps", type=positive_int, default=30, help="CPU training steps of the smoke check")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--legal", action="store_true", help="the challenge's rules instead (golfplan.check.legal): "
                   "bytes, data access, causality, time limits, significance")
    p.add_argument("--run", action="append", default=[], metavar="RUN_DIR",
                   help="with --legal: judge these finished runs (their seeds; repeatable) on measured figures")
    p.add_argument("--reference", metavar="RUN_DIR_OR_BPB", help="with --legal: the record to beat (significance)")
    p.set_defaults(func=cmd_check)


def cmd_check(args: argparse.Namespace) -> int:
    from golfplan.check import CheckReport, CheckResult, format_result, run_checks
    from golfplan.core.errors import PluginError
    from golfplan.registry import Registry

    if args.legal:
        from golfplan.cli.export import cmd_legal

        return cmd_legal(args)
    spec = spec_from_args(args)
    try:
        registry = Registry(plugin_paths=spec.plugin_paths)
    except PluginError as e:  # a broken --plugin-path file fails the static check
        report = CheckReport([CheckResult("static", "fail", 0.0, str(e))])
    else:
        if not args.json:
            print(f"golfplan check: {', '.join(spec.plugins) or 'baseline'} on profile {spec.profile}")
        report = run_checks(spec, registry, smoke_steps=args.smoke_steps,
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
