"""The planner's subcommands: study, ablate, stack, plan, report, worker.

    golfplan study --plugins tidal,parallel,gqa --trials 20     TPE over on/off + params
    golfplan study studies/wave2_nature.yaml                    a study described in YAML
    golfplan ablate --plugins all --repeats 3                   baseline + each plugin alone
    golfplan stack --from ablate-all-cpu                        greedy stacking of the winners, then tune
    golfplan plan --plugins a,b,c --budget-hours 4              ablate -> stack -> tune
    golfplan report STUDY                                       markdown, CSV, plots, best config
    golfplan worker --study NAME --storage URL                  one more worker on a running study

Optuna is imported lazily (inside the command functions) so ``golfplan --help`` and
``golfplan run`` stay fast. What the commands share is in :mod:`golfplan.cli.study_common`; stack
and plan are in :mod:`golfplan.cli.plan`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from golfplan.cli.options import (add_jobs, add_plugin_path, add_spec_options, positive_float, positive_int,
                                  registry_for)
from golfplan.cli.check import add_check_timeout
from golfplan.cli.plan import add_ladder, climb_ladder, cmd_plan, cmd_stack
from golfplan.cli.study_common import definition_from_args, make_planner, print_finish, print_header
from golfplan.planner.definition import DEFAULT_STORAGE, StudyDef, StudyError


def add_parsers(sub: argparse._SubParsersAction) -> None:
    def common(p: argparse.ArgumentParser, repeats_default: int | None) -> None:
        add_spec_options(p, plugins=False)
        g = p.add_argument_group("study")
        g.add_argument("--study", dest="study_name", metavar="NAME",
                       help="study name in the storage (default: from the mode, plugins and profile, or the file's stem)")
        g.add_argument("--storage", metavar="URL",
                       help=f"Optuna storage: sqlite:///FILE.db (default {DEFAULT_STORAGE}), "
                            f"postgresql://USER@HOST/DB, or journal:FILE")
        g.add_argument("--runner", metavar="MODULE:FUNCTION",
                       help="run trials with this callable (job -> result mapping) instead of `golfplan run`")
        g.add_argument("--repeats", type=int, default=None,
                       help=f"seeds per configuration (default {repeats_default or 'from the file, else 1'})")
        g.add_argument("--trial-seconds", type=positive_float, metavar="S",
                       help="training wallclock cap of each run, > 0 (default: the profile's)")
        g.add_argument("--trial-timeout", type=positive_float, metavar="S",
                       help="hard limit of each run, > 0; its processes are killed past it (default 2 x the cap, "
                            "or the profile's time limit, + 300)")
        g.add_argument("--budget-hours", type=float, metavar="H", help="budget of the whole study")
        g.add_argument("--cost-per-hour", type=float, metavar="USD",
                       help="price of the machine per hour, for the money line (the seed's RTX 4000 Ada: 0.20)")
        g.add_argument("--seed", type=int, default=None, help="the sampler's seed (default 0)")
        g.add_argument("--checks", choices=("full", "static", "none"), default=None,
                       help="preflight before each new configuration (default full; 'none' for simulated runners)")
        g.add_argument("--smoke-steps", type=int, default=None, help="CPU steps of the smoke check (default 30)")
        add_check_timeout(g, planner=True)
        g.add_argument("--nproc", type=int, default=None, help="GPUs per trial, through torchrun")
        add_jobs(g)
        g.add_argument("--batch", type=positive_int, default=None, metavar="N",
                       help="tune: sampled trials are asked N at a time, each batch once the one before has "
                            "finished, so the sampled path is the same whatever --jobs is (default 2; part of "
                            "the study; --jobs above it leaves slots idle while sampling)")
        g.add_argument("--threads", type=positive_int, default=None,
                       help="CPU threads of each run on a CPU profile (default 1): part of the study, so a "
                            "configuration and seed give the same val_bpb whatever --jobs is")
        g.add_argument("--alpha", type=float, default=None, help="significance level (default 0.05)")
        g.add_argument("--noise-floor", type=float, default=None,
                       help="BPB noise assumed while the baseline has one run (default 0.002)")
        g.add_argument("--out", default="runs", metavar="DIR", help="parent of the run directories (default runs)")
        g.add_argument("--report-dir", metavar="DIR", help="where the report goes (default reports/STUDY)")
        g.add_argument("--no-report", action="store_true", help="do not write the report files at the end")
        g.add_argument("--quiet", action="store_true", help="only the final table")

    p = sub.add_parser("study", help="an Optuna study over plugins (or one described in a YAML file)",
                       description="Search plugin on/off and params with TPE, or run a study file "
                                   "(modes tune, ablate, experiments). Rerunning the same command resumes it.")
    p.add_argument("file", nargs="?", metavar="STUDY.yaml", help="a study file (see studies/)")
    p.add_argument("--plugins", metavar="A,B,C|all", help="plugins to search (on/off and params)")
    p.add_argument("--always", metavar="A,B", help="plugins on in every trial whose params are searched")
    p.add_argument("--trials", type=int, default=None, help="number of trials (default 20)")
    p.add_argument("--mode", choices=("tune", "ablate", "experiments"), default=None)
    p.add_argument("--sampler", choices=("tpe", "random"), default=None, help="default tpe")
    p.add_argument("--pruner", choices=("median", "none"), default=None,
                   help="stop hopeless trials at periodic validations (needs val_loss_every > 0; default median)")
    common(p, None)
    add_ladder(p)
    p.set_defaults(func=cmd_study)

    p = sub.add_parser("ablate", help="baseline and each plugin alone, with repeats; a ranked table",
                       description="The seed's waves automated: the baseline and each plugin alone with "
                                   "default params, each with N seeds, judged by Welch's t-test.")
    p.add_argument("--plugins", metavar="A,B,C|all", required=True)
    common(p, 3)
    p.set_defaults(func=cmd_ablate)

    p = sub.add_parser("stack", help="greedy stacking of an ablation's winners, then tune their params",
                       description="From the ablation's baseline, add its winners in order of effect, keeping "
                                   "each only if the stack improves significantly; then TPE over the stack's params.")
    p.add_argument("--from", dest="source", metavar="STUDY", required=True, help="the ablation study")
    p.add_argument("--include-slight", action="store_true", help="also try 'Slight help' plugins")
    p.add_argument("--tune-trials", type=int, default=20, help="TPE trials over the final stack (0: no tuning)")
    common(p, None)
    p.set_defaults(func=cmd_stack)

    p = sub.add_parser("plan", help="find the best stack of plugins in few runs: stack, re-test, tune",
                       description="Stack one candidate at a time on the current stack, re-test the close calls "
                                   "with more seeds, then tune the stack's own params (golfplan.planner.strategy). "
                                   "--strategy waves runs the older ablate -> stack -> tune studies.")
    p.add_argument("file", nargs="?", metavar="STUDY.yaml", help="a study file giving the plugins (and ladder:)")
    p.add_argument("--plugins", metavar="A,B,C|all", help="the candidates (required without a study file)")
    p.add_argument("--runs", type=positive_int, default=None, metavar="N",
                   help="at most N training runs in all (default: no cap; --budget-hours also bounds it)")
    p.add_argument("--strategy", choices=("stack-tune", "waves"), default="stack-tune")
    p.add_argument("--include-slight", action="store_true", help="waves: also stack 'Slight help' plugins")
    p.add_argument("--tune-trials", type=int, default=12, help="tune proposals over the final stack")
    common(p, None)
    add_ladder(p)
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("report", help="markdown table, CSV, plots and best config of a study")
    p.add_argument("study_name", metavar="STUDY")
    p.add_argument("--storage", metavar="URL", help=f"default {DEFAULT_STORAGE}")
    p.add_argument("--out", metavar="DIR", help="default reports/STUDY")
    p.add_argument("--no-plots", action="store_true")
    add_plugin_path(p)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("worker", help="add a worker to a running study (from this or another machine)",
                       description="Join a study another `golfplan study` created: the study's definition is "
                                   "read from the storage; trials are shared, never run twice.")
    p.add_argument("--study", dest="study_name", metavar="NAME", required=True)
    add_jobs(p)
    p.add_argument("--storage", metavar="URL", required=True)
    p.add_argument("--runner", metavar="MODULE:FUNCTION")
    p.add_argument("--out", default="runs", metavar="DIR")
    p.add_argument("--wait", type=float, default=60.0, metavar="S", help="wait this long for the study to appear")
    p.add_argument("--max-trials", type=int, default=None, help="stop after this many trials here")
    add_check_timeout(p, planner=True)
    p.add_argument("--data", metavar="DIR", help="this machine's shard folder (if it differs)")
    p.add_argument("--tokenizer", metavar="FILE", help="this machine's tokenizer (if it differs)")
    add_plugin_path(p)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_worker)


# ---- the commands ------------------------------------------------------------------------


def cmd_study(args: argparse.Namespace) -> int:
    return _run_definition(*definition_from_args(args, None), args)


def cmd_ablate(args: argparse.Namespace) -> int:
    d, registry = definition_from_args(args, "ablate")
    if args.repeats is None:
        d.repeats = 3
    return _run_definition(d, registry, args)


def _run_definition(d: StudyDef, registry: Any, args: argparse.Namespace) -> int:
    t0 = time.time()
    if d.ladder:
        return climb_ladder(d, registry, args, t0, lambda rd, runs: _study_rung(rd, registry, args))
    planner = make_planner(d, args, registry)
    planner.open()
    if not args.quiet:
        print_header(planner)
    planner.run()
    return print_finish(planner, args, time.time() - t0, args.report_dir)


def _study_rung(d: StudyDef, registry: Any, args: argparse.Namespace) -> tuple[Any, None]:
    """The bottom rung of a study's ladder: the study itself, in its own mode."""
    planner = make_planner(d, args, registry)
    planner.open()
    if not args.quiet:
        print_header(planner)
    planner.run()
    return planner, None


def cmd_report(args: argparse.Namespace) -> int:
    from golfplan.planner.report import write_report
    from golfplan.planner.resume import base_spec
    from golfplan.planner.storage import load_definition, open_storage
    from golfplan.planner.study import Planner

    storage = open_storage(args.storage)
    d = load_definition(storage, args.study_name)
    planner = Planner(d, base_spec(d), registry_for(list(d.plugin_path) + args.plugin_path), storage=storage,
                      say=lambda m: None, readonly=True)
    planner.open(enqueue=False)
    files = write_report(planner, args.out or str(Path("reports") / d.name), plots=not args.no_plots)
    print(files["text"])
    print(f"written: {files['markdown']}, {files['csv']}" + (f", {files['best_yaml']}" if files.get("best_yaml") else "")
          + "".join(f", {p}" for p in files.get("plots", [])))
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from golfplan.planner.progress import fmt_s
    from golfplan.planner.storage import load_definition, open_storage

    storage = open_storage(args.storage)
    deadline = time.time() + max(args.wait, 0.0)
    while True:
        try:
            d = load_definition(storage, args.study_name)
            break
        except StudyError:
            if time.time() >= deadline:
                raise
            time.sleep(1.0)
    local: dict[str, Any] = {}
    if args.data:
        local["data_path"] = str(Path(args.data).resolve())
    if args.tokenizer:
        local["tokenizer_path"] = str(Path(args.tokenizer).resolve())
    d.plugin_path = list(d.plugin_path) + [str(Path(p).resolve()) for p in args.plugin_path]
    d.jobs = args.jobs  # this host's own, not the creator's
    t0 = time.time()
    planner = make_planner(d, args, registry_for(list(d.plugin_path)), worker=True, local=local, storage=storage)
    planner.open()
    if not args.quiet:
        import os
        import socket

        print(f"worker {socket.gethostname()}:{os.getpid()} on study {d.name} ({d.mode})", flush=True)
    res = planner.run(max_new=args.max_trials)
    print(f"worker done: {res.ran} trial(s) run here in {fmt_s(time.time() - t0)}; {res.stopped}", flush=True)
    return 0
