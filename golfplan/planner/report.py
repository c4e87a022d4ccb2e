"""Reports of a study: the seed's markdown table, a CSV of every run, PNG plots, the best config.

Trials of the same configuration (same plugins, params and config keys) are pooled into one
row, so repeats, retries and a sampler's re-proposals all add seeds to that configuration.

    | # | Experiment | Description | BPB | Steps | Delta | Status |

BPB is the final round-trip val_bpb, ``mean ± std (n=k)`` with repeats; Delta is against the
baseline row with Welch's p when both have two runs or more; Status is the verdict word of
:mod:`golfplan.planner.stats` (Winner, Slight help, Neutral, Worse, Broken, Refused, plus
Baseline and Pruned). A configuration over the artifact limit is never the best and its
status says so.

When the study's runs are capped by steps (the cpu profile; a result's ``capped_by: steps``), a
technique whose benefit is speed gains nothing in BPB: the table then has a column beside the BPB
with each configuration's ms/step over the baseline's (``x0.85``: 15 % faster), and the report says
once that speed is not counted in the BPB.

The best configuration is the best feasible row, unless the study records a chosen one (the final
stack of a ``stack`` study, which is what stacking concluded, not whichever candidate measured
lowest). The study of a ladder's rung says how far it agrees with the rung below (Spearman's rank
correlation of their mean BPBs), loudly when it disagrees.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from golfplan.planner.progress import fmt_s, is_step_capped, speed_ratio
from golfplan.planner.records import (Chosen, RungRecord, TrialRecord, base_config, baseline_key, complete_runs,
                                      mean_ms)
from golfplan.planner.runner import RunOutcome
from golfplan.planner.stats import (BASELINE, BROKEN, PRUNED, REFUSED, Summary, Verdict, summarize, verdict)


@dataclass
class ConfigRow:
    key: str
    label: str
    exp_id: str
    description: str
    plugins: dict[str, dict[str, Any]]
    config: dict[str, Any]
    first: int  # the first trial number of this configuration
    trials: list[int] = field(default_factory=list)
    runs: list[RunOutcome] = field(default_factory=list)
    run_trials: list[int] = field(default_factory=list)  # the trial of each run
    status: str = ""  # complete | pruned | refused | failed
    reason: str = ""
    failure: str = ""  # of a refused row: refused, or how its check ended (crash | timeout | oom)
    summary: Summary | None = None
    steps: float | None = None
    ms_per_step: float | None = None
    artifact_bytes: int | None = None
    speed: str = ""  # ms/step over the baseline's (x1.08), when known
    feasible: bool = True
    is_baseline: bool = False
    verdict: Verdict | None = None
    seed_ref: dict[str, Any] = field(default_factory=dict)

    @property
    def values(self) -> list[float]:
        return [float(r.val_bpb) for r in complete_runs(self.runs) if r.val_bpb is not None]

    @property
    def word(self) -> str:
        if self.status == "refused":
            return REFUSED
        if self.status == "failed":
            return BROKEN
        if self.status == "pruned":
            return PRUNED
        if self.is_baseline:
            return BASELINE
        return self.verdict.word if self.verdict else "—"

    def status_cell(self) -> str:
        word = self.word
        if self.status == "refused":
            if self.failure in ("crash", "timeout", "oom"):
                return f"{word}: check {self.failure}"
            check = self.reason.split(":", 1)[0] if ":" in self.reason else "check"
            return f"{word}: {check}"
        if self.status == "failed":
            kind = next((r.failure for r in self.runs if r.failure), "") or "failed"
            return f"{word}: {kind.replace('_', ' ')}"
        if not self.feasible:
            return f"{word}, over the artifact limit"
        return word


def collect(study: Any, alpha: float = 0.05, default_floor: float = 0.002,
            experiments: list[Any] | None = None) -> tuple[list[ConfigRow], ConfigRow | None]:
    """Pool the study's trials by configuration and judge each against the baseline."""
    import optuna

    S = optuna.trial.TrialState
    base_key = baseline_key(study)
    limit = _limit(study)
    seed_refs = {e.id: e.seed for e in (experiments or [])}
    rows: dict[str, ConfigRow] = {}
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        rec = TrialRecord.of(t)
        if t.state not in (S.COMPLETE, S.PRUNED) or not rec.key or rec.status not in (
                "complete", "pruned", "refused", "failed"):
            continue
        row = rows.get(rec.key)
        if row is None:
            row = rows[rec.key] = ConfigRow(rec.key, rec.label, rec.exp_id, rec.description, rec.plugins, rec.config,
                                            t.number)
            row.seed_ref = dict(seed_refs.get(row.exp_id) or {})
        row.trials.append(t.number)
        row.runs += rec.runs
        row.run_trials += [t.number] * len(rec.runs)
        if rec.status in ("refused", "failed", "pruned") and not row.reason:
            row.reason = rec.reason
            row.failure = rec.failure if rec.status == "refused" else ""
        row.status = _merge_status(row.status, rec.status)
    for row in rows.values():
        done = complete_runs(row.runs)
        row.summary = summarize(row.values)
        if done:
            row.status = "complete"
            row.steps = sum(r.steps or 0 for r in done) / len(done)
            row.ms_per_step = mean_ms(done)
            sizes = [r.artifact_bytes for r in done if r.artifact_bytes]
            row.artifact_bytes = max(sizes) if sizes else None
            row.feasible = row.artifact_bytes is None or row.artifact_bytes <= limit
        row.is_baseline = row.key == base_key
    base = rows.get(base_key) if base_key else None
    for row in rows.values():
        if row.status == "complete" and not row.is_baseline:
            row.verdict = verdict(row.values, base.values if base else [], alpha, default_floor)
        if row.status == "complete":
            row.speed = speed_ratio(row.ms_per_step, base.ms_per_step if base else None)
    return list(rows.values()), base


def step_capped(study: Any, rows: list[ConfigRow]) -> bool:
    """The study's runs end at a step count: BPB does not count a technique's speed."""
    base = base_config(study) or {"max_wallclock_seconds": 1.0}
    return is_step_capped(base, [run for r in rows for run in r.runs])


def chosen_key(study: Any) -> str | None:
    """The configuration a strategy chose for this study (the final stack), if it recorded one."""
    return Chosen.of(study).key or None


def _merge_status(old: str, new: str) -> str:
    order = ["", "refused", "failed", "pruned", "complete"]
    return new if order.index(new) > order.index(old or "") else old


def _limit(study: Any) -> int:
    from golfplan.core.config import ARTIFACT_LIMIT_BYTES

    return int(base_config(study).get("artifact_limit_bytes") or ARTIFACT_LIMIT_BYTES)


def ranked(rows: list[ConfigRow]) -> list[ConfigRow]:
    """Feasible complete rows by mean BPB, then over-limit ones, pruned, broken, refused."""
    def key(r: ConfigRow) -> tuple:
        group = {"complete": 0 if r.feasible else 1, "pruned": 2, "failed": 3, "refused": 4}.get(r.status, 5)
        return (group, r.summary.mean if r.summary else math.inf, r.first)
    return sorted(rows, key=key)


def best_row(rows: list[ConfigRow], chosen: str | None = None) -> ConfigRow | None:
    """The chosen configuration's row when ``chosen`` (a key) names a complete one, else the best
    feasible row."""
    pick = next((r for r in rows if chosen and r.key == chosen and r.status == "complete"), None)
    if pick is not None:
        return pick
    ok = [r for r in rows if r.status == "complete" and r.feasible and r.summary]
    return min(ok, key=lambda r: (r.summary.mean, r.first)) if ok else None


# ---- markdown ----------------------------------------------------------------------------


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


SPEED_HEAD = "ms/step vs baseline"


def markdown_table(rows: list[ConfigRow], numbering: str = "trial", speed: bool = False) -> str:
    """The seed's table; ``speed`` (step-capped runs) adds each row's ms/step ratio beside its BPB."""
    heads = ["#", "Experiment", "Description", "BPB"] + ([SPEED_HEAD] if speed else []) + ["Steps", "Delta", "Status"]
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for r in rows:
        num = r.exp_id if numbering == "exp" and r.exp_id else str(r.first)
        bpb = r.summary.fmt() if r.summary else "—"
        steps = f"{r.steps:.0f}" if r.steps is not None else "—"
        delta = r.verdict.fmt_delta() if r.verdict else ("—" if not r.is_baseline else "0")
        ratio = [r.speed or "—"] if speed else []
        cells = [_cell(num), _cell(r.label), _cell(r.description), bpb, *ratio, steps, _cell(delta),
                 _cell(r.status_cell())]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def speed_note(rows: list[ConfigRow]) -> str:
    steps = sorted({round(r.steps) for r in rows if r.steps is not None})
    at = f" ({steps[0]} steps)" if len(steps) == 1 else ""
    return (f"Runs are capped by steps{at}, not by time: a technique's speed benefit is not counted in its BPB. "
            f"The '{SPEED_HEAD}' column gives its ms/step over the baseline's, measured in this study "
            f"(x0.85: 15 % faster per step).")


def markdown_report(study: Any, definition: Any, rows: list[ConfigRow], base: ConfigRow | None,
                    spent_s: float, plots: list[str] | None = None, best_yaml: str | None = None) -> str:
    from golfplan.planner.stats import noise_floor

    d = definition
    speed = step_capped(study, rows)
    out = [f"# Study {d.name}", ""]
    if d.description:
        out += [d.description, ""]
    n_runs = sum(len(r.runs) for r in rows)
    money = f", ${spent_s / 3600 * d.cost_per_hour:.2f} at ${d.cost_per_hour}/h" if d.cost_per_hour is not None else ""
    out.append(f"Mode {d.mode}, profile {d.profile or 'default'}, {len(rows)} configurations, {n_runs} runs, "
               f"{d.repeats} seed(s) per trial; time used {fmt_s(spent_s)}{money}.")
    if base and base.summary:
        floor = noise_floor(base.values, d.noise_floor)
        how = "std of the baseline's repeats" if base.summary.n >= 2 else "assumed: the baseline has one run"
        out.append(f"Baseline {base.summary.fmt()}; noise floor {floor:.4f} BPB ({how}); Welch t-test at "
                   f"alpha {d.alpha}.")
    if speed:
        out.append(speed_note(rows))
    rung = RungRecord.of(study)
    if rung is not None and rung.below:
        text = rung.text()
        out += ["", f"Ladder: {len(rung.promoted)} configurations promoted from study {rung.below}; "
                + (f"**{text}**" if rung.disagrees else text) + "."]
    out += ["", markdown_table(ranked(rows), "exp" if d.mode != "tune" else "trial", speed), ""]
    notes = [r for r in rows if r.reason and r.status in ("refused", "failed", "pruned")]
    if notes:
        out += ["Reasons:", ""]
        out += [f"- {r.label} (#{r.first}): {r.reason}" for r in notes]
        out.append("")
    with_seed = [r for r in rows if r.seed_ref]
    if with_seed:
        out += ["Against the seed log:", "", "| # | Experiment | seed BPB | seed status | here BPB | here status |",
                "|---|---|---|---|---|---|"]
        for r in sorted(with_seed, key=lambda r: r.first):
            ref = r.seed_ref
            out.append(f"| {_cell(r.exp_id)} | {_cell(r.label)} | {ref.get('bpb', '—')} | {_cell(ref.get('status', '—'))} | "
                       f"{r.summary.fmt() if r.summary else '—'} | {_cell(r.status_cell())} |")
        out.append("")
    chosen = chosen_key(study)
    best = best_row(rows, chosen)
    if best:
        what = "Chosen configuration (the final stack)" if chosen and best.key == chosen else "Best feasible configuration"
        out += [f"{what}: {best.label} (#{best.first}), BPB {best.summary.fmt()}"
                + (f", ms/step {best.speed} the baseline's" if speed and best.speed else "")
                + f", artifact {best.artifact_bytes or 0:,} bytes."]
    if best_yaml:
        out += ["", "```yaml", best_yaml.rstrip(), "```"]
    if plots:
        out += [""] + [f"![{Path(p).stem}]({Path(p).name})" for p in plots]
    return "\n".join(out) + "\n"


def verdict_legend() -> str:
    return ("Winner: significantly better (Welch p < alpha) by more than the noise floor; Slight help: better by "
            "more than the floor on a single run, or significantly but by less than the floor; Neutral: neither; "
            "Worse: significantly worse (single run: by more than the floor); Broken: every run failed; Refused: "
            "the preflight refused it.")


# ---- CSV -----------------------------------------------------------------------------------

CSV_FIELDS = ["trial", "config_key", "experiment", "exp_id", "plugins", "config", "seed", "status", "failure",
              "reason", "val_bpb", "val_loss", "steps", "ms_per_step", "artifact_bytes", "model_bytes", "code_bytes",
              "params", "train_time_s", "wallclock_s", "threads", "capped_by", "concurrent", "run_dir",
              "config_status", "delta", "p"]


def csv_text(rows: list[ConfigRow]) -> str:
    import json

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore")
    w.writeheader()
    for r in sorted(rows, key=lambda r: r.first):
        common = {"config_key": r.key, "experiment": r.label, "exp_id": r.exp_id,
                  "plugins": json.dumps(r.plugins, sort_keys=True), "config": json.dumps(r.config, sort_keys=True),
                  "config_status": r.word, "delta": f"{r.verdict.delta:.6f}" if r.verdict and r.verdict.delta is not None else "",
                  "p": f"{r.verdict.p:.4g}" if r.verdict and r.verdict.p is not None else ""}
        if not r.runs:
            w.writerow(common | {"trial": r.first, "status": r.status, "reason": r.reason})
        for trial, run in zip(r.run_trials, r.runs):
            w.writerow(common | {k: v for k, v in run.to_dict().items() if k in CSV_FIELDS} | {"trial": trial})
    return buf.getvalue()


# ---- the best configuration as a run config -------------------------------------------------


def best_config_yaml(planner: Any, row: ConfigRow) -> str:
    """A YAML file ``golfplan run --config`` accepts: profile, plugins with params, config keys."""
    import yaml

    spec = planner.spec_for(row.plugins, row.config)
    data = spec.to_yaml_dict()
    data.pop("progress_bar", None)
    what = "chosen" if row.key == chosen_key(planner.study) else "best feasible"
    head = (f"# {what} configuration of study '{planner.d.name}': {row.label} (trial #{row.first})\n"
            f"# val_bpb {row.summary.fmt() if row.summary else '—'}, artifact {row.artifact_bytes or 0:,} bytes\n"
            f"# run it: golfplan run --config THIS_FILE\n")
    if getattr(planner, "threads", None):  # a CPU result depends on the thread count: say how to repeat it
        head += (f"# its runs used {planner.threads} CPU thread(s): GOLFPLAN_THREADS={planner.threads} "
                 f"golfplan run --config THIS_FILE gives the same val_bpb\n")
    return head + yaml.safe_dump(data, sort_keys=False)


def write_report(planner: Any, out_dir: str | Path, plots: bool = True) -> dict[str, Any]:
    """Write STUDY.md, STUDY.csv, the plots and best.yaml under ``out_dir``; return paths and rows."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    d = planner.d
    rows, base = collect(planner.study, d.alpha, d.noise_floor, d.experiments)
    best = best_row(rows, chosen_key(planner.study))
    best_yaml = best_config_yaml(planner, best) if best else None
    files: dict[str, Any] = {"rows": rows, "base": base, "best": best}
    if best_yaml:
        (out / "best.yaml").write_text(best_yaml)
        files["best_yaml"] = str(out / "best.yaml")
    if plots:
        from golfplan.planner.plots import write_plots

        pngs = write_plots(planner.study, rows, out, ranked(rows))
    else:
        pngs = []
    md = markdown_report(planner.study, d, rows, base, planner.spent_s(), pngs, best_yaml)
    md += "\n" + verdict_legend() + "\n"
    (out / f"{d.name}.md").write_text(md)
    (out / f"{d.name}.csv").write_text(csv_text(rows))
    files.update(markdown=str(out / f"{d.name}.md"), csv=str(out / f"{d.name}.csv"), plots=pngs, text=md)
    return files
