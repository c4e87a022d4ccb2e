"""A study's budget: the machine time its trials used, and what the next trial will need.

Spent time counts every trial of the study (checks and runs, every worker, every session): a
finished trial its ``cost_s``, a running one the time since it started; runs copied from another
study were paid there. The next trial needs the costliest run seen x ``repeats`` + a check; before
any run of the study, the cap x 1.3 + 30 s (or the profile's measured ms/step x the steps), and
for a step-capped run of no measured speed nothing is assumed: the first trial starts and is
measured. With trials side by side (``--jobs``) each trial counts its own time, and a trial starts
only if it fits beside what the running ones will still spend. A trial asked in a sampling batch and
waiting for its turn (its owner says ``waiting``, :mod:`golfplan.planner.liveness`) has spent nothing
and will spend a whole trial; a running one counts from when it started (its owner's ``since``).
"""

from __future__ import annotations

import time
from typing import Any, Iterable

from golfplan.planner.liveness import started_at
from golfplan.planner.progress import fmt_s
from golfplan.planner.records import TrialRecord

CHECK_GUESS_S = 10.0  # a preflight never measured in this study


def spent_s(trials: Iterable[Any]) -> float:
    import optuna

    total, now = 0.0, time.time()
    for t in trials:
        if t.state == optuna.trial.TrialState.RUNNING:
            rec = TrialRecord.of(t)
            if not (rec.owner or {}).get("waiting"):
                total += max(now - started_at(t, rec, now), 0.0)
        else:
            rec = TrialRecord.of(t)
            total += 0.0 if rec.copied_from else float(rec.cost_s or 0.0)
    return total


def committed_s(trials: Iterable[Any], per_trial: float) -> float:
    """What the trials running now will still spend, each expected to cost ``per_trial`` in all: with
    trials side by side (``--jobs``), a trial that starts must fit beside the ones already running."""
    import optuna

    total, now = 0.0, time.time()
    for t in trials:
        if t.state == optuna.trial.TrialState.RUNNING:
            rec = TrialRecord.of(t)
            ran = 0.0 if (rec.owner or {}).get("waiting") else max(now - started_at(t, rec, now), 0.0)
            total += max(per_trial - ran, 0.0)
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
        rec = TrialRecord.of(t)
        walls = [float(r.wallclock_s or 0.0) for r in rec.done]
        per_run = max([per_run, *walls])
        if rec.runs and rec.cost_s:
            per_run = max(per_run, float(rec.cost_s) / len(rec.runs))
        c = rec.check
        if c is not None and not c.cached and c.seconds:
            measured.append(float(c.seconds))
    per_run = per_run or first_run_s(config)
    check = 0.0 if checks == "none" else (max(measured) if measured else CHECK_GUESS_S)
    return per_run * repeats + check


def stop_reason(spent: float, need: float, budget_hours: float | None, running: float = 0.0) -> str:
    """Why no new trial may start ('' when it may); ``running``: what the trials running now will
    still spend (:func:`committed_s`)."""
    if budget_hours is None:
        return ""
    budget = budget_hours * 3600.0
    if spent + running + need <= budget:
        return ""
    busy = f" (and ~{fmt_s(running)} more by the trials running)" if running >= 1 else ""
    return (f"budget: {fmt_s(spent)} of {fmt_s(budget)} spent{busy}; the next trial needs ~{fmt_s(need)}, "
            f"so no new trial starts")
