"""The ``golfplan`` command.

    golfplan run       train one model (the challenge's train_gpt.py, with plugins)
    golfplan check     preflight a combination of plugins before any GPU time is spent
    golfplan plugins   list the techniques (``--json``; ``plugins show NAME``)
    golfplan data      build the embedded dataset, or fetch the challenge's shards
    golfplan study / ablate / stack / plan / report / worker   the planner

Errors a user can cause end with one ``error:`` line and exit status 2; a run or
check that fails exits with 1.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from golfplan.core.errors import GolfplanError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


# ---- shared options ---------------------------------------------------------------


def add_spec_options(p: argparse.ArgumentParser, plugins: bool = True) -> None:
    """Options that resolve a RunSpec: profile, YAML, --set, plugins, data."""
    g = p.add_argument_group("configuration")
    g.add_argument("--profile", help="hardware profile: cpu, rtx4000, 1xh100, 8xh100 (default: cpu without CUDA)")
    g.add_argument("--config", metavar="FILE", help="YAML file of config keys, 'plugins' and 'profile'")
    g.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key or a plugin param (PLUGIN.PARAM=VALUE); repeatable")
    if plugins:
        g.add_argument("--plugins", default=None, metavar="A,B,C", help="techniques to enable (comma-separated)")
    g.add_argument("--plugin-path", action="append", default=[], metavar="FILE_OR_DIR",
                   help="load technique plugins from a .py file or a folder; repeatable")
    g.add_argument("--data", metavar="DIR", help="folder of fineweb_train_*.bin / fineweb_val_*.bin shards")
    g.add_argument("--tokenizer", metavar="FILE", help="the SentencePiece model the shards were made with")
    g.add_argument("--vocab-size", type=int, help="vocabulary size (the embedded dataset is built at this size)")
    g.add_argument("--allow-eager", action="store_true", default=None,
                   help="let compile-unsafe plugins run, in eager mode")


def spec_from_args(args: argparse.Namespace, plugins: Any = None):
    from golfplan.core.config import load_spec

    overrides: dict[str, Any] = {}
    if getattr(args, "data", None):
        overrides["data_path"] = str(Path(args.data).resolve())
    if getattr(args, "tokenizer", None):
        overrides["tokenizer_path"] = str(Path(args.tokenizer).resolve())
    if getattr(args, "vocab_size", None):
        overrides["vocab_size"] = args.vocab_size
    if getattr(args, "allow_eager", None):
        overrides["allow_eager"] = True
    return load_spec(profile=args.profile, config_file=args.config,
                     plugins=plugins if plugins is not None else getattr(args, "plugins", None),
                     sets=args.sets, plugin_paths=args.plugin_path, overrides=overrides)


def registry_for(spec) -> Any:
    from golfplan.registry import Registry

    return Registry(plugin_paths=spec.plugin_paths)


# ---- golfplan run -----------------------------------------------------------------


def add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="train one model, as the challenge's train_gpt.py does",
                       description="Train one model. Prints val_loss, val_bpb (after the artifact round trip), "
                                   "steps, ms/step and artifact bytes; writes a run directory.")
    add_spec_options(p)
    p.add_argument("--out", default="runs", metavar="DIR", help="parent folder of run directories (default: runs)")
    p.add_argument("--name", help="run directory name (default: time + plugins)")
    p.add_argument("--nproc", type=int, default=1, help="processes (GPUs) to train on, through torchrun")
    p.add_argument("--no-check", action="store_true", help="skip the preflight checks")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_run)


def default_run_name(plugins: dict) -> str:
    tag = "+".join(plugins) if plugins else "baseline"
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{tag[:60]}"


def cmd_run(args: argparse.Namespace) -> int:
    spec = spec_from_args(args)
    registry = registry_for(spec)
    in_torchrun = "RANK" in os.environ and "WORLD_SIZE" in os.environ
    rank0 = os.environ.get("RANK", "0") == "0"
    if not args.no_check:
        from golfplan.planner.check import preflight_for_run

        ok = preflight_for_run(spec, registry, quiet=in_torchrun and not rank0,
                               world_size=args.nproc if args.nproc > 1 else None)
        if not ok:
            return EXIT_FAILED
    run_dir = Path(args.out) / (args.name or os.environ.get("GOLFPLAN_RUN_NAME") or default_run_name(spec.plugins))
    if args.nproc > 1 and not in_torchrun:
        return launch_torchrun(args, run_dir)
    from golfplan.core.trainer import train

    techniques = registry.instantiate(spec.plugins)
    result = train(spec.config, techniques, run_dir=run_dir, explicit=spec.explicit)
    if in_torchrun:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
    if not rank0:
        return EXIT_OK if result.status == "complete" else EXIT_FAILED
    if args.json:
        print(result.to_json())
    else:
        print_summary(result)
    return EXIT_OK if result.status == "complete" else EXIT_FAILED


def print_summary(r) -> None:
    print("-" * 60)
    if r.status != "complete":
        print(f"status:            {r.status}: {r.reason}")
    else:
        print("status:            complete")
        print(f"val_loss:          {r.val_loss:.4f}   (after the int8+zlib round trip)")
        print(f"val_bpb:           {r.val_bpb:.4f}   (untrained model: {r.untrained_val_bpb:.4f})")
    print(f"steps:             {r.steps}   ({r.ms_per_step} ms/step, {r.train_time_s:.1f}s training)")
    if r.artifact_bytes is not None:
        print(f"artifact bytes:    {r.artifact_bytes:,}   (model {r.model_bytes:,} + code {r.code_bytes:,})")
    print(f"run directory:     {r.run_dir}")


def launch_torchrun(args: argparse.Namespace, run_dir: Path) -> int:
    """Re-run this command under torchrun with ``--nproc`` processes (checks already passed here)."""
    argv = [a for a in sys.argv[1:]]
    cleaned: list[str] = []
    skip = False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == "--nproc":
            skip = True
            continue
        if a.startswith("--nproc="):
            continue
        cleaned.append(a)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.nproc}",
           "-m", "golfplan", *cleaned, "--no-check"]
    env = dict(os.environ, GOLFPLAN_RUN_NAME=run_dir.name)
    return subprocess.call(cmd, env=env)


# ---- golfplan plugins -------------------------------------------------------------


def add_plugins(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plugins", help="list the techniques", description="List the registered techniques.")
    p.add_argument("action", nargs="?", choices=["list", "show"], default="list")
    p.add_argument("name", nargs="?", help="with 'show': the plugin to describe")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--plugin-path", action="append", default=[], metavar="FILE_OR_DIR")
    p.set_defaults(func=cmd_plugins)


def cmd_plugins(args: argparse.Namespace) -> int:
    from golfplan.registry import Registry

    reg = Registry(plugin_paths=args.plugin_path)
    if args.action == "show":
        if not args.name:
            raise GolfplanError("plugins show needs a NAME")
        cls = reg.get(args.name)
        info = cls.info() | {"origin": reg.origins[cls.name], "doc": (sys.modules[cls.__module__].__doc__ or "").strip()}
        if args.json:
            print(json.dumps(info, indent=2))
            return EXIT_OK
        print(f"{info['name']}: {info['summary']}")
        print(f"  slot:          {', '.join(info['slot']) or '-'}")
        print(f"  compile-safe:  {'yes' if info['compile_safe'] else 'no: ' + (info['unsafe_reason'] or '')}")
        if info["conflicts"]:
            print(f"  conflicts:     {', '.join(info['conflicts'])}")
        if info["requires"]:
            print(f"  requires:      {', '.join(info['requires'])}")
        print("  params:" + ("" if cls.params else "        (none)"))
        for k, v in cls.params.items():
            print(f"    {k} = {v.describe()}" + (f"  {v.help}" if v.help else ""))
        print(f"  seed refs:     {', '.join(info['seed_refs']) or '-'}")
        print(f"  seed result:   {info['seed_result'] or '-'}")
        print(f"  origin:        {info['origin']} ({info['module']})")
        if info["doc"]:
            print()
            print("\n".join("  " + line for line in info["doc"].splitlines()))
        return EXIT_OK
    infos = [reg.get(n).info() | {"origin": reg.origins[n]} for n in reg.names()]
    if args.json:
        print(json.dumps(infos, indent=2))
        return EXIT_OK
    rows = [(i["name"], ",".join(i["slot"]) or "-", "yes" if i["compile_safe"] else "NO",
             ", ".join(f"{k}={v['default']}" for k, v in i["params"].items()) or "-", i["summary"]) for i in infos]
    heads = ("name", "slot", "compile", "params", "summary")
    widths = [max(len(h), *(len(r[c]) for r in rows)) if rows else len(h) for c, h in enumerate(heads)]
    widths[3] = min(widths[3], 36)
    print("  ".join(h.ljust(w) for h, w in zip(heads, widths)).rstrip())
    for r in rows:
        cells = list(r)
        if len(cells[3]) > widths[3]:
            cells[3] = cells[3][: widths[3] - 1] + "…"
        print("  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip())
    print(f"\n{len(rows)} plugins. `golfplan plugins show NAME` for one in full.")
    return EXIT_OK


# ---- golfplan data ----------------------------------------------------------------


def add_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="build the embedded dataset or fetch the challenge's shards")
    dsub = p.add_subparsers(dest="data_cmd", required=True)
    b = dsub.add_parser("build", help="build the embedded default dataset (Python's own docs) now")
    b.add_argument("--vocab-size", type=int, default=1024)
    b.add_argument("--force", action="store_true", help="rebuild even when cached")
    b.set_defaults(func=cmd_data_build)
    i = dsub.add_parser("info", help="where the embedded dataset lives and what it holds")
    i.add_argument("--vocab-size", type=int, default=1024)
    i.set_defaults(func=cmd_data_info)
    f = dsub.add_parser("fetch", help="download the challenge's FineWeb shards (needs huggingface_hub)")
    f.add_argument("--variant", default="sp1024", help="tokenizer variant: sp1024, sp4096, sp8192")
    f.add_argument("--train-shards", type=int, default=1, help="number of training shards (100M tokens each)")
    f.add_argument("--dest", default="data", help="local folder (default: ./data)")
    f.add_argument("--repo", default="willdepueoai/parameter-golf", help="Hugging Face dataset repo")
    f.add_argument("--remote-prefix", default="datasets", help="folder of the repo holding the data")
    f.set_defaults(func=cmd_data_fetch)


def cmd_data_build(args: argparse.Namespace) -> int:
    from golfplan.core import corpus

    path = corpus.build(args.vocab_size, force=args.force)
    print(json.dumps({"path": str(path)} | corpus.meta(args.vocab_size), indent=2))
    return EXIT_OK


def cmd_data_info(args: argparse.Namespace) -> int:
    from golfplan.core import corpus

    if not corpus.is_built(args.vocab_size):
        print(f"not built yet: {corpus.dataset_dir(args.vocab_size)} (golfplan data build --vocab-size {args.vocab_size})")
        return EXIT_OK
    print(json.dumps({"path": str(corpus.dataset_dir(args.vocab_size))} | corpus.meta(args.vocab_size), indent=2))
    return EXIT_OK


VARIANT_TOKENIZERS = {"sp1024": "fineweb_1024_bpe.model", "sp4096": "fineweb_4096_bpe.model",
                      "sp8192": "fineweb_8192_bpe.model"}


def cmd_data_fetch(args: argparse.Namespace) -> int:
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise GolfplanError("data fetch needs huggingface_hub: pip install 'golfplan[fetch]'") from None
    if args.variant not in VARIANT_TOKENIZERS:
        from golfplan.core.errors import closest

        raise GolfplanError(f"unknown variant '{args.variant}'{closest(args.variant, VARIANT_TOKENIZERS)}")
    dest = Path(args.dest)
    ds = f"fineweb10B_{args.variant}"
    files = [f"datasets/{ds}/fineweb_val_000000.bin"]
    files += [f"datasets/{ds}/fineweb_train_{i:06d}.bin" for i in range(args.train_shards)]
    files += [f"tokenizers/{VARIANT_TOKENIZERS[args.variant]}"]
    for rel in files:
        remote = f"{args.remote_prefix}/{rel}" if args.remote_prefix else rel
        print(f"fetching {remote} ...", flush=True)
        try:
            local = hf_hub_download(repo_id=args.repo, repo_type="dataset", filename=remote, local_dir=str(dest / "_hf"))
        except Exception as e:  # network, auth or missing-file errors from the hub
            raise GolfplanError(f"could not fetch {remote} from {args.repo}: {type(e).__name__}: {str(e).splitlines()[0]}") from None
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(local, target)
    print(f"done: golfplan run --data {dest / 'datasets' / ds} --tokenizer {dest / 'tokenizers' / VARIANT_TOKENIZERS[args.variant]}")
    return EXIT_OK


# ---- main -------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="golfplan", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"golfplan {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_run(sub)
    from golfplan.planner import check

    check.add_parser(sub)
    add_plugins(sub)
    add_data(sub)
    from golfplan.planner import commands

    commands.add_parsers(sub)
    return parser


def _version() -> str:
    import golfplan

    return golfplan.__version__


def main(argv: list[str] | None = None) -> int:
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
