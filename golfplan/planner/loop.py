"""A planner's loop over trials: one after another, or ``jobs`` side by side, sampled ones in lockstep
batches so that ``jobs`` changes no trial's params.

Side by side is Optuna's ``n_jobs`` model: threads that share the Planner's Study and storage, each
running and telling trials of its own (a trial's work is a subprocess, so threads are enough), with
constant-liar TPE (a running trial counts as a bad result near its params, so two trials do not
propose the same configuration). The loop is golfplan's own rather than ``study.optimize`` because
whether another trial may start (the budget, the queue, ``max_new``) must be decided before each ask:
that decision and the ask hold the Planner's lock, so queued (WAITING) trials, a strategy's candidates
included, run side by side and none twice, and no limit is passed by two threads at once.

**Batches.** What TPE proposes depends on the study it sees at each ask (which trials are finished,
which are running) and on the order its random stream is drawn. Were trials asked whenever a thread
came free, that would depend on ``jobs`` and on which trial finished first, and so would the study's
path and its best trial. So sampled (tune) trials are asked ``batch`` at a time (the study's
``batch``, default 2, a fixed number, never the host's): all of a batch are asked and sampled
together, in order, once every trial this loop started before has finished and been told; each ask
sees the earlier trials of its batch as RUNNING (constant liar). ``jobs`` only decides how many of a
batch run at once: ``--jobs 1`` runs them one after the other, ``--jobs 2`` side by side, and both ask
identical params, trial by trial (``jobs`` above ``batch`` leaves slots idle while sampling).
Queued trials (the tune study's baseline and all-on, ablations, experiments, a strategy's candidates,
retries) have fixed params and need no batch: one is asked whenever a thread comes free and one is
waiting, as before; a sampled batch waits for them as for any trial before it. The median pruner
(only with ``val_loss_every`` > 0) compares a run with the trials complete at that moment, which
with ``jobs`` > 1 may not yet include the earlier trials of its batch.

A trial of a batch waiting for its turn is RUNNING in Optuna, owned by this planner (its owner says
``waiting``; this loop beats its heartbeat), so no other planner reaps it, the budget counts a whole
trial for it and nothing spent, and after a ``kill -9`` it is reaped and queued again like any other.
When the loop stops (the budget, an error, Ctrl-C) the batch's trials not started are told FAIL as
``unused`` (never counted). Each thread keeps its own trial, its child's owner record, its heartbeat
and its host slot (the Planner's thread-local state). A Ctrl-C kills every thread's child; their
trials stay RUNNING and are reaped as interrupted by the next planner, as after a ``kill -9``. An
error on one thread stops the others from starting trials; ``run`` raises it once they have finished
theirs. Another process on the study (``golfplan worker``) batches its own trials with its own
sampler stream; with workers the path depends on when their trials finish, as it always did.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

from golfplan.planner import liveness
from golfplan.planner.configs import LoopResult


class TrialLoop:
    """One ``Planner.run()``: what its threads share is read and written under the Planner's lock
    (``cond`` is a condition on it)."""

    def __init__(self, planner: Any, max_new: int | None) -> None:
        self.p, self.max_new = planner, max_new
        self.started = self.ran = 0
        self.stopped = ""
        self.error: BaseException | None = None
        self.cond = threading.Condition(planner._lock)
        self.batch: deque[Any] = deque()  # trials of the current batch asked (and sampled), not started
        self.in_flight = 0  # trials this loop started and has not finished

    def run(self) -> LoopResult:
        self.note_idle_slots()
        try:
            with liveness.Heartbeat(self.beat_waiting):
                if self.p.jobs <= 1:
                    self.work()
                else:
                    self.side_by_side()
        except BaseException as e:
            self.stop("interrupted" if isinstance(e, KeyboardInterrupt) else "error")
            raise
        finally:
            self.drop_waiting()
        if self.error is not None:
            raise self.error
        if self.stopped != "done":
            self.p.say(self.stopped)
        return LoopResult(self.ran, self.stopped)

    def note_idle_slots(self) -> None:
        p = self.p
        if p.d.mode == "tune" and p.jobs > p.d.batch and not p.noted_batch:
            p.noted_batch = True
            p.say(f"note: --jobs {p.jobs} with --batch {p.d.batch}: sampled trials are asked {p.d.batch} at a "
                  f"time, so they run on {p.d.batch} of the {p.jobs} slots; --batch {p.jobs} uses them all "
                  f"(it is part of the study: another sampled path, the same on every host)")

    def stop(self, why: str) -> None:
        """Stop starting trials (the first reason stays); wake the threads waiting for a batch."""
        with self.cond:
            self.stopped = self.stopped or why
            self.cond.notify_all()

    def side_by_side(self) -> None:
        p = self.p

        def work(slot: int) -> None:
            p._local.devices = p._slots[slot]
            try:
                self.work()
            except BaseException as e:  # noqa: BLE001 - handed to run(), which raises it
                with self.cond:
                    self.error = self.error or e
                self.stop("error")

        threads = [threading.Thread(target=work, args=(i,), name=f"golfplan-trials-{i}", daemon=True)
                   for i in range(p.jobs)]
        for t in threads:
            t.start()
        try:
            for t in threads:
                while t.is_alive():
                    t.join(0.5)
        except KeyboardInterrupt:
            self.stop("interrupted")
            p._cancel.set()  # every thread's child is killed; its trial stays RUNNING (reaped later)
            for t in threads:
                t.join(15)
            raise

    def work(self) -> None:
        while True:
            trial = self.next()
            if trial is None:
                return
            try:
                self.p.execute(trial)
            finally:
                with self.cond:
                    self.ran += 1
                    self.in_flight -= 1
                    self.cond.notify_all()
            self.p.reap_stale()

    def next(self) -> Any:
        """The next trial to run, or None when the loop stops (decided and asked under the lock)."""
        p = self.p
        with self.cond:
            while True:
                if self.stopped:
                    return None
                if self.batch:  # the current batch's next trial, asked already
                    why = p.budget_stop(starting=self.batch[0])
                    if why:
                        self.stop(why)
                        return None
                    self.in_flight += 1
                    return self.batch.popleft()
                why = self.why_stop()
                if why:
                    self.stop(why)
                    return None
                if p.d.mode != "tune" or p.queued():  # a queued trial: its params are fixed, no batch
                    trial = p.ask()
                    if trial is None:
                        self.stop("done")
                        return None
                    self.started += 1
                    self.in_flight += 1
                    return trial
                if self.in_flight:  # a sampled batch is asked once every trial before it was told
                    self.cond.wait(1.0)
                    continue
                self.ask_batch()
                self.cond.notify_all()  # the threads waiting for this batch take its other trials

    def why_stop(self) -> str:
        """Why no more trial may be asked ('' while one may): ``max_new``, the mode's work, the budget."""
        if self.max_new is not None and self.started >= self.max_new:
            return "done"
        return self.p.no_more_work() or self.p.budget_stop()

    def ask_batch(self) -> None:
        """Ask (and sample) up to ``batch`` trials in order, each seeing the earlier ones as RUNNING;
        fewer when ``trials``, ``max_new`` or the budget leaves room for fewer."""
        for _ in range(self.p.d.batch):
            if self.batch and self.why_stop():
                break
            trial = self.p.ask(waiting=len(self.batch) >= self.p.jobs)  # the first `jobs` start at once
            if trial is None:  # no tune study answers None; guarded so the loop cannot spin
                self.stop("done")
                break
            self.batch.append(trial)
            self.started += 1

    def beat_waiting(self) -> None:
        """The heartbeat of the batch's trials waiting for their turn (the running ones beat their own)."""
        with self.cond:
            waiting = list(self.batch)
        for trial in waiting:
            self.p.beat(trial)

    def drop_waiting(self) -> None:
        with self.cond:
            waiting, self.batch = list(self.batch), deque()
        for trial in waiting:
            self.p.drop(trial, f"asked in a batch, not started: the study stopped ({self.stopped or 'interrupted'})")
