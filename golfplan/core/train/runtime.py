"""Where a run executes: torchrun's environment, the process group, the device, CPU threads.

Everything that reads ``RANK``/``WORLD_SIZE`` or decides how many CPU threads a process may use
lives here, so the trainer, the check and the command line agree.

CPU threads: a run uses exactly ``GOLFPLAN_THREADS`` (or ``OMP_NUM_THREADS``) when set, else the
cores it is allowed on (its affinity mask) shared among torchrun's processes. The count never
depends on the machine's load nor on how many runs share the host, so a step-capped CPU run gives
the same numbers whatever else the machine is doing (CPU kernels reduce in an order that depends on
the thread count, so the count is part of the result and is recorded with it). A study fixes it
for each of its runs (``GOLFPLAN_THREADS``, the study's ``threads``), whether its trials run one at a
time or side by side.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import NoReturn

import torch
import torch.distributed as dist

from golfplan.core.errors import GolfplanError


@dataclass
class Dist:
    enabled: bool = False
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def master(self) -> bool:
        return self.rank == 0


def torchrun_env() -> Dist | None:
    """The process's place under torchrun (RANK/WORLD_SIZE set), or None outside torchrun."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return None
    return Dist(True, int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", "0")))


def is_rank0() -> bool:
    env = torchrun_env()
    return env is None or env.master


def init_distributed(device_pref: str) -> Dist:
    """Join torchrun's process group (NCCL on CUDA, gloo on the CPU); a plain Dist outside torchrun."""
    d = torchrun_env()
    if d is None:
        return Dist()
    if not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and device_pref != "cpu"
        if use_cuda:
            torch.cuda.set_device(d.local_rank)
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return d


def leave_distributed(code: int) -> NoReturn:
    """End a torchrun worker: tear the process group down and exit with ``code``.

    The worker leaves with ``os._exit`` once its output is flushed, skipping interpreter
    finalisation: gloo's C++ threads that outlive ``destroy_process_group`` (the DDP reducer holds
    the group) could otherwise be torn down while Python shuts down and abort the worker
    ("terminate called without an active exception") after a complete run, which torchrun reports
    as a failed job. Everything a run writes is closed by the time this is called, and its last
    collective (the final evaluation's reduction) has completed on every rank, so no barrier is
    needed (one would hang where a single rank failed).
    """
    import gc

    if dist.is_initialized():
        gc.collect()  # drop the trainer's cycles, and with them the DDP reducer's hold on the group
        dist.destroy_process_group()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def pick_device(pref: str, d: Dist) -> torch.device:
    if pref == "auto":
        pref = "cuda" if torch.cuda.is_available() else "cpu"
    if pref.startswith("cuda"):
        if not torch.cuda.is_available():
            raise GolfplanError("this profile/config asks for CUDA but no CUDA device is present; use --profile cpu")
        return torch.device("cuda", d.local_rank if d.enabled else (int(pref.split(":")[1]) if ":" in pref else 0))
    return torch.device("cpu")


def available_cores() -> int:
    """Cores this process may run on (its affinity mask), not the machine's total."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not Linux
        return max(os.cpu_count() or 1, 1)


def cpu_threads(world_size: int = 1) -> int:
    """Threads for one CPU run: GOLFPLAN_THREADS (or OMP_NUM_THREADS), else the cores it may use
    shared among torchrun's processes. Never the machine's load nor the number of runs beside it:
    the count is part of a CPU result."""
    explicit = os.environ.get("GOLFPLAN_THREADS") or os.environ.get("OMP_NUM_THREADS")
    if explicit:
        try:
            n = int(explicit)
        except ValueError:
            raise GolfplanError(f"GOLFPLAN_THREADS/OMP_NUM_THREADS must be a positive integer, got {explicit!r}") from None
        if n <= 0:
            raise GolfplanError(f"GOLFPLAN_THREADS/OMP_NUM_THREADS must be a positive integer, got {explicit!r}")
        return n
    return max(available_cores() // max(world_size, 1), 1)


def set_cpu_threads(world_size: int = 1) -> int:
    n = cpu_threads(world_size)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
