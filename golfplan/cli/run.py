"""``golfplan run``: train one model, as the challenge's train_gpt.py does."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from golfplan.cli.options import EXIT_FAILED, EXIT_OK, add_spec_options, positive_int, registry_for, spec_from_args


VERDICT_IN_RESULT = "GOLFPLAN_VERDICT_IN_RESULT"  # set for the workers launch_torchrun starts


def add_parser(sub: argparse._SubParsersAction) -> None:
    from golfplan.cli.check import add_check_timeout

    p = sub.add_parser("run", help="train one model, as the challenge's train_gpt.py does",
                       description="Train one model. Prints val_loss, val_bpb (after the artifact round trip), "
                                   "steps, ms/step and artifact bytes; writes a run directory.")
    add_spec_options(p)
    p.add_argument("--spec", metavar="FILE", help="a resolved run spec (JSON/YAML written by RunSpec.to_dict, as the "
                                                  "planner writes for each trial) instead of the options above")
    p.add_argument("--out", default="runs", metavar="DIR", help="parent folder of run directories (default: runs)")
    p.add_argument("--name", help="run directory name (default: time + plugins)")
    p.add_argument("--nproc", type=positive_int, default=1, help="processes (GPUs) to train on, through torchrun")
    p.add_argument("--no-check", action="store_true", help="skip the preflight checks")
    p.add_argument("--check-json", metavar="FILE", help="also write the preflight's report to FILE as JSON")
    add_check_timeout(p)
    p.add_argument("--json", action="store_true",
                   help="print the result as JSON on standard output (the log goes to standard error)")
    p.set_defaults(func=cmd_run)


def default_run_name(plugins: dict) -> str:
    tag = "+".join(plugins) if plugins else "baseline"
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{tag[:60]}"


def cmd_run(args: argparse.Namespace) -> int:
    from golfplan.core.train.runtime import torchrun_env

    spec = spec_from_args(args)
    registry = registry_for(spec.plugin_paths)
    env = torchrun_env()
    rank0 = env is None or env.master
    if not args.no_check:
        from golfplan.check import preflight

        report = preflight(spec, registry, quiet=not rank0, world_size=args.nproc if args.nproc > 1 else None,
                           timeout_s=args.check_timeout)
        if args.check_json and rank0:
            Path(args.check_json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.check_json).write_text(json.dumps(report.to_dict(), indent=2))
        if not report.ok:
            return EXIT_FAILED
    run_dir = Path(args.out) / (args.name or os.environ.get("GOLFPLAN_RUN_NAME") or default_run_name(spec.plugins))
    if args.nproc > 1 and env is None:
        return launch_torchrun(args, run_dir)
    from golfplan.core.train.trainer import train

    techniques = registry.instantiate(spec.plugins)
    result = train(spec.config, techniques, run_dir=run_dir, explicit=spec.explicit,
                   stream=sys.stderr if args.json else None)
    code = EXIT_OK if result.status == "complete" else EXIT_FAILED
    if rank0:
        if args.json:
            print(result.to_json())
        else:
            print_summary(result)
    if env is not None:
        from golfplan.core.train.runtime import leave_distributed

        # Under our own launcher a finished run's verdict travels in result.json (read by
        # launch_torchrun), so torchrun does not report a failed verdict as a crashed job.
        leave_distributed(EXIT_OK if os.environ.get(VERDICT_IN_RESULT) else code)
    return code


def print_summary(r) -> None:
    print("-" * 60)
    if r.status != "complete":
        print(f"status:            {r.status}: {r.reason}")
    else:
        print("status:            complete")
        fmt = (r.artifact_format or "int8_zlib").replace("_", "+")
        print(f"val_loss:          {r.val_loss:.4f}   (after the {fmt} round trip)")
        print(f"val_bpb:           {r.val_bpb:.4f}   (untrained model: {r.untrained_val_bpb:.4f})")
    capped = f", capped by {r.capped_by}" if r.capped_by else ""
    threads = f", {r.threads} CPU thread(s)" if r.threads else ""
    print(f"steps:             {r.steps}   ({r.ms_per_step} ms/step, {r.train_time_s:.1f}s training{capped}{threads})")
    if r.artifact_bytes is not None:
        print(f"artifact bytes:    {r.artifact_bytes:,}   (model {r.model_bytes:,} + code {r.code_bytes:,})")
    print(f"run directory:     {r.run_dir}")


def launch_torchrun(args: argparse.Namespace, run_dir: Path) -> int:
    """Re-run this command under torchrun with ``--nproc`` processes (checks already passed here)."""
    cleaned: list[str] = []
    skip = False
    for a in sys.argv[1:]:
        if skip:
            skip = False
            continue
        if a in ("--nproc", "--check-json"):
            skip = True
            continue
        if a.startswith(("--nproc=", "--check-json=")):
            continue
        cleaned.append(a)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.nproc}",
           "-m", "golfplan", *cleaned, "--no-check"]
    env = dict(os.environ, GOLFPLAN_RUN_NAME=run_dir.name, **{VERDICT_IN_RESULT: "1"})
    if subprocess.call(cmd, env=env) != 0:
        return EXIT_FAILED  # a worker crashed: torchrun has said which and how
    try:
        status = json.loads((run_dir / "result.json").read_text())["status"]
    except (OSError, ValueError, KeyError):
        print(f"error: the workers ended without writing {run_dir / 'result.json'}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK if status == "complete" else EXIT_FAILED
