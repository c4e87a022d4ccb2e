"""The planner's subcommands: study, ablate, stack, plan, report, worker.

    golfplan study --plugins tidal,parallel,gqa --trials 20     TPE over on/off + params
    golfplan study studies/wave2_nature.yaml                    a study described in YAML
    golfplan ablate --plugins all --repeats 3                   baseline + each plugin alone
    golfplan stack --from ablate-all-cpu                        greedy stacking of the winners, then tune
    golfplan plan --plugins a,b,c --budget-hours 4              ablate -> stack -> tune
    golfplan report STUDY                                       markdown, CSV, plots, best config
    golfplan worker --study NAME --storage URL                  one more worker on a running study

Optuna is imported lazily (inside the command functions) so ``golfplan --help`` and
``golfplan run`` stay fast.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from golfplan.cli.options import add_plugin_path, add_spec_options, spec_from_args
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
        g.add_argument("--trial-seconds", type=float, metavar="S",
                       help="training wallclock cap of each run (default: the profile's)")
        g.add_argument("--trial-timeout", type=float, metavar="S",
                       help="hard limit of each run; the process is killed past it (default 2 x cap + 300)")
        g.add_argument("--budget-hours", type=float, metavar="H", help="budget of the whole study")
        g.add_argument("--cost-per-hour", type=float, metavar="USD",
                       help="price of the machine per hour, for the money line (the seed's RTX 4000 Ada: 0.20)")
        g.add_argument("--seed", type=int, default=None, help="the sampler's seed (default 0)")
        g.add_argument("--checks", choices=("full", "static", "none"), default=None,
                       help="preflight before each new configuration (default full; 'none' for simulated runners)")
        g.add_argument("--smoke-steps", type=int, default=None, help="CPU steps of the smoke check (default 30)")
        g.add_argument("--nproc", type=int, default=None, help="GPUs per trial, through torchrun")
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

    p = sub.add_parser("plan", help="ablate -> stack -> tune end to end under one budget")
    p.add_argument("--plugins", metavar="A,B,C|all", required=True)
    p.add_argument("--include-slight", action="store_true", help="also stack 'Slight help' plugins")
    p.add_argument("--tune-trials", type=int, default=20, help="TPE trials over the final stack")
    common(p, 3)
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
    p.add_argument("--storage", metavar="URL", required=True)
    p.add_argument("--runner", metavar="MODULE:FUNCTION")
    p.add_argument("--out", default="runs", metavar="DIR")
    p.add_argument("--wait", type=float, default=60.0, metavar="S", help="wait this long for the study to appear")
    p.add_argument("--max-trials", type=int, default=None, help="stop after this many trials here")
    p.add_argument("--data", metavar="DIR", help="this machine's shard folder (if it differs)")
    p.add_argument("--tokenizer", metavar="FILE", help="this machine's tokenizer (if it differs)")
    add_plugin_path(p)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_worker)


# ---- building a StudyDef from the command line ---------------------------------------------


def _registry(paths: list[str]) -> Any:
    from golfplan.registry import Registry

    return Registry(plugin_paths=paths)


def _names(value: str | None, registry: Any, exclude: set[str] = frozenset()) -> list[str]:
    if not value:
        return []
    if value.strip() == "all":
        return [n for n in registry.names() if n not in exclude]
    return [v.strip() for v in value.split(",") if v.strip()]


def definition_from_args(args: argparse.Namespace, mode: str | None) -> StudyDef:
    """The study file (if any), then the command line's options on top of it."""
    from golfplan.core.config import read_yaml
    from golfplan.planner.definition import load_study_file

    file = getattr(args, "file", None)
    d = load_study_file(file) if file else StudyDef()
    if mode:
        d.mode = mode
    elif getattr(args, "mode", None):
        d.mode = args.mode
    config_plugins: dict[str, Any] = {}
    config_profile = None
    if args.config:
        data = read_yaml(args.config)
        config_plugins = data.get("plugins") or {}
        config_profile = data.get("profile")
    registry = _registry(list(d.plugin_path) + list(args.plugin_path))
    fixed_names = set(d.fixed) | set(config_plugins if isinstance(config_plugins, dict) else [])
    searched = _names(getattr(args, "plugins", None), registry, fixed_names)
    always = _names(getattr(args, "always", None), registry)
    spec = spec_from_args(args, plugins=",".join(searched + always) if (searched or always) else None)
    if args.profile or config_profile:
        d.profile = spec.profile
    elif not file:
        d.profile = spec.profile
    d.config.update({k: getattr(spec.config, k) for k in sorted(spec.explicit)})
    d.plugin_path = list(dict.fromkeys(list(d.plugin_path) + [str(Path(p).resolve()) for p in spec.plugin_paths]))
    for name, params in spec.plugins.items():
        if name in searched:
            d.plugins[name] = dict(params)
        elif name in always:
            d.always[name] = dict(params)
        else:
            d.fixed[name] = dict(params)
    if searched:
        d.plugins = {n: spec.plugins.get(n, {}) for n in searched}
    if always:
        d.always = {n: spec.plugins.get(n, {}) for n in always}
    for opt, key in (("trials", "trials"), ("repeats", "repeats"), ("trial_seconds", "trial_seconds"),
                     ("trial_timeout", "trial_timeout"), ("budget_hours", "budget_hours"),
                     ("cost_per_hour", "cost_per_hour"), ("seed", "seed"), ("checks", "checks"),
                     ("smoke_steps", "smoke_steps"), ("nproc", "nproc"), ("alpha", "alpha"),
                     ("noise_floor", "noise_floor"), ("sampler", "sampler"), ("pruner", "pruner"),
                     ("storage", "storage")):
        v = getattr(args, opt, None)
        if v is not None:
            setattr(d, key, v)
    if args.study_name:
        d.name = args.study_name
    if not d.name:
        tag = "all" if (getattr(args, "plugins", "") or "").strip() == "all" else "+".join(d.plugins) or "baseline"
        d.name = f"{d.mode}-{tag}-{spec.profile}"[:100]
    d.coerce(f"study '{d.name}'")
    d.validate(registry)
    return d


def _planner(d: StudyDef, args: argparse.Namespace, worker: bool = False, local: dict[str, Any] | None = None,
             quiet: bool = False) -> Any:
    from golfplan.planner.runner import load_runner
    from golfplan.planner.study import Planner

    runner = load_runner(args.runner) if getattr(args, "runner", None) else None
    say = (lambda m: None) if quiet else (lambda m: print(m, flush=True))
    return Planner(d, storage=getattr(args, "storage", None) or d.storage, runner=runner, out_dir=args.out,
                   registry=_registry(list(d.plugin_path)), say=say, worker=worker, local_config=local)


def _header(planner: Any) -> None:
    d = planner.d
    cfg = planner.base.config
    cap = f"{cfg.max_wallclock_seconds:g}s cap" if cfg.max_wallclock_seconds > 0 else f"{cfg.iterations} steps"
    storage = planner.storage_url or d.storage or DEFAULT_STORAGE
    what = {"tune": f"{d.trials} trials", "ablate": f"{len(d.plugins)} plugins + baseline",
            "experiments": f"{len(d.experiments) + int(d.baseline)} configurations"}[d.mode]
    budget = f", budget {d.budget_hours:g} h" if d.budget_hours is not None else ""
    print(f"study {d.name}: {d.mode}, {what}, {d.repeats} seed(s) each, profile {planner.base.profile} ({cap}), "
          f"checks {d.checks}{budget}; storage {storage}", flush=True)
    if d.mode == "tune":
        for line in planner.space.describe():
            print(f"  {line}")
        for name, why in planner.screened.items():
            print(f"  {name}: not searched, refused alone: {why}")
    if d.fixed:
        from golfplan.planner.definition import describe_plugins

        print(f"  fixed in every trial: {describe_plugins(d.fixed, planner.registry)}")
    import optuna

    S = optuna.trial.TrialState
    trials = planner.study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state in (S.COMPLETE, S.PRUNED)]
    if done:
        print(f"  resuming: {len(done)} trial(s) finished, {fmt_time(planner.spent_s())} used so far", flush=True)


def fmt_time(s: float) -> str:
    from golfplan.planner.study import fmt_s

    return fmt_s(s)


def _finish(planner: Any, args: argparse.Namespace, wall_s: float) -> int:
    from golfplan.planner.report import best_row, collect, markdown_table, ranked, write_report

    d = planner.d
    if getattr(args, "no_report", False):
        rows, _ = collect(planner.study, d.alpha, d.noise_floor, d.experiments)
        files = {"rows": rows, "best": best_row(rows), "best_yaml": None, "text": ""}
    else:
        out = args.report_dir or str(Path("reports") / d.name)
        files = write_report(planner, out)
    rows = files["rows"]
    print()
    print(markdown_table(ranked(rows), "exp" if d.mode != "tune" else "trial"))
    print()
    best = files["best"]
    if best is not None:
        from golfplan.planner.report import best_config_yaml

        print(f"best feasible configuration: {best.label} (#{best.first}), val_bpb {best.summary.fmt()}")
        print(best_config_yaml(planner, best).rstrip())
    else:
        print("no feasible configuration finished")
    st = planner.run_stats
    spent = planner.spent_s()
    money = planner.money(spent)
    print(f"\ntime here: {fmt_time(wall_s)} wall ({st['trials']} trial(s): checks {st['check_s']:.0f}s, runs "
          f"{st['run_s']:.0f}s of which training {st['train_s']:.0f}s); study total {fmt_time(spent)}"
          + (f", {money}" if money else ""))
    if not getattr(args, "no_report", False):
        print(f"report: {files['markdown']}, {files['csv']}" + (f", {files['best_yaml']}" if files.get("best_yaml") else "")
              + (f", {len(files['plots'])} plots" if files.get("plots") else ""))
    return 0


# ---- the commands ------------------------------------------------------------------------


def cmd_study(args: argparse.Namespace) -> int:
    d = definition_from_args(args, None)
    return _run_definition(d, args)


def cmd_ablate(args: argparse.Namespace) -> int:
    d = definition_from_args(args, "ablate")
    if args.repeats is None:
        d.repeats = 3
    return _run_definition(d, args)


def _run_definition(d: StudyDef, args: argparse.Namespace) -> int:
    t0 = time.time()
    planner = _planner(d, args, quiet=args.quiet)
    planner.open()
    if not args.quiet:
        _header(planner)
    planner.run()
    return _finish(planner, args, time.time() - t0)


def cmd_stack(args: argparse.Namespace) -> int:
    from golfplan.planner.study import open_storage

    storage = open_storage(args.storage)
    t0 = time.time()
    source, planner = _stack_planners(args, storage, args.source)
    return _stack_and_tune(source, planner, args, t0, args.budget_hours)


def _stack_planners(args: argparse.Namespace, storage: Any, source_name: str) -> tuple[Any, Any]:
    from golfplan.planner.study import BASELINE_ATTR, Planner, load_definition

    src_def = load_definition(storage, source_name)
    if src_def.mode != "ablate":
        raise StudyError(f"--from {source_name}: expected an ablate study, got mode '{src_def.mode}'")
    quiet = getattr(args, "quiet", False)
    say = (lambda m: None) if quiet else (lambda m: print(m, flush=True))
    source = Planner(src_def, storage=storage, out_dir=args.out, registry=_registry(src_def.plugin_path),
                     say=say, worker=True)
    source.open(enqueue=False)
    stack_def = replace(src_def, name=args.study_name or f"{source_name}.stack", mode="experiments", plugins={},
                        experiments=[], baseline=True,
                        repeats=args.repeats if args.repeats is not None else src_def.repeats,
                        budget_hours=args.budget_hours)
    from golfplan.planner.runner import load_runner

    runner = load_runner(args.runner) if args.runner else None
    planner = Planner(stack_def, storage=storage, runner=runner, out_dir=args.out,
                      registry=_registry(stack_def.plugin_path), say=say)
    planner.open(enqueue=False)
    planner.study.set_user_attr(BASELINE_ATTR, planner.key_of(dict(src_def.fixed)))
    return source, planner


def _stack_and_tune(source: Any, planner: Any, args: argparse.Namespace, t0: float,
                    budget_hours: float | None) -> int:
    from golfplan.planner.waves import stack, tune_definition

    say = print if not getattr(args, "quiet", False) else (lambda m: None)
    say(f"stack {planner.d.name}: from the winners of '{source.d.name}', {planner.d.repeats} seed(s) per candidate")
    result = stack(source, planner, include_slight=args.include_slight, say=say)
    _finish(planner, args, time.time() - t0)
    from golfplan.planner.definition import describe_plugins

    print(f"\nfinal stack: {describe_plugins(result.plugins, planner.registry)}")
    if result.stopped == "budget" or args.tune_trials <= 0:
        return 0
    left = None
    if budget_hours is not None:  # what stacking left of the budget for stack + tune
        left = max(budget_hours - planner.spent_s() / 3600.0, 0.0)
    tune_def = tune_definition(planner.d, result.plugins, dict(source.d.fixed), planner.registry,
                               f"{planner.d.name.removesuffix('.stack')}.tune", args.tune_trials, left)
    if tune_def is None:
        print("the stack's plugins have no params to tune")
        return 0
    tuner = _planner(tune_def, args, quiet=getattr(args, "quiet", False))
    tuner.open()
    if not getattr(args, "quiet", False):
        _header(tuner)
    tuner.run()
    return _finish(tuner, _with_report_dir(args, None), time.time() - t0)


def _with_report_dir(args: argparse.Namespace, value: str | None) -> argparse.Namespace:
    ns = argparse.Namespace(**vars(args))
    ns.report_dir = value
    return ns


def cmd_plan(args: argparse.Namespace) -> int:
    t0 = time.time()
    d = definition_from_args(args, "ablate")
    if args.repeats is None:
        d.repeats = 3
    base_name = args.study_name or d.name.removeprefix("ablate-")
    d.name = f"{base_name}.ablate"
    ablate_planner = _planner(d, args, quiet=args.quiet)
    ablate_planner.open()
    if not args.quiet:
        print(f"plan {base_name}: ablate -> stack -> tune" +
              (f" within {args.budget_hours:g} h" if args.budget_hours is not None else ""))
        _header(ablate_planner)
    res = ablate_planner.run()
    _finish(ablate_planner, _with_report_dir(args, None), time.time() - t0)
    if res.stopped.startswith("budget"):
        print("budget spent during the ablation: no stacking")
        return 0
    stack_args = argparse.Namespace(**vars(args))
    stack_args.study_name = f"{base_name}.stack"
    stack_args.report_dir = None
    left = None
    if args.budget_hours is not None:
        left = max(args.budget_hours - ablate_planner.spent_s() / 3600.0, 0.0)
    stack_args.budget_hours = left
    source, planner = _stack_planners(stack_args, ablate_planner.storage, d.name)
    return _stack_and_tune(source, planner, stack_args, t0, left)


def cmd_report(args: argparse.Namespace) -> int:
    from golfplan.planner.report import write_report
    from golfplan.planner.study import Planner, load_definition, open_storage

    storage = open_storage(args.storage)
    d = load_definition(storage, args.study_name)
    planner = Planner(d, storage=storage, registry=_registry(list(d.plugin_path) + args.plugin_path),
                      say=lambda m: None, readonly=True)
    planner.open(enqueue=False)
    files = write_report(planner, args.out or str(Path("reports") / d.name), plots=not args.no_plots)
    print(files["text"])
    print(f"written: {files['markdown']}, {files['csv']}" + (f", {files['best_yaml']}" if files.get("best_yaml") else "")
          + "".join(f", {p}" for p in files.get("plots", [])))
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from golfplan.planner.study import load_definition, open_storage

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
    t0 = time.time()
    planner = _planner(d, argparse.Namespace(runner=args.runner, out=args.out, storage=storage),
                       worker=True, local=local, quiet=args.quiet)
    planner.open()
    if not args.quiet:
        import os
        import socket

        print(f"worker {socket.gethostname()}:{os.getpid()} on study {d.name} ({d.mode})", flush=True)
    res = planner.run(max_new=args.max_trials)
    print(f"worker done: {res.ran} trial(s) run here in {fmt_time(time.time() - t0)}; {res.stopped}", flush=True)
    return 0
