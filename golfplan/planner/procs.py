"""Protected child processes: what isolates a trial's run (and a configuration's check) from the planner.

A protected child runs in its own session (its process group is its pid), dies with the planner
(``PR_SET_PDEATHSIG`` on Linux, so a ``kill -9`` of the planner leaves no orphan), and is killed
with its whole group when it passes its hard time limit. How a child ended without saying so
itself (no result file) is read from its exit:

    timeout    it passed its hard limit and the planner killed it
    oom        SIGKILL from outside the planner (the kernel's OOM killer), or its last traceback
               line is a MemoryError / OutOfMemoryError (the exception's type, not its text), or
               the RuntimeError of torch's CPU allocator (its text: it has no type of its own)
    refused    exit status 2: golfplan's usage error, the configuration was not accepted
    crash      anything else; the reason is the last error line of its standard error

The host-local registry of live trials (:class:`HostSlot`) says how many golfplan trials run at once
on this machine; a child is told (``GOLFPLAN_CONCURRENT``) and its result records it. The count no
longer sets a child's CPU threads: CPU kernels sum in an order that depends on the thread count, so
a run's threads come from its study (``GOLFPLAN_THREADS``, :func:`child_env`), never from how many
trials happen to run beside it.
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from golfplan.core.result import CPU_ALLOCATOR_OOM

EXIT_USAGE = 2  # golfplan's exit status for input it refuses (golfplan.cli.options.EXIT_USAGE)
OOM_ERRORS = ("MemoryError", "OutOfMemoryError", "torch.OutOfMemoryError", "torch.cuda.OutOfMemoryError")


# ---- process identity ----------------------------------------------------------------------


def proc_start(pid: int) -> str | None:
    """The start time of ``pid`` (clock ticks since boot), to tell a pid from its reuse."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def alive(pid: int, start: str | None) -> bool:
    """True while the process ``pid`` that started at ``start`` runs (a reused pid is not it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    now = proc_start(pid)
    return start is None or now is None or now == start


# ---- starting, watching and killing a protected child ----------------------------------------


def _pdeathsig() -> None:
    """In the child: die with the planner (Linux), so a kill -9 of the planner leaves no orphan."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def start(cmd: list[str], stdout: Path, stderr: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start ``cmd`` as a protected child, its output in ``stdout`` / ``stderr``."""
    with open(stdout, "wb") as out, open(stderr, "wb") as err:
        return subprocess.Popen(cmd, stdout=out, stderr=err, env=env, start_new_session=True,
                                preexec_fn=_pdeathsig if sys.platform.startswith("linux") else None)


def watch(proc: subprocess.Popen, timeout_s: float, poll_s: float = 0.25,
          tick: Callable[[], bool] | None = None, cancel: threading.Event | None = None) -> str:
    """Wait for ``proc``; kill its group past ``timeout_s`` ("timeout") or when ``tick()`` returns
    True ("stopped"); "" when it exited by itself. An exception here (Ctrl-C) kills it too, and so
    does ``cancel`` being set (the planner was interrupted while this ran on one of its threads:
    KeyboardInterrupt is raised here, in that thread)."""
    t0 = time.perf_counter()
    try:
        while proc.poll() is None:
            if cancel is None:
                time.sleep(poll_s)
            elif cancel.wait(poll_s):
                raise KeyboardInterrupt("the planner was interrupted")
            if time.perf_counter() - t0 > timeout_s:
                kill_group(proc)
                return "timeout"
            if tick is not None and tick():
                kill_group(proc)
                return "stopped"
    except BaseException:
        kill_group(proc)
        raise
    return ""


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


def kill_orphan(owner: dict) -> None:
    """Kill what a dead planner's child left on this host: the child's process group (the child is
    a session leader, so its group id is its pid). Normally it died with its planner already; a
    torchrun under it (``--nproc``) may not have. Only processes whose command line names golfplan
    or torch's launcher are touched."""
    pgid = owner.get("child")
    if not pgid:
        return
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) != pgid:
                continue
            cmd = (stat.parent / "cmdline").read_bytes()
            if b"golfplan" in cmd or b"torch.distributed" in cmd:
                os.kill(int(stat.parent.name), signal.SIGKILL)
        except (OSError, ValueError, IndexError):
            continue


# ---- how a child ended --------------------------------------------------------------------


@dataclass
class Exit:
    """How a protected child ended, when it left no result of its own."""

    kind: str  # timeout | oom | refused | crash
    reason: str


def exit_of(rc: int | None, stderr: Path, killed: str, timeout_s: float) -> Exit:
    """Classify a child's end from its exit status and the last error line of its standard error."""
    if killed == "timeout":
        return Exit("timeout", f"timed out: killed after the hard limit of {timeout_s:.0f}s")
    last = last_error(tail(stderr))
    if rc in (-signal.SIGKILL, 128 + signal.SIGKILL):
        return Exit("oom", "killed by SIGKILL from outside the planner (out of memory?)")
    if last.split(":", 1)[0].strip() in OOM_ERRORS or CPU_ALLOCATOR_OOM in last:
        return Exit("oom", f"out of memory: {last}")
    if rc == EXIT_USAGE and last.startswith("error:"):
        return Exit("refused", last.removeprefix("error:").strip())
    return Exit("crash", f"crash (exit {rc}): {last or 'no error output'}")


def tail(path: Path, limit: int = 20000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(f.tell() - limit, 0))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def last_error(text: str) -> str:
    """The exception line of a traceback, or an ``error:`` line, else the last non-empty line."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if re.match(r"^[\w.]+(Error|Exception|Interrupt)\b", ln) or ln.startswith("error:"):
            return ln[:300]
    return lines[-1][:300] if lines else ""


# ---- trials running at once on this host ----------------------------------------------------


def child_env(concurrent: int, threads: int | None = None, devices: list[str] | None = None) -> dict[str, str]:
    """The environment of a trial's child: this one, unbuffered, told how many trials share the
    host; with ``threads`` its CPU threads fixed (``GOLFPLAN_THREADS`` and ``OMP_NUM_THREADS``), with
    ``devices`` the GPUs it may see (``CUDA_VISIBLE_DEVICES``)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", GOLFPLAN_CONCURRENT=str(concurrent))
    if threads:
        env["GOLFPLAN_THREADS"] = env["OMP_NUM_THREADS"] = str(threads)
    if devices is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(d) for d in devices)
    return env


class HostSlot:
    """A file per live golfplan trial under the temp dir, named by its planner's pid and start time
    (and a token of its own: one planner runs several trials at once with ``--jobs``).

    ``with HostSlot() as n:`` registers this trial for the duration and gives ``n``, the number of
    trials live on this host now (this one included; entries of dead planners are pruned).
    """

    def __init__(self, root: str | Path | None = None) -> None:
        uid = os.getuid() if hasattr(os, "getuid") else 0
        self.root = Path(root or Path(tempfile.gettempdir()) / f"golfplan-{uid}-trials")
        self.path: Path | None = None

    def __enter__(self) -> int:
        self.root.mkdir(parents=True, exist_ok=True)
        pid = os.getpid()
        self.path = self.root / f"{pid}.{proc_start(pid) or 0}.{uuid.uuid4().hex[:8]}"
        self.path.touch()
        return self.count()

    def count(self) -> int:
        n = 0
        for entry in self.root.iterdir():
            pid, _, rest = entry.name.partition(".")
            start = rest.split(".")[0]
            if pid.isdigit() and alive(int(pid), None if start in ("", "0") else start):
                n += 1
            else:
                entry.unlink(missing_ok=True)
        return max(n, 1)

    def __exit__(self, *exc: object) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            self.path = None
