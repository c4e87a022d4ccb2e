"""``golfplan plan`` and ``golfplan stack``.

``plan`` runs the planner's strategy (:mod:`golfplan.planner.strategy`: stack one candidate at a
time, re-test the close calls, tune the stack's params) in one study ``NAME.plan``, and ends by
saying what it chose and why, and what to try next. ``plan --strategy waves`` and ``stack`` run the
seed's waves automated: ``NAME.ablate``, ``NAME.stack``, ``NAME.tune`` under one ``--budget-hours``.
Rerunning a command resumes it.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from golfplan.cli.options import positive_float, positive_int, registry_for
from golfplan.cli.study_common import definition_from_args, make_planner, print_finish, print_header, say_for
from golfplan.planner.definition import StudyError


def cmd_stack(args: argparse.Namespace) -> int:
    from golfplan.planner.storage import open_storage

    storage = open_storage(args.storage)
    t0 = time.time()
    source, planner = stack_planners(args, storage, args.source, args.study_name, args.budget_hours)
    return stack_and_tune(source, planner, args, t0, args.budget_hours, args.report_dir)


def stack_planners(args: argparse.Namespace, storage: Any, source_name: str, name: str | None,
                   budget_hours: float | None) -> tuple[Any, Any]:
    """The ablation's planner (read only) and the stack study's."""
    from golfplan.planner.resume import base_spec
    from golfplan.planner.storage import load_definition
    from golfplan.planner.study import Planner

    src_def = load_definition(storage, source_name)
    if src_def.mode != "ablate":
        raise StudyError(f"--from {source_name}: expected an ablate study, got mode '{src_def.mode}'")
    registry = registry_for(src_def.plugin_path)
    source = Planner(src_def, base_spec(src_def), registry, storage=storage, out_dir=args.out, say=say_for(args),
                     worker=True)
    source.open(enqueue=False)
    stack_def = replace(src_def, name=name or f"{source_name}.stack", mode="experiments", plugins={},
                        experiments=[], baseline=True,
                        repeats=args.repeats if args.repeats is not None else src_def.repeats,
                        budget_hours=budget_hours, jobs=args.jobs)
    planner = make_planner(stack_def, args, registry, storage=storage)
    planner.open(enqueue=False)
    planner.set_baseline(dict(src_def.fixed))
    return source, planner


def stack_and_tune(source: Any, planner: Any, args: argparse.Namespace, t0: float, budget_hours: float | None,
                   report_dir: str | None) -> int:
    from golfplan.planner.definition import describe_plugins
    from golfplan.planner.waves import stack, tune_definition

    say = say_for(args)
    say(f"stack {planner.d.name}: from the winners of '{source.d.name}', {planner.d.repeats} seed(s) per candidate")
    result = stack(source, planner, include_slight=args.include_slight, say=say)
    print_finish(planner, args, time.time() - t0, report_dir)
    print(f"\nfinal stack: {describe_plugins(result.plugins, planner.registry)}")
    if result.stopped == "budget" or args.tune_trials <= 0:
        return 0
    left = None
    if budget_hours is not None:  # what stacking left of the budget it was given
        left = max(budget_hours - planner.spent_s() / 3600.0, 0.0)
    tune_def = tune_definition(planner.d, result.plugins, dict(source.d.fixed), planner.registry,
                               f"{planner.d.name.removesuffix('.stack')}.tune", args.tune_trials, left)
    if tune_def is None:
        print("the stack's plugins have no params to tune")
        return 0
    tuner = make_planner(tune_def, args, planner.registry, storage=planner.storage)
    tuner.open()
    if not getattr(args, "quiet", False):
        print_header(tuner)
    tuner.run()
    return print_finish(tuner, args, time.time() - t0)


def cmd_plan(args: argparse.Namespace) -> int:
    if args.strategy == "waves":
        if args.ladder:
            raise StudyError("--ladder climbs from the stack-tune plan; drop --strategy waves")
        return cmd_plan_waves(args)
    from golfplan.planner.strategy import explain

    t0 = time.time()
    d, registry = definition_from_args(args, "ablate")
    d.name = f"{args.study_name or d.name.removeprefix('ablate-')}.plan"
    if d.ladder:
        return climb_ladder(d, registry, args, t0, lambda rd, runs: _plan_rung(rd, registry, args, runs))
    _, res = _plan_rung(d, registry, args)
    print_finish(res.planner, args, time.time() - t0)
    print()
    print("\n".join(explain(res, res.planner.registry, dict(d.fixed))))
    print(f"{res.runs} runs; stopped: {res.stopped}")
    return 0


def _plan_rung(d: Any, registry: Any, args: argparse.Namespace, max_runs: int | None = None) -> tuple[Any, Any]:
    """The plan (golfplan.planner.strategy) of ``d``: (its Planner, its PlanResult)."""
    from golfplan.planner.runner import load_runner
    from golfplan.planner.strategy import plan

    say = say_for(args)
    res = plan(d, runner=load_runner(args.runner) if args.runner else None, storage=args.storage or d.storage,
               max_runs=max_runs or args.runs, registry=registry, out_dir=args.out, say=say, planner_say=say,
               tune_trials=args.tune_trials)
    return res.planner, res


def cmd_plan_waves(args: argparse.Namespace) -> int:
    """The seed's waves automated: ablate (3 seeds each), greedy stacking of the winners, TPE tuning."""
    from golfplan.planner.records import TrialRecord

    t0 = time.time()
    d, registry = definition_from_args(args, "ablate")
    if args.repeats is None:
        d.repeats = 3
    base_name = args.study_name or d.name.removeprefix("ablate-")
    d.name = f"{base_name}.ablate"
    ablation = make_planner(d, args, registry)
    ablation.open()
    if not args.quiet:
        print(f"plan {base_name}: ablate -> stack -> tune" +
              (f" within {args.budget_hours:g} h" if args.budget_hours is not None else ""))
        print_header(ablation)
    res = ablation.run()
    print_finish(ablation, args, time.time() - t0)
    if res.stopped.startswith("budget"):
        done = {TrialRecord.of(t).key for t in ablation.finished()}
        total = len(ablation.experiment_configs())
        print(f"the budget ran out before the ablation finished ({len(done)} of {total} configurations done): "
              f"no stacking")
        return 0
    left = None
    if args.budget_hours is not None:
        left = max(args.budget_hours - ablation.spent_s() / 3600.0, 0.0)
    source, planner = stack_planners(args, ablation.storage, d.name, f"{base_name}.stack", left)
    return stack_and_tune(source, planner, args, t0, left, None)


# ---- the promotion ladder -----------------------------------------------------------------------


def add_ladder(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("ladder (golfplan.planner.ladder)")
    g.add_argument("--ladder", metavar="RUNG,RUNG,...",
                   help="plan on the first rung, promote its survivors up the others (each PROFILE[+KEY=VALUE...], "
                        "e.g. cpu,cpu+iterations=200,1xh100,8xh100); each rung is a study NAME@RUNG")
    g.add_argument("--promote", type=positive_int, default=None, metavar="K",
                   help="configurations promoted from a rung to the next (default 6; close calls come on top)")
    g.add_argument("--rung-budget", type=positive_float, default=None, metavar="H",
                   help="time budget of each rung above the first, in hours (a rung's +hours=H overrides it)")


def climb_ladder(d: Any, registry: Any, args: argparse.Namespace, t0: float, bottom: Any) -> int:
    """Climb ``d.ladder`` (bottom rung: ``bottom(definition, run cap) -> (planner, result)``); print each
    rung's agreement with the one below and the top rung's table and choice."""
    from golfplan.planner.ladder import agreement_text, climb, parse_ladder
    from golfplan.planner.report import write_report
    from golfplan.planner.runner import load_runner

    if args.profile:
        raise StudyError("--ladder names each rung's profile (cpu,1xh100,...): drop --profile")
    climbed = climb(d, parse_ladder(d.ladder), registry, bottom, storage=args.storage or d.storage,
                    runner=load_runner(args.runner) if args.runner else None, out_dir=args.out, say=say_for(args),
                    rung_budget=args.rung_budget)
    for r in climbed.rungs[:-1]:
        if not args.no_report:
            write_report(r.planner, str(Path("reports") / r.planner.d.name))
    top = climbed.rungs[-1]
    print_finish(top.planner, args, time.time() - t0, args.report_dir)
    print(f"\nladder {d.name}:")
    for r in climbed.rungs:
        best = r.chosen
        print(f"  {r.rung.name}: study {r.planner.d.name}, {len(r.rows)} configurations"
              + (f", chose {best.label} ({best.summary.fmt()})" if best is not None and best.summary else ""))
        if r.record is not None:
            print(f"    {agreement_text(r.record)}")
    for rec in climbed.disagreements:
        print(f"WARNING: {agreement_text(rec)}", file=sys.stderr)
    if top.chosen is not None:
        print(f"the ladder's choice (the top rung's best): {top.chosen.label}")
    return 0
