"""Running one configuration: the default subprocess runner and the runner API.

A *runner* is any callable ``runner(job: Job) -> RunOutcome | Mapping``. The planner calls it
once per seed of a trial, after the preflight checks passed. The default,
:class:`SubprocessRunner`, starts ``python -m golfplan run --config TRIAL.yaml --no-check`` in
its own process group with a hard time limit, follows ``train.log`` for periodic validation
(``job.report(step, val_bpb)`` returns True when the pruner wants the run stopped), and
classifies how it ended:

    complete                    result.json says complete and the process exited 0
    failed / nan                the loss or the validation became NaN/inf
    failed / no_learning        the loss did not fall, is zero, or the BPB is no better than untrained
    failed / timeout            the run passed its hard limit and was killed
    failed / oom                out of memory (CUDA or host), or killed by SIGKILL from outside
    failed / crash              anything else: the last line of the traceback is the reason
    pruned                      the pruner stopped it at a periodic validation

A custom runner (a cluster launcher, a simulator) returns a mapping with at least ``status``
and ``val_bpb``; the other fields of :class:`RunOutcome` are optional. ``golfplan study --runner
module:function`` (or ``path/to/file.py:function``) loads one.
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.util
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping

from golfplan.core.errors import GolfplanError

VAL_LINE = re.compile(r"^step:(\d+)/\d+ val_loss:(\S+) val_bpb:(\S+)")
FINAL_MARKERS = ("stopping_early", "peak memory")  # what the trainer logs right after its last validation
FINAL_GRACE_S = 1.0
STATUSES = ("complete", "failed", "pruned")
FAILURES = ("nan", "no_learning", "crash", "timeout", "oom")


@dataclass
class Job:
    """One run of a trial: what to train, where, with which seed, for how long at most."""

    study: str
    trial: int
    label: str
    plugins: dict[str, dict[str, Any]]
    spec: dict[str, Any]  # the YAML mapping ``golfplan run --config`` reads (seed and cap included)
    seed: int
    run_dir: str
    timeout_s: float | None = None
    nproc: int = 1
    repeat: int = 0  # index of this seed among the trial's repeats
    report: Callable[[int, float], bool] | None = None  # (step, val_bpb) -> stop now?

    @property
    def config(self) -> dict[str, Any]:
        """Config keys of this run that differ from the profile (seed and wallclock cap included)."""
        return {k: v for k, v in self.spec.items() if k not in ("profile", "plugins", "plugin_path")}


@dataclass
class RunOutcome:
    """How one run ended (a subset of the trainer's RunResult, plus the failure kind)."""

    status: str = "complete"  # complete | failed | pruned
    reason: str = ""
    failure: str = ""  # nan | no_learning | crash | timeout | oom (when failed)
    val_bpb: float | None = None
    val_loss: float | None = None
    steps: int | None = None
    ms_per_step: float | None = None
    artifact_bytes: int | None = None
    model_bytes: int | None = None
    code_bytes: int | None = None
    params: int | None = None
    train_time_s: float | None = None
    wallclock_s: float | None = None
    untrained_val_bpb: float | None = None
    seed: int | None = None
    run_dir: str = ""
    val_history: list[dict[str, float]] = field(default_factory=list)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> "RunOutcome":
        known = {f.name for f in fields(cls)}
        out = cls(**{k: v for k, v in dict(data).items() if k in known})
        if out.status not in STATUSES:
            raise GolfplanError(f"runner returned status {out.status!r}; expected one of {', '.join(STATUSES)}")
        if out.status == "complete":
            if out.val_bpb is None or not math.isfinite(float(out.val_bpb)):
                out.status, out.failure = "failed", "nan"
                out.reason = out.reason or f"runner reported val_bpb {out.val_bpb!r}"
            else:
                out.val_bpb = float(out.val_bpb)
        if out.status == "failed" and not out.failure:
            out.failure = failure_kind(out.reason)
        return out

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("val_history", None)
        return d


Runner = Callable[[Job], "RunOutcome | Mapping[str, Any]"]


def failure_kind(reason: str) -> str:
    r = reason.lower()
    if "nan" in r or "inf" in r.split():
        return "nan"
    if any(s in r for s in ("did not fall", "no better than an untrained", "exactly zero", "nothing is being trained")):
        return "no_learning"
    if "out of memory" in r or "outofmemory" in r or "memoryerror" in r or "cannot allocate" in r:
        return "oom"
    if "timed out" in r or "time limit" in r:
        return "timeout"
    return "crash"


def call_runner(runner: Runner, job: Job) -> RunOutcome:
    """Call ``runner`` and normalise what it returns; an exception is a crash of that run."""
    t0 = time.perf_counter()
    try:
        raw = runner(job)
    except GolfplanError:
        raise
    except Exception as e:  # noqa: BLE001 - a custom runner's bug fails the run, never the study
        return RunOutcome(status="failed", failure="crash", reason=f"runner raised {type(e).__name__}: {e}",
                          seed=job.seed, run_dir=job.run_dir, wallclock_s=round(time.perf_counter() - t0, 3))
    out = raw if isinstance(raw, RunOutcome) else RunOutcome.from_mapping(raw)
    if out.seed is None:
        out.seed = job.seed
    if not out.run_dir:
        out.run_dir = job.run_dir
    if out.wallclock_s is None:
        out.wallclock_s = round(time.perf_counter() - t0, 3)
    return out


def load_runner(ref: str) -> Runner:
    """``module:function`` or ``path/to/file.py:function`` -> the callable."""
    if ":" not in ref:
        raise GolfplanError(f"--runner expects module:function or file.py:function, got '{ref}'")
    target, func = ref.rsplit(":", 1)
    try:
        if target.endswith(".py") or os.sep in target:
            path = Path(target)
            if not path.is_file():
                raise GolfplanError(f"--runner: no such file {path}")
            spec = importlib.util.spec_from_file_location(f"golfplan_runner_{path.stem}", path)
            if spec is None or spec.loader is None:
                raise GolfplanError(f"--runner: cannot import {path}")
            mod = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = mod
            spec.loader.exec_module(mod)
        else:
            mod = importlib.import_module(target)
    except GolfplanError:
        raise
    except Exception as e:  # noqa: BLE001 - import errors of user code, one line
        raise GolfplanError(f"--runner {ref}: {type(e).__name__}: {e}") from None
    fn = getattr(mod, func, None)
    if not callable(fn):
        raise GolfplanError(f"--runner {ref}: '{func}' is not a callable of {target}")
    return fn


# ---- the default runner: one `golfplan run` process per run ------------------------------


def _pdeathsig() -> None:
    """In the child: die with the planner (Linux), so a kill -9 of the planner leaves no orphan run."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class SubprocessRunner:
    """Run each job as ``python -m golfplan run`` in its own process group, with a hard limit."""

    def __init__(self, python: str = sys.executable, poll_s: float = 0.25,
                 on_start: Callable[[int], None] | None = None) -> None:
        self.python = python
        self.poll_s = poll_s
        self.on_start = on_start  # called with the child's pid (the planner records it)

    def command(self, job: Job, config_path: Path) -> list[str]:
        run_dir = Path(job.run_dir)
        cmd = [self.python, "-m", "golfplan", "run", "--config", str(config_path), "--out", str(run_dir.parent),
               "--name", run_dir.name, "--json", "--no-check"]
        if job.nproc > 1:
            cmd += ["--nproc", str(job.nproc)]
        return cmd

    def __call__(self, job: Job) -> RunOutcome:
        import yaml

        run_dir = Path(job.run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        for stale in ("result.json", "train.log"):
            (run_dir / stale).unlink(missing_ok=True)
        config_path = run_dir / "trial.yaml"
        config_path.write_text(yaml.safe_dump(job.spec, sort_keys=False))
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        t0 = time.perf_counter()
        with open(run_dir / "stdout.log", "wb") as out, open(run_dir / "stderr.log", "wb") as err:
            proc = subprocess.Popen(self.command(job, config_path), stdout=out, stderr=err, env=env,
                                    start_new_session=True,
                                    preexec_fn=_pdeathsig if sys.platform.startswith("linux") else None)
            if self.on_start:
                self.on_start(proc.pid)
            killed, pruned_at = self._watch(proc, job, run_dir, t0)
        wall = round(time.perf_counter() - t0, 3)
        return self._outcome(proc.returncode, run_dir, job, killed, pruned_at, wall)

    def _watch(self, proc: subprocess.Popen, job: Job, run_dir: Path, t0: float) -> tuple[str, tuple | None]:
        """Wait for the run; enforce the hard limit; report periodic validations to ``job.report``.

        The validation at the run's last step is not a periodic one: the trainer follows it at
        once with ``stopping_early`` or ``peak memory``. A validation line is therefore reported
        only when another line follows it, or when ``FINAL_GRACE_S`` pass without a final line.
        """
        log_path, offset, buf = run_dir / "train.log", 0, ""
        pending: tuple[int, float, float] | None = None  # step, val_bpb, when seen

        def decide(p: tuple[int, float, float]) -> bool:
            return job.report is not None and job.report(p[0], p[1])

        try:
            while proc.poll() is None:
                time.sleep(self.poll_s)
                if job.timeout_s and time.perf_counter() - t0 > job.timeout_s:
                    kill_group(proc)
                    return "timeout", None
                if job.report is None or not log_path.exists():
                    continue
                with open(log_path, "r", errors="replace") as f:
                    f.seek(offset)
                    chunk = f.read()
                    offset = f.tell()
                buf += chunk
                *lines, buf = buf.split("\n")
                for line in lines:
                    m = VAL_LINE.match(line)
                    if line.startswith(FINAL_MARKERS):
                        pending = None  # that validation was the final one
                        continue
                    if pending is not None:
                        p, pending = pending, None
                        if decide(p):
                            kill_group(proc)
                            return "pruned", p[:2]
                    if m and int(m.group(1)) > 0 and math.isfinite(float(m.group(3))):
                        pending = (int(m.group(1)), float(m.group(3)), time.perf_counter())
                if pending is not None and time.perf_counter() - pending[2] > FINAL_GRACE_S:
                    p, pending = pending, None
                    if decide(p):
                        kill_group(proc)
                        return "pruned", p[:2]
        except BaseException:
            kill_group(proc)
            raise
        return "", None

    def _outcome(self, rc: int, run_dir: Path, job: Job, killed: str, pruned_at: tuple | None,
                 wall: float) -> RunOutcome:
        data: dict[str, Any] = {}
        rpath = run_dir / "result.json"
        if rpath.exists():
            try:
                data = json.loads(rpath.read_text())
            except (OSError, json.JSONDecodeError):
                data = {}
        measured = {f.name for f in fields(RunOutcome)} - {"status", "reason", "failure", "seed", "run_dir", "wallclock_s"}
        base = RunOutcome(**{k: v for k, v in data.items() if k in measured})
        base.seed, base.run_dir, base.wallclock_s = job.seed, str(run_dir), wall
        base.val_history = list(data.get("val_history") or [])
        if killed == "pruned":
            step, bpb = pruned_at or (0, float("nan"))
            base.status, base.reason = "pruned", f"pruned at step {step} (val_bpb {bpb:.4f})"
            base.steps = base.steps or step
            base.val_bpb = base.val_loss = None
            return base
        if killed == "timeout":
            base.status, base.failure = "failed", "timeout"
            base.reason = f"timed out: killed after the hard limit of {job.timeout_s:.0f}s"
            base.val_bpb = base.val_loss = None
            return base
        status = data.get("status")
        if rc == 0 and status == "complete" and data.get("val_bpb") is not None:
            base.status = "complete"
            return base
        base.val_bpb = base.val_loss = None
        base.status = "failed"
        if status == "failed" and data.get("reason"):
            base.reason = str(data["reason"])
            base.failure = failure_kind(base.reason)
            return base
        tail = _tail(run_dir / "stderr.log")
        if rc in (-signal.SIGKILL, 128 + signal.SIGKILL) or any(s in tail for s in ("out of memory", "OutOfMemoryError")):
            base.failure = "oom"
            base.reason = ("out of memory: " + _last_error(tail)) if "memory" in tail.lower() else \
                "killed by SIGKILL from outside the planner (out of memory?)"
            return base
        base.failure = "crash"
        base.reason = f"crash (exit {rc}): {_last_error(tail) or 'no error output'}"
        return base


def kill_group(proc: subprocess.Popen, grace_s: float = 5.0) -> None:
    """SIGTERM the child's process group, then SIGKILL what is left after ``grace_s``."""
    try:
        pgid = os.getpgid(proc.pid)
    except ProcessLookupError:
        return
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _tail(path: Path, limit: int = 20000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(f.tell() - limit, 0))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def _last_error(text: str) -> str:
    """The exception line of a traceback (or the last non-empty line)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if re.match(r"^[\w.]+(Error|Exception|Interrupt)\b", ln) or ln.startswith("error:"):
            return ln[:300]
    return lines[-1][:300] if lines else ""
