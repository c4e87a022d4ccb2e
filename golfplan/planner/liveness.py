"""Who runs a trial, whether it still does, and what happens to a trial whose planner died.

A running trial records its ``owner`` (host, planner pid and start time, the child's pid) and a
``heartbeat`` every few seconds. A trial whose planner died (``kill -9``, a crash, a lost machine)
is found by the next planner or worker on the study: its owner's process is gone (same host) or
its heartbeat is stale (other hosts). It is marked FAIL (``status: interrupted``, never counted)
and enqueued again with the runs it had finished, so nothing finished is lost and nothing is
counted twice. What its run left on this host (a torchrun under it) is killed.

A trial asked in a sampling batch (:mod:`golfplan.planner.loop`) is RUNNING in Optuna from its ask,
though it may wait for the trials before it: its owner says ``waiting`` until it starts, then
``since`` (when it started), so the budget counts only the time it ran, and the planner's loop
beats its heartbeat while it waits. A waiting trial of a dead planner is reaped and queued again
like any other (its params were sampled at the ask), at no cost.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from golfplan.planner.procs import alive, kill_orphan, proc_start
from golfplan.planner.records import CONFIG_ATTRS, TrialRecord

HEARTBEAT_S = 10.0
STALE_REMOTE_S = 300.0  # a heartbeat older than this on another host: that planner is gone
STALE_LOCAL_NOOWNER_S = 60.0  # a RUNNING trial that never recorded an owner


def owner_record(child: int | None = None, since: float | None = None, waiting: bool = False) -> dict[str, Any]:
    """This planner as a trial's owner: its host, pid and process start; ``since``: when the trial
    started running here; ``waiting``: asked in a batch, not started yet; ``child``: its run's pid."""
    pid = os.getpid()
    rec: dict[str, Any] = {"host": socket.gethostname(), "pid": pid, "start": proc_start(pid)}
    if waiting:
        rec["waiting"] = True
    if since is not None:
        rec["since"] = since
    if child is not None:
        rec["child"] = child
        rec["child_start"] = proc_start(child)
    return rec


class Heartbeat:
    """Calls ``beat()`` (the Planner writes the trial's ``heartbeat``) every few seconds from a daemon
    thread, while the trial runs."""

    def __init__(self, beat: Callable[[], None], every_s: float = HEARTBEAT_S) -> None:
        self.beat, self.every_s = beat, every_s
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True, name="golfplan-heartbeat")

    def _beat(self) -> None:
        while not self.stop_event.wait(self.every_s):
            try:
                self.beat()
            except Exception:  # noqa: BLE001 - a missed beat is retried; a finished trial ends the loop
                if self.stop_event.is_set():
                    return

    def __enter__(self) -> "Heartbeat":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop_event.set()
        self.thread.join(timeout=30)


def is_stale(t: Any, host: str, now: float) -> bool:
    """True when the RUNNING trial ``t`` has no live planner any more."""
    rec = TrialRecord.of(t)
    owner = rec.owner
    if owner is None:
        started = t.datetime_start.timestamp() if t.datetime_start else now
        return now - started >= STALE_LOCAL_NOOWNER_S
    if owner.get("host") == host:
        return owner.get("pid") != os.getpid() and not alive(owner["pid"], owner.get("start"))
    return now - float(rec.heartbeat or 0) >= STALE_REMOTE_S


def started_at(t: Any, rec: TrialRecord, now: float) -> float:
    """When the RUNNING trial ``t`` started running (its owner's ``since``; Optuna's start, its ask,
    for a trial recorded before owners said so)."""
    since = (rec.owner or {}).get("since")
    if since is not None:
        return float(since)
    return t.datetime_start.timestamp() if t.datetime_start else now


@dataclass
class Stale:
    """A RUNNING trial whose planner died: what marking it interrupted and queuing it again needs."""

    trial: Any  # the FrozenTrial
    cost_s: float  # from its start to its last heartbeat
    retry: TrialRecord  # the retry's record: the configuration and the runs it had finished


def stale_trials(study: Any, mine: set[int]) -> list[Stale]:
    """The RUNNING trials of dead planners (all but ``mine``, the trials this planner runs); what
    their runs left on this host (a torchrun under them) is killed here."""
    import optuna

    out = []
    host, now = socket.gethostname(), time.time()
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if t.number in mine or not is_stale(t, host, now):
            continue
        rec = TrialRecord.of(t)
        if (rec.owner or {}).get("host") == host:
            kill_orphan(rec.owner)
        begun = started_at(t, rec, now)
        last = begun if (rec.owner or {}).get("waiting") else float(rec.heartbeat or begun)  # waited: no cost
        retry = TrialRecord(**{k: getattr(rec, k) for k in CONFIG_ATTRS}, retry_of=t.number,
                            runs=[r for r in rec.runs if r.status in ("complete", "failed")])
        out.append(Stale(t, round(max(last - begun, 0.0), 3), retry))
    return out
