"""``golfplan export``: a finished run as the challenge's submission folder.

``golfplan export RUN_DIR [RUN_DIR ...]`` (or ``--study NAME`` for a study's best trial) writes
``OUT/<date>_<name>/`` shaped like the challenge's ``records/track_10min_16mb/<date>_<name>/``:

    train_gpt.py        the packed, self-contained script (golfplan.core.export.packer): its length is the
                        code bytes the run reported
    submission.json     the challenge's fields (author, github_id, name, blurb, date, val_loss,
                        val_bpb, bytes_total, bytes_code, seeds, seed_results, ...) and the legal
                        check's verdicts
    README.md           the configuration, the results of every seed, the techniques with their
                        sources, the legal check, how to reproduce
    train_seed<S>.log   each seed's training log
    requirements.txt    the packages train_gpt.py imports, pinned

All seeds of one configuration are exported together: the run directories given, or, for one
directory, it and its siblings whose result has the same configuration and plugins.
The legal check (``golfplan.check.legal``) runs first; an illegal run is refused with its reason
(exit status 1) unless ``--force``.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from pathlib import Path
from typing import Any, Sequence

from golfplan.cli.options import EXIT_FAILED, EXIT_OK, add_plugin_path
from golfplan.core.errors import GolfplanError

TRACK = "10min_16mb"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a finished run as the challenge's submission folder",
                       description="Write a run (all its seeds) as a records/track_10min_16mb/<date>_<name>/ "
                                   "folder: packed train_gpt.py, submission.json, README.md, logs, requirements.txt.")
    p.add_argument("runs", nargs="*", metavar="RUN_DIR", help="run directories of one configuration (its seeds)")
    p.add_argument("--study", metavar="NAME", help="export the best feasible trial of this study instead")
    p.add_argument("--storage", default=None, metavar="URL", help="the study's storage (default sqlite:///golfplan.db)")
    p.add_argument("--out", default="records/track_10min_16mb", metavar="DIR",
                   help="parent folder of the submission folder (default: records/track_10min_16mb)")
    p.add_argument("--name", help="the submission's name (default: its plugins)")
    p.add_argument("--author", default="", help="submission.json's author")
    p.add_argument("--github-id", default="", help="submission.json's github_id")
    p.add_argument("--reference", metavar="RUN_DIR_OR_BPB",
                   help="the record to beat: run directories, a records folder, or a val_bpb (significance rule)")
    p.add_argument("--force", action="store_true", help="export even when the legal check fails")
    add_plugin_path(p)
    p.set_defaults(func=cmd_export)


# ---- gathering a run ----------------------------------------------------------------------------

def _same_configuration(a: dict[str, Any], b: dict[str, Any]) -> bool:
    drop = ("seed", "data_path", "tokenizer_path")
    ca = {k: v for k, v in (a.get("config") or {}).items() if k not in drop}
    cb = {k: v for k, v in (b.get("config") or {}).items() if k not in drop}
    return ca == cb and a.get("plugins") == b.get("plugins")


def gather(paths: list[str]) -> list[Any]:
    """The complete runs to export: the directories given, or one directory and its siblings of the
    same configuration (other seeds), sorted by seed."""
    from golfplan.check.legal import load_runs

    runs = load_runs(paths)
    if len(paths) == 1 and len(runs) == 1:
        first = runs[0]
        for sib in sorted(first.path.parent.glob("*/result.json")):
            if sib.parent != first.path:
                other = load_runs([sib.parent])[0]
                if other.result.get("status") == "complete" and _same_configuration(first.result, other.result):
                    runs.append(other)
    done = [r for r in runs if r.result.get("status") == "complete"]
    if not done:
        raise GolfplanError(f"no complete run in {', '.join(paths)}: only complete runs can be exported")
    for r in done[1:]:
        if not _same_configuration(done[0].result, r.result):
            raise GolfplanError(f"{r.path} has another configuration than {done[0].path}: export one configuration")
    seen: dict[int, Any] = {}
    for r in done:
        seen.setdefault(r.seed, r)
    return [seen[s] for s in sorted(seen)]


def study_runs(name: str, storage_url: str | None) -> tuple[list[str], list[str]]:
    """Run directories of the study's best feasible trial, and the study's plugin paths."""
    import optuna

    from golfplan.planner.storage import load_definition, open_storage

    storage = open_storage(storage_url)
    d = load_definition(storage, name)
    study = optuna.load_study(study_name=name, storage=storage)
    try:
        best = study.best_trial
    except ValueError:
        raise GolfplanError(f"study '{name}' has no feasible complete trial yet") from None
    runs = best.user_attrs.get("runs") or []
    dirs = [r["run_dir"] for r in runs if r.get("status") == "complete" and r.get("run_dir")]
    if not dirs:
        raise GolfplanError(f"study '{name}': trial {best.number} recorded no run directory")
    return dirs, list(d.plugin_path)


# ---- the folder ------------------------------------------------------------------------------

def _versions(run: Any) -> dict[str, str]:
    """The run's library versions, from its ``start`` event (empty for a run that recorded none)."""
    return dict(run.start.get("versions") or {})


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", text).strip("_")[:80] or "run"


def _mean_std(xs: list[float]) -> tuple[float, float | None]:
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else None)


RECORDS_URL = "https://github.com/openai/parameter-golf/tree/main/records/track_10min_16mb/"


def _source(cls: Any) -> tuple[str, str]:
    """(where a technique comes from, what that source measured for it), from its metadata."""
    if cls.source:
        return f"[{cls.source}]({RECORDS_URL}{cls.source})", cls.source_result
    if cls.seed_refs and tuple(cls.seed_refs) != ("own",):
        return f"golfplan's seed log: {', '.join(cls.seed_refs)}", cls.seed_result
    return "golfplan", cls.seed_result or ""


def submission(runs: list[Any], code: int, name: str, args: argparse.Namespace, techniques: list[Any],
               legal: Any) -> dict[str, Any]:
    from golfplan.check.legal import hardware_of

    loss, loss_sd = _mean_std([float(r.result["val_loss"]) for r in runs])
    bpb, bpb_sd = _mean_std([float(r.result["val_bpb"]) for r in runs])
    sizes = [int(r.get("model_bytes", 0)) + code for r in runs]
    first = runs[0]
    versions = _versions(first)
    out: dict[str, Any] = {
        "author": args.author, "github_id": args.github_id, "name": name,
        "blurb": f"{' + '.join(t.name for t in techniques) or 'the baseline'}, trained and packed by golfplan "
                 f"{versions.get('golfplan', '')}".strip(),
        "date": time.strftime("%Y-%m-%d"), "track": TRACK,
        "val_loss": round(loss, 8), "val_bpb": round(bpb, 8)}
    if loss_sd is not None:
        out.update(val_loss_std=round(loss_sd, 5), val_bpb_std=round(bpb_sd or 0.0, 5))
    out["seeds"] = [r.seed for r in runs]
    out["seed_results"] = {str(r.seed): {
        "val_loss": r.result["val_loss"], "val_bpb": r.result["val_bpb"], "artifact_bytes": size,
        "steps": r.get("steps"), "step_avg_ms": r.get("ms_per_step"), "eval_time_s": r.eval_time_s}
        for r, size in zip(runs, sizes)}
    out.update(artifact_bytes_mean=round(statistics.fmean(sizes)), artifact_bytes_max=max(sizes),
               bytes_total=max(sizes), bytes_code=code,
               train_steps_mean=round(statistics.fmean([r.get("steps", 0) for r in runs]), 2),
               step_avg_ms_mean=round(statistics.fmean([r.get("ms_per_step") or 0.0 for r in runs]), 2),
               hardware=hardware_of(first),
               pytorch_version=versions.get("torch", ""),
               python_version=versions.get("python", ""),  # the packed code is minified for it
               technique_summary=", ".join(repr(t) for t in techniques) or "the challenge baseline",
               compliance={r.name: r.status for r in legal.rules},
               attribution={t.name: _source(type(t))[0] for t in techniques})
    if legal.p_value is not None:
        out["significance_p_value"] = legal.p_value
    return out


def readme(sub: dict[str, Any], runs: list[Any], config: Any, techniques: list[Any], legal: Any) -> str:
    import yaml

    from golfplan.check.legal import format_rule
    from golfplan.core.config import Config
    from golfplan.core.export.packer import DROPPED_KEYS

    n = len(runs)
    std = f", std {sub['val_bpb_std']:.5f}" if "val_bpb_std" in sub else ""
    lines = [f"# {sub['name']}", "",
             f"**val_bpb: {sub['val_bpb']:.5f}** ({n}-seed mean{std}) | **{sub['bytes_total']:,} bytes** "
             f"(code {sub['bytes_code']:,}) | {sub['hardware']} | made with golfplan", "", "## Results", "",
             "| Seed | Steps | ms/step | Pre-quant val_bpb | Round-trip val_bpb | val_loss | Eval s | Artifact |",
             "|------|-------|---------|-------------------|--------------------|----------|--------|----------|"]
    for r in runs:
        s = sub["seed_results"][str(r.seed)]
        ev = f"{s['eval_time_s']:.1f}" if s["eval_time_s"] is not None else "-"
        pre = r.get("pre_export_val_bpb")
        pre_text = f"{pre:.5f}" if pre is not None else "-"
        lines.append(f"| {r.seed} | {s['steps']:,} | {s['step_avg_ms']} | {pre_text} | {s['val_bpb']:.5f} | "
                     f"{s['val_loss']:.5f} | {ev} | {s['artifact_bytes']:,} |")
    lines.append(f"| **Mean** | {sub['train_steps_mean']:,} | {sub['step_avg_ms_mean']} | | "
                 f"**{sub['val_bpb']:.5f}** | {sub['val_loss']:.5f} | | {sub['artifact_bytes_mean']:,} |")
    base = Config()
    keys = {k: v for k, v in config.to_dict().items() if k not in DROPPED_KEYS and v != getattr(base, k)}
    conf = {"plugins": {t.name: dict(t.values) for t in techniques}, **keys}
    lines += ["", "## Configuration", "",
              "The plugins and every config key that differs from the challenge baseline's (baked into "
              "`train_gpt.py`; any key can be overridden by its upper-case environment variable):", "",
              "```yaml", yaml.safe_dump(conf, sort_keys=False).rstrip(), "```", "", "## Techniques", ""]
    if techniques:
        lines += ["| Technique | What it does | Settings | Source | What the source measured |",
                  "|-----------|--------------|----------|--------|--------------------------|"]
        for t in techniques:
            src, measured = _source(type(t))
            settings = ", ".join(f"{k}={v}" for k, v in t.values.items()) or "-"
            lines.append(f"| `{t.name}` | {type(t).summary} | {settings} | {src} | {measured or '-'} |")
    else:
        lines.append("None: the challenge baseline.")
    lines += ["", "## Legality (`golfplan check --legal`)", "", "```"] + [format_rule(r) for r in legal.rules]
    lines += ["```", "", "## Reproducing", "", f"Python {sub['python_version'] or '3'} (the packed code is minified "
              "for the interpreter it was packed with) and:", "", "```bash", "pip install -r requirements.txt"]
    for r in runs:
        v = config.vocab_size
        lines.append(f"DATA_PATH=./data/datasets/fineweb10B_sp{v} "
                     f"TOKENIZER_PATH=./data/tokenizers/fineweb_{v}_bpe.model SEED={r.seed} RUN_ID=seed{r.seed} "
                     f"torchrun --standalone --nproc_per_node={r.get('world_size', 1)} train_gpt.py")
    lines += ["```", "", "`train_gpt.py` writes `logs/$RUN_ID.txt`, and the artifact and `result.json` in the working "
              "directory. It needs DATA_PATH and TOKENIZER_PATH, or the challenge's `./data` layout (golfplan's "
              "embedded dataset: `golfplan data info` says where it is).", "", "## Files", "",
              f"- `train_gpt.py`: the packed script ({sub['bytes_code']:,} bytes: what the run reaches of golfplan's "
              "core and the plugins above, minified with python-minifier, ZPAQ-compressed, base-93, self-extracting)",
              *[f"- `train_seed{r.seed}.log`: seed {r.seed}'s training log" for r in runs],
              "- `submission.json`, `requirements.txt`"]
    return "\n".join(lines) + "\n"


def requirements(third_party: Sequence[str]) -> list[str]:
    """``requirements.txt`` lines for a packed file: zpaq (it decompresses itself) and every
    distribution its modules import, pinned to the versions installed here (torch without its
    local build tag: install the build for your machine). Imports of packages not installed here
    (optional ones) become comments."""
    import importlib.metadata as md

    dists = md.packages_distributions()
    lines: dict[str, str] = {}
    missing: list[str] = []
    for top in sorted(set(third_party) | {"zpaq"}):
        names = dists.get(top)
        if not names:
            missing.append(top)
            continue
        dist = names[0]
        version = md.version(dist)
        local = version.partition("+")
        pin = f"{dist}=={local[0]}"
        if local[2]:
            pin += f"  # built and run with {version}; install the build for your machine"
        lines[dist.lower()] = pin
    out = [lines[k] for k in sorted(lines)]
    out += [f"# optional, not installed where this was packed: {m}" for m in missing]
    return out


def cmd_export(args: argparse.Namespace) -> int:
    from golfplan.check.legal import check_legal, format_rule, run_composition
    from golfplan.core.export.packer import pack

    if bool(args.runs) == bool(args.study):
        raise GolfplanError("give run directories or --study NAME (one of them)")
    paths, plugin_paths = (list(args.runs), list(args.plugin_path))
    if args.study:
        paths, study_paths = study_runs(args.study, args.storage)
        plugin_paths += study_paths
    runs = gather(paths)
    comp = run_composition(runs[0], plugin_paths)
    config, techniques = comp.config, comp.techniques
    packed = pack(config, techniques)
    code = len(packed.code)
    measured = runs[0].get("code_bytes")
    if measured is not None and measured != code:
        print(f"note: the code changed since the run: it reported {measured:,} code bytes, the packed file has "
              f"{code:,} (the export counts the file)")
    legal = check_legal(config, techniques, runs, reference=args.reference)
    if not legal.ok and not args.force:
        print(f"error: not exported: {legal.reason} (--force exports anyway)")
        return EXIT_FAILED
    name = args.name or ("+".join(t.name for t in techniques) or "baseline")
    folder = Path(args.out) / f"{time.strftime('%Y-%m-%d')}_{_slug(name)}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train_gpt.py").write_bytes(packed.code)
    sub = submission(runs, code, name, args, techniques, legal)
    (folder / "submission.json").write_text(json.dumps(sub, indent=2) + "\n")
    (folder / "README.md").write_text(readme(sub, runs, config, techniques, legal))
    for r in runs:
        (folder / f"train_seed{r.seed}.log").write_text(r.log_text)
    (folder / "requirements.txt").write_text("\n".join(requirements(packed.third_party)) + "\n")
    for r in legal.rules:
        print(format_rule(r))
    print(f"exported {len(runs)} seed(s) to {folder}: val_bpb {sub['val_bpb']:.5f}, {sub['bytes_total']:,} bytes "
          f"(train_gpt.py {code:,})" + ("" if legal.ok else f"; LEGAL CHECK FAILED: {legal.reason}"))
    return EXIT_OK
