"""Who runs a trial, whether it still does, and what happens to a trial whose planner died.

A running trial records its ``owner`` (host, planner pid and start time, the child's pid) and a
``heartbeat`` every few seconds. A trial whose planner died (``kill -9``, a crash, a lost machine)
is found by the next planner or worker on the study: its owner's process is gone (same host) or
its heartbeat is stale (other hosts). It is marked FAIL (``status: interrupted``, never counted)
and enqueued again with the runs it had finished, so nothing finished is lost and nothing is
counted twice. What its run left on this host (a torchrun under it) is killed.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any, Callable

from golfplan.planner.procs import alive, kill_orphan, proc_start

HEARTBEAT_S = 10.0
STALE_REMOTE_S = 300.0  # a heartbeat older than this on another host: that planner is gone
STALE_LOCAL_NOOWNER_S = 60.0  # a RUNNING trial that never recorded an owner
CARRIED = ("label", "plugins", "config", "key", "description", "exp_id", "phase", "runs")


def owner_record(child: int | None = None) -> dict[str, Any]:
    pid = os.getpid()
    rec: dict[str, Any] = {"host": socket.gethostname(), "pid": pid, "start": proc_start(pid)}
    if child is not None:
        rec["child"] = child
        rec["child_start"] = proc_start(child)
    return rec


class Heartbeat:
    """Writes ``heartbeat`` on the running trial every few seconds from a daemon thread."""

    def __init__(self, trial: Any, every_s: float = HEARTBEAT_S) -> None:
        self.trial, self.every_s = trial, every_s
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True, name="golfplan-heartbeat")

    def _beat(self) -> None:
        while not self.stop_event.wait(self.every_s):
            try:
                self.trial.set_user_attr("heartbeat", time.time())
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
    owner = t.user_attrs.get("owner")
    if owner is None:
        started = t.datetime_start.timestamp() if t.datetime_start else now
        return now - started >= STALE_LOCAL_NOOWNER_S
    if owner.get("host") == host:
        return owner.get("pid") != os.getpid() and not alive(owner["pid"], owner.get("start"))
    return now - float(t.user_attrs.get("heartbeat") or 0) >= STALE_REMOTE_S


def reap_stale(study: Any, storage: Any, mine: int | None, say: Callable[[str], None]) -> int:
    """Mark the RUNNING trials of dead planners as interrupted and queue them again (all but the
    trial ``mine`` this planner is running). Returns how many were reaped."""
    import optuna
    from optuna.exceptions import UpdateFinishedTrialError

    n = 0
    host, now = socket.gethostname(), time.time()
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if t.number == mine or not is_stale(t, host, now):
            continue
        owner = t.user_attrs.get("owner") or {}
        if owner.get("host") == host:
            kill_orphan(owner)
        begun = t.datetime_start.timestamp() if t.datetime_start else now
        last = float(t.user_attrs.get("heartbeat") or begun)
        try:
            storage.set_trial_user_attr(t._trial_id, "status", "interrupted")
            storage.set_trial_user_attr(t._trial_id, "reason", "its planner stopped mid-trial (killed or crashed); "
                                        "queued again")
            storage.set_trial_user_attr(t._trial_id, "cost_s", round(max(last - begun, 0.0), 3))
            storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
        except (UpdateFinishedTrialError, RuntimeError):
            continue  # another planner got there first
        carry = {k: v for k, v in t.user_attrs.items() if k in CARRIED}
        carry["retry_of"] = t.number
        carry["runs"] = [r for r in carry.get("runs", []) if r.get("status") in ("complete", "failed")]
        study.enqueue_trial(dict(t.params), user_attrs=carry)
        say(f"trial #{t.number} was cut off (its planner stopped); marked failed and queued again")
        n += 1
    return n
