"""The planner: Optuna studies over the registry's techniques.

Uses ``golfplan.core`` and ``golfplan.registry``; never imports a concrete plugin.
The programmatic API (imported lazily, so ``golfplan run`` does not pay for Optuna):

    from golfplan.planner import Planner, StudyDef, Job, RunOutcome, write_report
"""

from __future__ import annotations

from typing import Any

_API = {
    "Planner": "golfplan.planner.study",
    "StudyDef": "golfplan.planner.definition",
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
