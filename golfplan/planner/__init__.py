"""The planner: Optuna studies over the registry's techniques.

Uses ``golfplan.core``, ``golfplan.registry`` and ``golfplan.check``; never imports a concrete plugin.

    study       the Planner: create or resume a study; check, run, record and tell each trial
    loop        its loop over trials: one after another, or --jobs side by side
    records     what a trial and a check record (TrialRecord, CheckRecord), to and from Optuna attributes
    hosts       what fits the host: trials side by side (--jobs), CPU threads per run, GPUs per trial
    definition  what a study is (StudyDef), configuration keys
    configs     the configurations each mode runs, a trial's label and outcome
    space       the search space from the plugins' metadata (slots, ordered params, forbidden subsets)
    checks      the preflight as a study runs it, remembered verdicts, the screening of the space
    runner      the runner API (Job, RunOutcome) and the default `golfplan run` subprocess runner
    procs       protected child processes: process groups, hard limits, how a child ended
    liveness    owners, heartbeats, and the trials of planners that died
    resume      creating or resuming a study: the same definition and resolved config
    storage     Optuna storages from URLs (passwords masked), the study's attributes
    budget      time spent and the next trial's estimate
    progress    the progress lines
    stats       noise, Welch's t-test, verdicts
    report      markdown, CSV, best config; plots (plots.py)
    waves       ablate -> greedy stack -> tune
    strategy    stack one at a time, re-test the close calls, then tune
    ladder      the plan on the cheapest rung, its survivors promoted up a ladder of profiles

The programmatic API (imported lazily, so ``golfplan run`` does not pay for Optuna):

    from golfplan.planner import Planner, StudyDef, Job, RunOutcome, base_spec, write_report
"""

from __future__ import annotations

from typing import Any

_API = {
    "Planner": "golfplan.planner.study",
    "StudyDef": "golfplan.planner.definition",
    "base_spec": "golfplan.planner.resume",
    "Job": "golfplan.planner.runner",
    "RunOutcome": "golfplan.planner.runner",
    "write_report": "golfplan.planner.report",
}

__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'golfplan.planner' has no attribute '{name}'")
