"""What a run reports: its result, and the ways it can end without one.

A failure carries its *kind* from where it is raised; nothing downstream guesses it from text:

    nan           the loss or a validation became NaN/inf
    no_learning   the loss is zero, does not fall, or the BPB is no better than untrained
    timeout       the run passed its time limit
    oom           out of memory: CUDA (torch.OutOfMemoryError) or the host (MemoryError, or the
                  RuntimeError torch's CPU allocator raises, told by its message: it has no type of its own)
    crash         any other exception (the reason is its first line)
    refused       the preflight check refused the configuration (nothing was trained)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

FAILURE_KINDS = ("nan", "no_learning", "timeout", "oom", "crash", "refused")
# torch's CPU allocator fails with a plain RuntimeError (c10::Error) whose message says this
# (torch 2.13: "[enforce fail at alloc_cpu.cpp:...] ... DefaultCPUAllocator: can't allocate memory: you
# tried to allocate N bytes"); golfplan.planner.procs reads it from a dead child's last error line too.
CPU_ALLOCATOR_OOM = "DefaultCPUAllocator: can't allocate memory"


class RunFailed(Exception):
    """Raised inside a run to end it as ``failed`` with a kind and a reason."""

    def __init__(self, kind: str, reason: str) -> None:
        if kind not in FAILURE_KINDS:
            raise ValueError(f"unknown failure kind {kind!r}")
        super().__init__(reason)
        self.kind = kind


class RunPruned(Exception):
    """Raised when ``should_stop`` asks to stop a hopeless run."""


def exception_kind(e: BaseException) -> str:
    """The failure kind of an exception that escaped a run: oom or crash."""
    import torch

    if isinstance(e, (MemoryError, torch.OutOfMemoryError)):
        return "oom"
    if isinstance(e, RuntimeError) and CPU_ALLOCATOR_OOM in str(e):
        return "oom"
    return "crash"


def exception_reason(e: BaseException) -> str:
    first = (str(e).strip().splitlines() or [""])[0][:300]
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


@dataclass
class RunResult:
    status: str = "complete"  # complete | failed | pruned
    reason: str = ""
    failure: str = ""  # one of FAILURE_KINDS when failed
    val_loss: float | None = None  # after the artifact round trip
    val_bpb: float | None = None
    pre_export_val_loss: float | None = None
    pre_export_val_bpb: float | None = None
    untrained_val_bpb: float | None = None  # BPB of a uniform prediction (what an untrained model scores)
    steps: int = 0
    ms_per_step: float | None = None
    train_time_s: float = 0.0
    calibration_s: float = 0.0  # charged to the training clock
    eval_time_s: float | None = None  # the final evaluation, on the evaluation clock
    eval_warmup_s: float | None = None  # its compile warm-up on random tokens, off the clock
    wallclock_s: float = 0.0
    tokens_per_s: float | None = None
    artifact_bytes: int | None = None  # code + compressed model
    model_bytes: int | None = None
    artifact_format: str = ""  # the export chain's format (int8_zlib: the challenge's)
    code_bytes: int | None = None
    params: int | None = None
    peak_memory_mib: float | None = None
    compiled: bool = False
    flash_attention: bool | None = None
    device: str = ""
    threads: int | None = None  # CPU threads (part of a CPU result: kernels reduce by thread count)
    capped_by: str = ""  # steps | wallclock: what ended the training loop
    world_size: int = 1
    first_train_loss: float | None = None
    last_train_loss: float | None = None
    val_history: list[dict[str, float]] = field(default_factory=list)
    plugins: dict[str, dict[str, Any]] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    run_dir: str = ""

    def fail(self, kind: str, reason: str) -> None:
        self.status, self.failure, self.reason = "failed", kind, reason
        self.val_loss = self.val_bpb = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str)
