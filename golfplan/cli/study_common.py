"""What the planner's commands share: the study definition from the command line, the planner, the
header printed when a study starts and the table printed when it ends.

Storage URLs are shown with their password masked (``user:***@host``), everywhere.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from golfplan.cli.options import registry_for, spec_from_args
from golfplan.planner.definition import DEFAULT_STORAGE, StudyDef


def _names(value: str | None, registry: Any, exclude: set[str] = frozenset()) -> list[str]:
    if not value:
        return []
    if value.strip() == "all":
        return [n for n in registry.names() if n not in exclude]
    return [v.strip() for v in value.split(",") if v.strip()]


def definition_from_args(args: argparse.Namespace, mode: str | None) -> tuple[StudyDef, Any]:
    """The study file (if any), then the command line's options on top of it, and the registry of
    its plugins. The run options (profile, --config, --set, --plugins, data) are resolved once into a
    RunSpec, whose explicit keys become the study's config."""
    from golfplan.core.yamlfile import read_yaml
    from golfplan.planner.definition import load_study_file

    file = getattr(args, "file", None)
    d = load_study_file(file) if file else StudyDef()
    if mode:
        d.mode = mode
    elif getattr(args, "mode", None):
        d.mode = args.mode
    data = read_yaml(args.config) if args.config else None
    config_plugins = (data or {}).get("plugins") or {}
    registry_paths = list(dict.fromkeys(str(Path(p).resolve()) for p in [*d.plugin_path, *args.plugin_path]))
    registry = registry_for(registry_paths)
    fixed_names = set(d.fixed) | set(config_plugins if isinstance(config_plugins, dict) else [])
    searched = _names(getattr(args, "plugins", None), registry, fixed_names)
    always = _names(getattr(args, "always", None), registry)
    spec = spec_from_args(args, plugins=",".join(searched + always) if (searched or always) else None, data=data)
    if args.profile or (data or {}).get("profile") or not file:
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
    if getattr(args, "ladder", None):
        d.ladder = [r.strip() for r in args.ladder.split(",") if r.strip()]
    for key in ("promote", "trials", "repeats", "trial_seconds", "trial_timeout", "budget_hours", "cost_per_hour",
                "seed", "checks", "smoke_steps", "nproc", "jobs", "batch", "threads", "alpha", "noise_floor", "sampler",
                "pruner", "storage"):
        v = getattr(args, key, None)
        if v is not None:
            setattr(d, key, v)
    if args.study_name:
        d.name = args.study_name
    if not d.name:
        tag = "all" if (getattr(args, "plugins", "") or "").strip() == "all" else "+".join(d.plugins) or "baseline"
        d.name = f"{d.mode}-{tag}-{spec.profile}"[:100]
    d.coerce(f"study '{d.name}'")
    if set(d.plugin_path) - set(registry_paths):  # the --config file named plugin files of its own
        registry = registry_for(list(d.plugin_path))
    d.validate(registry)
    return d, registry


def say_for(args: argparse.Namespace) -> Any:
    return (lambda m: None) if getattr(args, "quiet", False) else (lambda m: print(m, flush=True))


def make_planner(d: StudyDef, args: argparse.Namespace, registry: Any, worker: bool = False,
                 local: dict[str, Any] | None = None, storage: Any = None) -> Any:
    """The Planner of ``d``: its base RunSpec resolved here, once (``local``: this machine's data
    paths, for a worker), with the command's runner, storage, output folder and verbosity."""
    from golfplan.planner.resume import base_spec
    from golfplan.planner.runner import load_runner
    from golfplan.planner.study import Planner

    runner = load_runner(args.runner) if getattr(args, "runner", None) else None
    return Planner(d, base_spec(d, local), registry, storage=storage or getattr(args, "storage", None) or d.storage,
                   runner=runner, out_dir=args.out, say=say_for(args), worker=worker)


def print_header(planner: Any) -> None:
    from golfplan.planner.definition import describe_plugins
    from golfplan.planner.progress import fmt_s
    from golfplan.planner.storage import mask_url

    d = planner.d
    cfg = planner.base.config
    cap = f"{cfg.max_wallclock_seconds:g}s cap" if cfg.max_wallclock_seconds > 0 else f"{cfg.iterations} steps"
    storage = planner.storage_url or mask_url(d.storage or DEFAULT_STORAGE)
    what = {"tune": f"{d.trials} trials", "ablate": f"{len(d.plugins)} plugins + baseline",
            "experiments": f"{len(d.experiments) + int(d.baseline)} configurations"}[d.mode]
    budget = f", budget {d.budget_hours:g} h" if d.budget_hours is not None else ""
    side = f", {planner.jobs} trials side by side" if planner.jobs > 1 else ""
    if d.mode == "tune":
        side += f", sampled {d.batch} at a time"
    threads = f", {planner.threads} CPU thread(s) a run" if planner.threads else ""
    print(f"study {d.name}: {d.mode}, {what}, {d.repeats} seed(s) each, profile {planner.base.profile} ({cap}), "
          f"checks {d.checks}{budget}{side}{threads}; storage {storage}", flush=True)
    if d.mode == "tune":
        for line in planner.space.describe():
            print(f"  {line}")
        for name, why in planner.screened.items():
            print(f"  {name}: not searched, refused alone: {why}")
    if d.fixed:
        print(f"  fixed in every trial: {describe_plugins(d.fixed, planner.registry)}")
    done = planner.finished()
    if done:
        print(f"  resuming: {len(done)} trial(s) finished, {fmt_s(planner.spent_s())} used so far", flush=True)


def print_finish(planner: Any, args: argparse.Namespace, wall_s: float, report_dir: str | None = None) -> int:
    """The ranked table, the best (or chosen) configuration, the time used; the report files unless
    ``--no-report``."""
    from golfplan.planner.progress import fmt_s
    from golfplan.planner.report import (best_config_yaml, best_row, chosen_key, collect, markdown_table, ranked,
                                         step_capped, write_report)

    d = planner.d
    if getattr(args, "no_report", False):
        rows, _ = collect(planner.study, d.alpha, d.noise_floor, d.experiments)
        files = {"rows": rows, "best": best_row(rows, chosen_key(planner.study))}
    else:
        files = write_report(planner, report_dir or str(Path("reports") / d.name))
    rows = files["rows"]
    print()
    print(markdown_table(ranked(rows), "exp" if d.mode != "tune" else "trial", step_capped(planner.study, rows)))
    print()
    best = files["best"]
    if best is not None:
        what = "chosen configuration (the final stack)" if best.key == chosen_key(planner.study) else \
            "best feasible configuration"
        print(f"{what}: {best.label} (#{best.first}), val_bpb {best.summary.fmt()}")
        print(best_config_yaml(planner, best).rstrip())
    else:
        print("no feasible configuration finished")
    st = planner.run_stats
    spent = planner.spent_s()
    money = planner.money(spent)
    print(f"\ntime here: {fmt_s(wall_s)} wall ({st['trials']} trial(s): checks {st['check_s']:.0f}s, runs "
          f"{st['run_s']:.0f}s of which training {st['train_s']:.0f}s); study total {fmt_s(spent)}"
          + (f", {money}" if money else ""))
    if not getattr(args, "no_report", False):
        print(f"report: {files['markdown']}, {files['csv']}" + (f", {files['best_yaml']}" if files.get("best_yaml") else "")
              + (f", {len(files['plots'])} plots" if files.get("plots") else ""))
    return 0
