"""The preflight check (``golfplan check``), below the planner and the command line: ``golfplan run``,
the planner and the plugin tests all call it.

``run_checks`` runs the five stages of :mod:`golfplan.check.stages`; ``trace_techniques`` is the
trace stage on its own (:mod:`golfplan.check.trace`); ``preflight`` is what ``golfplan run``
does before it trains.
"""

from __future__ import annotations

import sys
from typing import Any

from golfplan.check.stages import CheckReport, CheckResult, format_result, run_checks
from golfplan.check.trace import CheckFailed, trace_techniques
from golfplan.core.config import RunSpec

__all__ = ["CheckFailed", "CheckReport", "CheckResult", "format_result", "preflight", "run_checks",
           "trace_techniques"]


def preflight(spec: RunSpec, registry: Any, quiet: bool = False, world_size: int | None = None,
              timeout_s: float | None = None) -> CheckReport:
    """The checks ``golfplan run`` does before training, reported on standard error. Under torchrun
    only the static check runs on each rank (``golfplan run --nproc`` ran the full checks before it
    launched torchrun). A CPU run skips the smoke stage: it is its own smoke test. Each stage has
    its time limit (``timeout_s``, else ``golfplan.check.stages.stage_limit_s``)."""
    from golfplan.core.train.runtime import torchrun_env

    env = torchrun_env()
    say = (lambda r: None) if quiet else (lambda r: print(format_result(r), file=sys.stderr, flush=True))
    if not quiet:
        print(f"preflight: {', '.join(spec.plugins) or 'baseline'} on profile {spec.profile}", file=sys.stderr)
    report = run_checks(spec, registry, only_static=env is not None,
                        world_size=env.world_size if env is not None else world_size,
                        smoke=spec.config.device != "cpu", log=say, timeout_s=timeout_s)
    if not report.ok and not quiet:
        print(f"error: preflight failed, not training: {report.reason}", file=sys.stderr)
    return report
