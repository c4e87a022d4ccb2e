"""What fits the host: how many trials a planner runs side by side (``--jobs``), how many CPU threads
each run uses, and which GPUs each may see.

**CPU threads are the study's, never the host's load or the number of trials beside it.** CPU
kernels sum in an order that depends on the thread count, so the count is part of a CPU result: a
study fixes it (``threads``, default 1; on the ``cpu`` profile one thread was also the faster, 937
against 1,077 ms/step with two on a 2-core machine, issue 18) and every run of the study gets it
(``GOLFPLAN_THREADS``), whether it runs alone or beside others. So ``--jobs 1`` and ``--jobs 2``
give every configuration and seed the same val_bpb; only the wall time differs.

**Jobs.** The default fits the host: on a CPU profile as many trials as the usable cores (the
process's affinity mask) hold runs of ``threads`` x ``nproc`` threads; on a GPU profile one trial per
``nproc`` visible GPUs, each trial given its own (``CUDA_VISIBLE_DEVICES``); with a custom runner 1
(a simulator gains nothing from threads, and a cluster launcher says what it can take with
``--jobs``). ``--jobs N`` (``jobs:`` in a study file) sets it; it is not part of a study's identity:
which params a tune study's trials get is decided by its ``batch`` (a fixed number, default 2, never
the host's; :mod:`golfplan.planner.loop`), so a study asks the same trials whatever ``jobs`` is.
"""

from __future__ import annotations

import os
from typing import Any

from golfplan.planner.definition import StudyDef, StudyError


def cuda_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # noqa: BLE001 - no torch or a broken driver: no GPU to plan for
        return False


def runs_on_cpu(config: Any) -> bool:
    """Whether a run of this resolved config trains on the CPU (``device: cpu``, or ``auto`` here
    without CUDA)."""
    device = str(getattr(config, "device", "auto"))
    return device == "cpu" or (device == "auto" and not cuda_available())


def visible_gpus() -> list[str]:
    """The GPUs this process may hand to its children, as CUDA_VISIBLE_DEVICES entries."""
    given = os.environ.get("CUDA_VISIBLE_DEVICES")
    if given is not None:
        return [g.strip() for g in given.split(",") if g.strip()]
    if not cuda_available():
        return []
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def default_jobs(d: StudyDef, config: Any, custom_runner: bool) -> int:
    if custom_runner:
        return 1
    if runs_on_cpu(config):
        from golfplan.core.train.runtime import available_cores

        return max(available_cores() // (d.threads * d.nproc), 1)
    return max(len(visible_gpus()) // d.nproc, 1)


def cpu_threads(d: StudyDef, config: Any) -> int | None:
    """The CPU threads of each run of the study (None: a GPU run decides its own)."""
    return d.threads if runs_on_cpu(config) else None


def gpu_slots(jobs: int, d: StudyDef, config: Any, custom_runner: bool) -> list[list[str] | None]:
    """The GPUs each of ``jobs`` side-by-side trials may see (None: no restriction, the default
    runner on one trial at a time, a CPU run, or a custom runner that places its own runs)."""
    if jobs <= 1 or custom_runner or runs_on_cpu(config):
        return [None] * jobs
    gpus = visible_gpus()
    if jobs * d.nproc > len(gpus):
        raise StudyError(f"--jobs {jobs} with --nproc {d.nproc} needs {jobs * d.nproc} GPUs; this host has "
                         f"{len(gpus)}: lower --jobs")
    return [gpus[i * d.nproc:(i + 1) * d.nproc] for i in range(jobs)]
