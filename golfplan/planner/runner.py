"""Running one configuration: the default subprocess runner and the runner API.

A *runner* is any callable ``runner(job: Job) -> RunOutcome | Mapping``. The planner calls it
once per seed of a trial. The default, :class:`SubprocessRunner`, writes the trial's resolved spec
to ``spec.json`` and starts ``python -m golfplan run --spec spec.json`` as a protected child
(:mod:`golfplan.planner.procs`: its own process group, a hard time limit, dies with the planner).
The first run of a configuration not checked yet runs the preflight in that same process
(``--check-json check.json``); later runs pass ``--no-check``. It follows the run's
``events.jsonl`` for periodic validations (``job.report(step, val_bpb)`` returns True when the
pruner wants the run stopped; a validation marked ``final`` is never reported) and reads how the
run ended from ``result.json``, whose ``failure`` kind the trainer set where it failed:

    complete                    result.json says complete and the process exited 0
    failed / nan, no_learning   as result.json says (the trainer decided)
    failed / timeout            the run passed its time limit, or its hard limit and was killed
    failed / oom, crash         as result.json says; with no result.json, from the exit (procs.exit_of)
    pruned                      the pruner stopped it at a periodic validation
    refused                     its preflight refused the configuration (check.json), or died in it
                                (failure crash | timeout | oom), or the run rejected its input (exit 2)

A custom runner (a cluster launcher, a simulator) returns a mapping with at least ``status``
and ``val_bpb``; the other fields of :class:`RunOutcome` are optional, and a failed run without a
``failure`` is a crash. ``golfplan study --runner module:function`` (or ``path/to/file.py:function``)
loads one.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import sys
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping

from golfplan.core.errors import GolfplanError
from golfplan.core.modules import import_file
from golfplan.core.runlog import EVENTS_FILE
from golfplan.planner import procs

STATUSES = ("complete", "failed", "pruned", "refused")
FAILURES = ("nan", "no_learning", "crash", "timeout", "oom", "refused")
DEFAULT_LIMIT_S = 3600.0  # a run with neither a wallclock cap nor a time limit: assume an hour


def hard_limit_s(config: Mapping[str, Any], override: float | None = None) -> float:
    """Seconds after which a run's process group is killed: ``override`` (``--trial-timeout``), else
    2 x the wallclock cap + 300 s (start-up, compilation, evaluation), else ``time_limit_seconds`` +
    300 s (the run fails itself at its time limit; the margin covers start-up and evaluation), else
    2 x an hour + 300 s. Never unlimited: a hung run always ends."""
    if override:
        return float(override)
    cap = float(config.get("max_wallclock_seconds") or 0.0)
    if cap > 0:
        return 2.0 * cap + 300.0
    limit = float(config.get("time_limit_seconds") or 0.0)
    return (limit if limit > 0 else 2.0 * DEFAULT_LIMIT_S) + 300.0


@dataclass
class Job:
    """One run of a trial: what to train, where, with which seed, for how long at most."""

    study: str
    trial: int
    label: str
    plugins: dict[str, dict[str, Any]]
    spec: dict[str, Any]  # the resolved RunSpec as a dict (RunSpec.to_dict(): seed and cap included)
    seed: int
    run_dir: str
    timeout_s: float | None = None  # the hard limit; None: hard_limit_s of the spec's config
    nproc: int = 1
    repeat: int = 0  # index of this seed among the trial's repeats
    report: Callable[[int, float], bool] | None = None  # (step, val_bpb) -> stop now?
    check: bool = False  # run the preflight in the run's own process and report it (default runner)
    threads: int | None = None  # CPU threads of a run on the CPU (the study's; None: the run decides)
    devices: list[str] | None = None  # the GPUs it may use, when trials run side by side on GPUs

    @property
    def config(self) -> dict[str, Any]:
        """The config keys this run sets over its profile (the study's, the trial's, seed and cap)."""
        values = self.spec.get("config") or {}
        return {k: values[k] for k in self.spec.get("explicit") or [] if k in values}

    @property
    def limit_s(self) -> float:
        return hard_limit_s(self.spec.get("config") or {}, self.timeout_s)

    def run_spec(self) -> Any:
        """The spec as a ``golfplan.core.config.RunSpec``."""
        from golfplan.core.config import RunSpec

        return RunSpec.from_dict(self.spec, where=f"trial {self.trial}")


@dataclass
class RunOutcome:
    """How one run ended (a subset of the trainer's RunResult, plus what the planner saw)."""

    status: str = "complete"  # complete | failed | pruned | refused
    reason: str = ""
    failure: str = ""  # nan | no_learning | crash | timeout | oom | refused (when failed or refused)
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
    threads: int | None = None  # CPU threads the run used
    capped_by: str = ""  # steps | wallclock
    concurrent: int | None = None  # golfplan trials running on this host when it started
    seed: int | None = None
    run_dir: str = ""
    val_history: list[dict[str, float]] = field(default_factory=list)
    check: dict[str, Any] | None = None  # the preflight report, when the run ran it (job.check)

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
        if out.status in ("failed", "refused") and out.failure not in FAILURES:
            out.failure = "refused" if out.status == "refused" else "crash"
        return out

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("val_history", None)
        d.pop("check", None)
        return d


Runner = Callable[[Job], "RunOutcome | Mapping[str, Any]"]


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
            mod = import_file(target, "golfplan_runner", "--runner file")
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


def spec_json(spec: dict[str, Any]) -> str:
    """A resolved spec (``RunSpec.to_dict``) as the JSON ``golfplan run --spec`` reads."""
    return json.dumps(spec, indent=2)


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from ``path``; None when it is missing, half-written or not an object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# ---- the default runner: one `golfplan run` process per run ------------------------------


class EventFollower:
    """Reads a run's ``events.jsonl`` as it grows and reports periodic validations to the pruner."""

    def __init__(self, path: Path, report: Callable[[int, float], bool] | None) -> None:
        self.path, self.report = path, report
        self.offset, self.buf = 0, ""
        self.pruned_at: tuple[int, float] | None = None

    def tick(self) -> bool:
        """True when the pruner wants the run stopped (``pruned_at`` says where)."""
        if self.report is None or not self.path.exists():
            return False
        with open(self.path, "r", errors="replace") as f:
            f.seek(self.offset)
            self.buf += f.read()
            self.offset = f.tell()
        *lines, self.buf = self.buf.split("\n")
        for line in lines:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if ev.get("event") != "val" or ev.get("final") or not ev.get("step"):
                continue
            bpb = ev.get("val_bpb")
            if isinstance(bpb, (int, float)) and math.isfinite(bpb) and self.report(int(ev["step"]), float(bpb)):
                self.pruned_at = (int(ev["step"]), float(bpb))
                return True
        return False


class SubprocessRunner:
    """Run each job as ``python -m golfplan run --spec spec.json`` in a protected child."""

    def __init__(self, python: str = sys.executable, poll_s: float = 0.25,
                 on_start: Callable[[int], None] | None = None, cancel: threading.Event | None = None) -> None:
        self.python = python
        self.poll_s = poll_s
        self.on_start = on_start  # called with the child's pid (the planner records it)
        self.cancel = cancel  # set: kill the running children (the planner was interrupted)

    def command(self, job: Job, spec_path: Path) -> list[str]:
        run_dir = Path(job.run_dir)
        cmd = [self.python, "-m", "golfplan", "run", "--spec", str(spec_path), "--out", str(run_dir.parent),
               "--name", run_dir.name, "--json"]
        cmd += ["--check-json", str(run_dir / "check.json")] if job.check else ["--no-check"]
        if job.nproc > 1:
            cmd += ["--nproc", str(job.nproc)]
        return cmd

    def __call__(self, job: Job) -> RunOutcome:
        run_dir = Path(job.run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        for stale in ("result.json", "train.log", EVENTS_FILE, "check.json"):
            (run_dir / stale).unlink(missing_ok=True)
        spec_path = run_dir / "spec.json"
        spec_path.write_text(spec_json(job.spec))
        limit = job.limit_s
        follower = EventFollower(run_dir / EVENTS_FILE, job.report)
        t0 = time.perf_counter()
        with procs.HostSlot() as concurrent:
            env = procs.child_env(concurrent, job.threads, job.devices)
            proc = procs.start(self.command(job, spec_path), run_dir / "stdout.log", run_dir / "stderr.log", env)
            if self.on_start:
                self.on_start(proc.pid)
            killed = procs.watch(proc, limit, self.poll_s, follower.tick if job.report else None, self.cancel)
        out = self._outcome(proc.returncode, run_dir, job, killed, follower.pruned_at, limit)
        out.wallclock_s, out.concurrent = round(time.perf_counter() - t0, 3), concurrent
        return out

    def _outcome(self, rc: int | None, run_dir: Path, job: Job, killed: str, pruned_at: tuple | None,
                 limit: float) -> RunOutcome:
        data = read_json(run_dir / "result.json") or {}
        measured = {f.name for f in fields(RunOutcome)} - {"status", "reason", "failure", "seed", "run_dir",
                                                            "wallclock_s", "concurrent", "check", "val_history"}
        out = RunOutcome(**{k: v for k, v in data.items() if k in measured})
        out.seed, out.run_dir = job.seed, str(run_dir)
        out.val_history = list(data.get("val_history") or [])
        if job.check:
            out.check = read_json(run_dir / "check.json")
            if out.check is None:  # the process ended (or was killed) inside its preflight
                ex = procs.exit_of(rc, run_dir / "stderr.log", killed, limit)
                return _refused(out, ex.kind, ex.reason if ex.kind == "refused" else f"preflight {ex.reason}")
            if not out.check.get("ok"):
                return _refused(out, str(out.check.get("failure") or "refused"),  # timeout: a stage passed its limit
                                str(out.check.get("reason") or "the preflight refused it"))
        if killed == "stopped":
            step, bpb = pruned_at or (0, float("nan"))
            out.status, out.reason = "pruned", f"pruned at step {step} (val_bpb {bpb:.4f})"
            out.steps = out.steps or step
            out.val_bpb = out.val_loss = None
            return out
        if killed != "timeout" and rc == 0 and data.get("status") == "complete" and data.get("val_bpb") is not None:
            out.status = "complete"
            return out
        out.val_bpb = out.val_loss = None
        if killed != "timeout" and data.get("status") == "failed" and data.get("reason"):
            out.status, out.reason = "failed", str(data["reason"])
            out.failure = data.get("failure") if data.get("failure") in FAILURES else "crash"
            return out
        ex = procs.exit_of(rc, run_dir / "stderr.log", killed, limit)
        if ex.kind == "refused":  # `golfplan run` rejected its input (exit 2): the configuration's fault
            return _refused(out, "refused", ex.reason)
        out.status, out.failure, out.reason = "failed", ex.kind, ex.reason
        return out


def _refused(out: RunOutcome, kind: str, reason: str) -> RunOutcome:
    out.status, out.failure, out.reason = "refused", kind, reason
    out.val_bpb = out.val_loss = None
    return out
