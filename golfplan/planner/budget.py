"""A study's budget: the machine time its trials used, and what the next trial will need.

Spent time counts every trial of the study (checks and runs, every worker, every session): a
finished trial its ``cost_s``, a running one the time since it started; runs copied from another
study were paid there. The next trial needs the costliest run seen x ``repeats`` + a check; before
any run of the study, the cap x 1.3 + 30 s (or the profile's measured ms/step x the steps), and
for a step-capped run of no measured speed nothing is assumed: the first trial starts and is
measured.
"""

from __future__ import annotations

import time
from typing import Any, Iterable

from golfplan.planner.progress import fmt_s

CHECK_GUESS_S = 10.0  # a preflight never measured in this study


def spent_s(trials: Iterable[Any]) -> float:
    import optuna

    total, now = 0.0, time.time()
    for t in trials:
        if t.state == optuna.trial.TrialState.RUNNING:
            if t.datetime_start is not None:
                total += max(now - t.datetime_start.timestamp(), 0.0)
        elif not t.user_attrs.get("copied_from"):
            total += float(t.user_attrs.get("cost_s") or 0.0)
    return total


def first_run_s(config: Any) -> float:
    """A run's seconds before any was measured: 0 when nothing is known (step-capped, no ms/step)."""
    if config.max_wallclock_seconds > 0:
        return config.max_wallclock_seconds * 1.3 + 30.0
    if config.ms_per_step_hint > 0:
        return config.iterations * config.ms_per_step_hint / 1000.0 * 1.3 + 30.0
    return 0.0


def estimate_next_s(finished: Iterable[Any], config: Any, repeats: int, checks: str) -> float:
    """Seconds the next trial needs, from the study's ``finished`` (complete or pruned) trials: the
    costliest run seen (a run's own wallclock, or its trial's cost per run, which also counts the
    planner's time around it, as the budget does) x ``repeats``, + a check."""
    per_run, measured = 0.0, []
    for t in finished:
        runs = t.user_attrs.get("runs") or []
        walls = [float(r.get("wallclock_s") or 0.0) for r in runs if r.get("status") == "complete"]
        per_run = max([per_run, *walls])
        if runs and t.user_attrs.get("cost_s"):
            per_run = max(per_run, float(t.user_attrs["cost_s"]) / len(runs))
        c = t.user_attrs.get("check") or {}
        if not c.get("cached") and c.get("seconds"):
            measured.append(float(c["seconds"]))
    per_run = per_run or first_run_s(config)
    check = 0.0 if checks == "none" else (max(measured) if measured else CHECK_GUESS_S)
    return per_run * repeats + check


def stop_reason(spent: float, need: float, budget_hours: float | None) -> str:
    """Why no new trial may start ('' when it may)."""
    if budget_hours is None:
        return ""
    budget = budget_hours * 3600.0
    if spent + need <= budget:
        return ""
    return (f"budget: {fmt_s(spent)} of {fmt_s(budget)} spent; the next trial needs ~{fmt_s(need)}, "
            f"so no new trial starts")
