"""The study's progress text: one line when a trial starts and one when it ends.

    [4/20] #3 tidal+gqa: val_bpb 2.4301 (ms/step x1.08 baseline), 40 steps, 95 ms/step, 1.05 MB in 12s
        (check 3.1s) | best trial 2.4187 (#1) | elapsed 1m02s, used 58s

When the study's runs are capped by steps rather than time, a technique that makes steps faster
gains nothing in BPB: the line then shows its ms/step as a ratio to the baseline's (measured in
the same study) beside the BPB, as the report does. With trials side by side (``--jobs``) the
lines of different trials interleave; each names its trial (``#3``), and each is printed whole.
"""

from __future__ import annotations

import time
from typing import Any, Iterable

from golfplan.planner.definition import describe_plugins
from golfplan.planner.records import CheckRecord, complete_runs, mean_ms
from golfplan.planner.runner import RunOutcome


def fmt_s(seconds: float) -> str:
    seconds = max(float(seconds), 0.0)
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def money(seconds: float, cost_per_hour: float | None) -> str:
    if cost_per_hour is None:
        return ""
    return f"${seconds / 3600.0 * cost_per_hour:.2f}"


def speed_ratio(ms: float | None, base_ms: float | None) -> str:
    """``x1.08``: the configuration's ms/step over the baseline's ('' when either is unknown)."""
    if not ms or not base_ms:
        return ""
    return f"x{ms / base_ms:.2f}"


def is_step_capped(base_config: dict[str, Any], runs: Iterable[RunOutcome]) -> bool:
    """Runs end at a step count, not a wallclock cap: their BPB does not count a speed benefit."""
    if float(base_config.get("max_wallclock_seconds") or 0.0) <= 0:
        return True
    return any(r.capped_by == "steps" for r in runs)


class Progress:
    """Progress lines of one planner (its study, budget and best trial so far)."""

    def __init__(self, planner: Any) -> None:
        self.p = planner

    def total(self) -> int:
        return self.p.d.trials if self.p.d.mode == "tune" else len(self.p.counted())

    def started(self, number: int, label: str, description: str) -> str:
        done = {t.number for t in self.p.finished()}
        total, n = self.total(), len(done) + self.p.running_rank(number, done)
        return f"[{min(n, total) if self.p.d.mode == 'tune' else n}/{total}] #{number} {label}: {description} ..."

    def short(self, tc: Any) -> str:
        return tc.description if tc.description and tc.description != tc.label else \
            describe_plugins(tc.plugins, self.p.registry)

    def finished(self, number: int, tc: Any, status: str, reason: str, value: float | None,
                 runs: list[RunOutcome], check: CheckRecord | None, cost: float) -> str:
        p = self.p
        if status == "complete":
            what = self._complete(value, runs)
        elif status == "refused":
            what = f"refused: {reason}"
        elif status == "pruned":
            what = reason
        else:
            what = f"failed: {reason}"
        chk = check.seconds if check is not None else 0.0
        cached = check is not None and check.cached
        timing = fmt_s(cost) + (f" (check {chk:.1f}s)" if chk else (" (check cached)" if cached else ""))
        best = p.best()
        best_s = f"best trial {best[1]:.4f} (#{best[0].number})" if best else "best trial —"
        spent = p.spent_s()
        budget = (f"budget {fmt_s(spent)}/{fmt_s(p.d.budget_hours * 3600)}" if p.d.budget_hours is not None
                  else f"used {fmt_s(spent)}")
        cash = money(spent, p.d.cost_per_hour)
        return (f"[{len(p.finished())}/{self.total()}] #{number} {tc.label}: {what} in {timing} | {best_s} | "
                f"elapsed {fmt_s(time.time() - p.t_start)}, {budget}" + (f", {cash}" if cash else ""))

    def _complete(self, value: float | None, runs: list[RunOutcome]) -> str:
        done = complete_runs(runs)
        steps = sum(r.steps or 0 for r in done) / len(done)
        ms = mean_ms(done)
        art = max((r.artifact_bytes or 0) for r in done)
        over = art > self.p.base.config.artifact_limit_bytes
        ratio = ""
        if is_step_capped(self.p.base.config.to_dict(), done):
            ratio = speed_ratio(ms, self.p.baseline_ms())
        return (f"val_bpb {value:.4f}" + (f" (mean of {len(done)})" if len(done) > 1 else "")
                + (f" (ms/step {ratio} baseline)" if ratio else "") + f", {steps:.0f} steps"
                + (f", {ms:.0f} ms/step" if ms else "") + (f", {art / 1e6:.2f} MB" if art else "")
                + (" OVER THE ARTIFACT LIMIT" if over else ""))
