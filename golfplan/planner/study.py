"""The study loop: create or resume an Optuna study, then ask, check, run, record and tell, trial by
trial, until the mode's work is done or the budget is spent; with ``jobs`` > 1, that many trials side
by side. Long file: the Planner is the one writer of Optuna attributes (issue 15), so every write of
a trial's record and of the study's attributes is here, with the trial it belongs to.

One Optuna trial is one *configuration* (plugins + params + config keys) run with ``repeats``
seeds, each seed one run of the runner (by default a ``golfplan run`` subprocess). What the planner
records on each trial is a :class:`golfplan.planner.records.TrialRecord` (label, configuration and
key, status, runs, check, cost, owner and heartbeat); the Planner is the only writer of Optuna
attributes, trial and study ones alike: the modules beside it compute what to write and the
Planner writes it (``enqueue``, ``choose``, ``set_baseline``, ``add_copy``, ``set_study_attr``).

Optuna's own state is what the sampler learns from: complete trials carry their mean val_bpb and
a constraint ``artifact_bytes - limit`` (``trial.set_constraint``), so the best trial is the best
feasible one (``study.best_trial``); refused and failed trials are told as PRUNED with a violated
constraint, so TPE steers away from them; pruned trials are PRUNED.

**Side by side** (``jobs``): :mod:`loop` runs the trials, one after another or several at once on
threads that share this Planner (its lock, its thread-local trial); :mod:`hosts` says what fits.
What a trial runs is decided when it is asked (:meth:`Planner.ask`, under the lock, in the order
trials are asked): its params sampled, its key and seeds reserved; sampled trials are asked in
batches (``batch``), so no decision depends on ``jobs`` or on which thread runs the trial.

The rest lives beside it: where studies are stored (:mod:`storage`), the configurations of each
mode (:mod:`configs`), the search space (:mod:`space`), the preflight and what the study
remembers of it (:mod:`checks`), runs (:mod:`runner`, :mod:`procs`), dead planners' trials
(:mod:`liveness`), the budget (:mod:`budget`) and the progress text (:mod:`progress`).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from golfplan.core.errors import GolfplanError
from golfplan.planner import budget, checks, hosts, liveness, resume
from golfplan.planner.configs import (LoopResult, TrialConfig, experiment_configs, initial, settle, tune_label,
                                      with_replacements)
from golfplan.planner.definition import (DEFAULT_STORAGE, Plugins, StudyDef, canonical_plugins, config_key,
                                         describe_plugins)
from golfplan.planner.progress import Progress
from golfplan.planner.records import CheckRecord, Chosen, TrialRecord, baseline_key, mean_ms
from golfplan.planner.runner import Job, Runner, SubprocessRunner, call_runner, hard_limit_s
from golfplan.planner.storage import BASELINE_ATTR, CHOSEN_ATTR, mask_url, open_storage

__all__ = ["BASELINE_ATTR", "Decided", "LoopResult", "Planner", "TrialConfig"]


@dataclass
class Decided:
    """What a trial runs, decided when it was asked: its configuration and record, its canonical
    plugins and key, the seeds reserved for it, and its RunSpec (or why none could be built)."""

    tc: TrialConfig
    rec: TrialRecord
    plugins: Plugins
    key: str
    seeds: list[int]
    spec: Any = None
    error: str = ""


class Planner:
    """Create or resume one study and run its trials (``run``).

    ``base``: the resolved RunSpec every trial starts from (:func:`golfplan.planner.resume.base_spec`
    of the definition, resolved once by the caller); ``registry``: the plugins. ``runner`` is called
    once per seed of each trial (default: a ``golfplan run`` subprocess); ``say`` receives the progress
    lines. ``worker``: join a study another planner created (never enqueue); ``readonly``: read it for
    a report, run nothing. ``jobs``: trials side by side (default ``definition.jobs``, else what fits
    the host, :mod:`hosts`).
    """

    def __init__(self, definition: StudyDef, base: Any, registry: Any, *, storage: Any = None,
                 runner: Runner | None = None, out_dir: str | Path = "runs", say: Callable[[str], None] | None = None,
                 worker: bool = False, readonly: bool = False, jobs: int | None = None) -> None:
        resume.quiet_optuna()
        self.d, self.base, self.registry = definition, base, registry
        url = storage if isinstance(storage, str) else (definition.storage or DEFAULT_STORAGE) if storage is None \
            else None
        self.storage_url = mask_url(url) if url else None  # for messages: the password masked
        self.storage = open_storage(url) if url else storage
        self.custom_runner = runner is not None
        self._cancel = threading.Event()  # set on Ctrl-C: every thread's child is killed
        self.runner: Runner = runner or SubprocessRunner(on_start=self._child_started, cancel=self._cancel)
        self.out_dir = Path(out_dir).resolve()
        self._say_lock = threading.Lock()
        self._say = say or (lambda msg: print(msg, flush=True))
        self.worker = worker or readonly
        self.readonly = readonly
        self.d.validate(registry)
        self.jobs = 1 if readonly else (jobs or definition.jobs
                                        or hosts.default_jobs(definition, base.config, self.custom_runner))
        self.threads = hosts.cpu_threads(definition, base.config)  # of each run: the study's, whatever jobs is
        self._slots = hosts.gpu_slots(self.jobs, definition, base.config, self.custom_runner)
        self.study: Any = None
        self.space: Any = None
        self.screened: dict[str, str] = {}  # searched plugins refused alone: name -> reason
        self.verdicts: checks.Verdicts | None = None
        self.preflight: checks.Preflight | None = None
        self.progress = Progress(self)
        self._lock = threading.RLock()  # the ask (and what decides it), the stats
        self._local = threading.local()  # the trial this thread runs, its GPUs
        self._running: set[int] = set()  # trials this planner asked and has not finished (never reaped by it)
        self._decided: dict[int, Decided] = {}  # those trials' decisions (their seeds reserved)
        self.noted_batch = False  # the note that --jobs > --batch leaves slots idle, said once
        self.t_start = time.time()
        self.run_stats = {"check_s": 0.0, "run_s": 0.0, "train_s": 0.0, "trials": 0}

    def say(self, msg: str) -> None:
        with self._say_lock:  # a line is printed whole, whichever thread says it
            self._say(msg)

    # ---- opening the study ---------------------------------------------------------------
    def open(self, enqueue: bool = True) -> Any:
        """Create the study, or load it and make sure it is the same study (resume).

        ``enqueue``: queue the mode's initial configurations (tune: baseline and all-on;
        ablate/experiments: every configuration not run yet). Workers never enqueue.
        """
        self.study, writes = resume.create_or_resume(self.d, self.storage, self.base, worker=self.worker,
                                                     readonly=self.readonly)
        for name, value in writes.items():
            self.set_study_attr(name, value)
        self.verdicts = checks.Verdicts(self.study, self.registry, self.set_study_attr)
        self.preflight = checks.Preflight(self.d, self.registry, self.verdicts, in_run=not self.custom_runner,
                                          work_dir=self.out_dir / self.d.name, limit_s=self._limit_s,
                                          on_start=self._child_started, threads=self.threads, cancel=self._cancel)
        self.space = self._build_space()
        self.verdicts.forbid_known(self.space)
        if enqueue and not self.worker:
            self._enqueue_initial()
        return self.study

    def _build_space(self) -> Any:
        from golfplan.planner.space import SearchSpace

        tune = self.d.mode == "tune"
        found = checks.Screening() if self.readonly else checks.screen(self.d, self.registry, self.static_refusal)
        self.screened = found.screened
        optional = {n: p for n, p in self.d.plugins.items() if n not in found.screened} if tune else {}
        return SearchSpace(self.registry, optional, self.d.always if tune else {}, self.d.fixed, found.domains)

    def static_refusal(self, plugins: Plugins) -> str:
        """Why the static check refuses these plugins on the study's base ("" when it accepts them)."""
        try:
            spec = self.spec_for(with_replacements(self.d, self.registry, plugins), {})
        except Exception as e:  # noqa: BLE001 - a plugin rejecting these values
            return f"{type(e).__name__}: {e}" if not isinstance(e, GolfplanError) else str(e)
        report = checks.static_check(spec, self.registry, self.d.nproc if self.d.nproc > 1 else None)
        return "" if report.ok else report.reason

    # ---- configurations --------------------------------------------------------------------
    def spec_for(self, plugins: Plugins, config: dict[str, Any], seed: int | None = None) -> Any:
        """The RunSpec of a configuration: the study's base spec with these plugins and config keys."""
        changes = dict(config)
        if seed is not None:
            changes["seed"] = seed
        return self.base.replace(plugins={n: dict(p) for n, p in plugins.items()}, **changes)

    def key_of(self, plugins: Plugins, config: dict[str, Any] | None = None) -> str:
        return config_key(canonical_plugins(self.registry, plugins), config)

    def experiment_configs(self) -> list[TrialConfig]:
        return experiment_configs(self.d, self.registry)

    # ---- what the planner writes (the only writer of Optuna attributes) ------------------------
    def set_study_attr(self, name: str, value: Any) -> None:
        self.study.set_user_attr(name, value)

    def enqueue(self, tc: TrialConfig, key: str | None = None, params: dict[str, Any] | None = None) -> str:
        """Queue a trial of ``tc`` (``key``: its hash, computed when not given); returns the key. The
        next ``run()`` runs the queued trials, side by side when ``jobs`` > 1."""
        key = key or self.key_of(tc.plugins, tc.config)
        self.study.enqueue_trial(params or {}, user_attrs=tc.attrs(key))
        return key

    def choose(self, plugins: Plugins, label: str, config: dict[str, Any] | None = None, **extra: str) -> str:
        """Record ``plugins`` as the study's chosen configuration (its report's best); returns its key."""
        key = self.key_of(plugins, config)
        self.set_study_attr(CHOSEN_ATTR, Chosen(key, label, **extra).to_attr())
        return key

    def set_baseline(self, plugins: Plugins, config: dict[str, Any] | None = None) -> str:
        """Record the configuration every other one is judged against; returns its key."""
        key = self.key_of(plugins, config)
        self.set_study_attr(BASELINE_ATTR, key)
        return key

    def add_copy(self, trial: Any, source: str) -> None:
        """Add a finished trial of another study (``source``) to this one, marked as a copy: its runs
        were paid there and count in no budget here."""
        import optuna

        S = optuna.trial.TrialState
        attrs = dict(trial.user_attrs, copied_from=f"{source}#{trial.number}", owner=None)
        frozen = optuna.trial.create_trial(state=trial.state, value=trial.value if trial.state == S.COMPLETE else None,
                                           user_attrs=attrs, system_attrs={})
        for k, v in trial.constraints.items():
            frozen.set_constraint(k, v)
        self.study.add_trial(frozen)

    def _write(self, trial: Any, rec: TrialRecord, *names: str) -> None:
        for k, v in rec.to_attrs(names).items():
            trial.set_user_attr(k, v)

    def _enqueue_initial(self) -> None:
        first = initial(self._trials(), self.d, self.registry, self.space, self.key_of)
        if first.baseline_key:
            self.set_study_attr(BASELINE_ATTR, first.baseline_key)
        for params, attrs in first.queue:
            self.study.enqueue_trial(params, user_attrs=attrs, skip_if_exists=self.d.mode == "tune")

    def reap_stale(self) -> int:
        """Mark the RUNNING trials of dead planners as interrupted and queue them again."""
        import optuna
        from optuna.exceptions import UpdateFinishedTrialError

        n = 0
        with self._lock:
            mine = set(self._running)
        for s in liveness.stale_trials(self.study, mine):
            tid, put = s.trial._trial_id, self.storage.set_trial_user_attr
            try:
                put(tid, "status", "interrupted")
                put(tid, "reason", "its planner stopped mid-trial (killed or crashed); queued again")
                put(tid, "cost_s", s.cost_s)
                self.storage.set_trial_state_values(tid, optuna.trial.TrialState.FAIL)
            except (UpdateFinishedTrialError, RuntimeError):
                continue  # another planner got there first
            self.study.enqueue_trial(dict(s.trial.params), user_attrs=s.retry.to_attrs(
                ("label", "plugins", "config", "key", "description", "exp_id", "phase", "runs", "retry_of")))
            self.say(f"trial #{s.trial.number} was cut off (its planner stopped); marked failed and queued again")
            n += 1
        return n

    def _abandon(self, trial: Any, status: str, reason: str) -> None:
        import optuna

        self._write(trial, TrialRecord(status=status, reason=reason), "status", "reason")
        self.study.tell(trial, state=optuna.trial.TrialState.FAIL)

    def _child_started(self, pid: int) -> None:
        trial = getattr(self._local, "trial", None)
        if trial is not None:
            try:
                owner = liveness.owner_record(child=pid, since=getattr(self._local, "since", None))
                self._write(trial, TrialRecord(owner=owner), "owner")
            except Exception:  # noqa: BLE001 - best effort: the pdeathsig already ties the child to us
                pass

    # ---- the loop (golfplan.planner.loop) ------------------------------------------------------
    def run(self, max_new: int | None = None) -> LoopResult:
        """Run trials until the mode's work is done, the budget is spent, or ``max_new`` started here;
        ``jobs`` of them at once (queued ones too: enqueue several, then one ``run()`` runs them all)."""
        from golfplan.planner.loop import TrialLoop

        if self.study is None:
            self.open()
        self._cancel.clear()
        self.reap_stale()
        return TrialLoop(self, max_new).run()

    def queued(self) -> int:
        """How many trials wait in the study's queue (WAITING: enqueued, their params fixed)."""
        import optuna

        return len(self._trials(states=(optuna.trial.TrialState.WAITING,)))

    def no_more_work(self) -> str:
        """"done" when the mode's work is done ('' while queued trials or tune trials are left)."""
        if self.queued():
            return ""  # queued trials (initial ones, retries of interrupted ones) always run
        if self.d.mode == "tune":
            return "done" if len(self.counted()) >= self.d.trials else ""
        return "done"

    def ask(self, waiting: bool = False) -> Any:
        """The next trial (the queue's first, else a new one to sample), claimed for this planner and
        decided (:meth:`_decide`); None when a non-tune study had no queued configuration left (another
        worker took it). Decided under the lock, so in the order trials are asked. ``waiting``: it will
        wait for its turn (a batch's trial beyond ``jobs``): its owner is recorded now."""
        with self._lock:
            self.verdicts.forbid_known(self.space)  # refusals other workers learned meanwhile
            trial = self.study.ask()
            if self.d.mode != "tune" and not TrialRecord.of(trial).key:
                self._abandon(trial, "unused", "no queued configuration left when this worker asked")
                return None
            self._running.add(trial.number)
            try:
                self._decided[trial.number] = self._decide(trial, waiting)
            except BaseException as e:
                self._running.discard(trial.number)
                if isinstance(e, Exception) and not isinstance(e, GolfplanError):
                    self._planner_error(trial, TrialRecord.of(trial), e, time.time())
                raise
        return trial

    def _decide(self, trial: Any, waiting: bool = False) -> Decided:
        """Sample the trial's params (tune), build its RunSpec, record its configuration and reserve its
        seeds, before it runs: the params a batch's later trials are sampled beside (constant liar),
        and seeds that skip those of this planner's earlier trials of the same key, whenever each runs.
        A ``waiting`` trial's owner says so until it starts (:mod:`golfplan.planner.liveness`); one that
        starts at once is owned from its start, as before."""
        rec = TrialRecord.of(trial)
        tc = self.trial_config(trial)
        spec, error = None, ""
        try:
            canon = canonical_plugins(self.registry, tc.plugins)
            spec = self.spec_for(canon, tc.config)
        except Exception as e:  # noqa: BLE001 - a plugin or the config rejects these values: refused when it runs
            canon = tc.plugins
            error = str(e) if isinstance(e, GolfplanError) else f"plugin code raised {type(e).__name__}: {e}"
        key = config_key(canon, tc.config)
        self._record_config(trial, rec, tc, canon, key)
        if waiting:
            rec.owner, rec.heartbeat = liveness.owner_record(waiting=True), time.time()
            self._write(trial, rec, "owner", "heartbeat")
        return Decided(tc, rec, canon, key, [] if error else self._seeds(key, list(rec.runs)), spec, error)

    def drop(self, trial: Any, reason: str) -> None:
        """A trial asked but never started (its batch stopped): told FAIL as unused, its seeds freed."""
        with self._lock:
            try:
                self._abandon(trial, "unused", reason)
            finally:
                self._running.discard(trial.number)
                self._decided.pop(trial.number, None)

    def beat(self, trial: Any) -> None:
        """The trial's heartbeat: this planner still holds it."""
        self._write(trial, TrialRecord(heartbeat=time.time()), "heartbeat")

    # ---- one trial ----------------------------------------------------------------------------
    def trial_config(self, trial: Any) -> TrialConfig:
        """What ``trial`` runs: sampled (tune; its label is decided once its key is known), or queued."""
        rec = TrialRecord.of(trial)
        if self.d.mode == "tune":
            with self._lock:  # the sampler, one thread at a time
                plugins = self.space.sample(trial)
            shown = {n: p for n, p in plugins.items() if n not in self.d.fixed}
            return TrialConfig(rec.label, plugins, {}, describe_plugins(shown, self.registry) if shown else
                               "no searched plugin on", rec.exp_id, "tune")
        return TrialConfig(rec.label or f"trial {trial.number}", rec.plugins, rec.config, rec.description, rec.exp_id,
                           rec.phase)

    def execute(self, trial: Any) -> dict[str, Any]:
        """Check, run the seeds, record, tell (the trial asked, and decided, by :meth:`ask`). Returns the
        trial's outcome as recorded."""
        t0 = time.time()
        self._local.trial, self._local.since = trial, t0
        with self._lock:
            self._running.add(trial.number)
            decided = self._decided.get(trial.number) or self._decide(trial)
        rec = decided.rec
        rec.owner, rec.heartbeat = liveness.owner_record(since=t0), t0
        self._write(trial, rec, "owner", "heartbeat")
        try:
            with liveness.Heartbeat(lambda: self.beat(trial)):
                return self._execute(trial, decided, t0)
        except BaseException as e:
            if isinstance(e, GolfplanError) or not isinstance(e, Exception):
                raise  # KeyboardInterrupt or a user error: the trial stays RUNNING and is reaped later
            self._planner_error(trial, rec, e, t0)
            raise
        finally:
            self._local.trial = self._local.since = None
            with self._lock:
                self._running.discard(trial.number)
                self._decided.pop(trial.number, None)

    def _planner_error(self, trial: Any, rec: TrialRecord, e: BaseException, t0: float) -> None:
        """A planner bug on this trial: fail it with the reason rather than losing the study."""
        import optuna

        rec.status, rec.failure, rec.reason = "failed", "crash", f"planner error: {type(e).__name__}: {e}"
        rec.cost_s = round(time.time() - t0, 3)
        self._write(trial, rec, "status", "failure", "reason", "cost_s")
        trial.set_constraint("failed", 1.0)
        self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)

    def _execute(self, trial: Any, decided: Decided, t0: float) -> dict[str, Any]:
        tc, rec, canon, key, spec = decided.tc, decided.rec, decided.plugins, decided.key, decided.spec
        if decided.error:
            reason = decided.error
            return self._refuse(trial, rec, tc, reason, CheckRecord(ok=False, reason=reason), t0)
        known = self.verdicts.known_refusal(key, list(canon))
        if known is not None:
            reason = f"{known.reason} (refused before, trial #{known.trial})"
            rec.check = CheckRecord(ok=False, reason=reason, cached=True)
            self._write(trial, rec, "check")
            return self._finish(trial, rec, tc, "refused", reason, [], t0, failure="refused")
        self.say(self.progress.started(trial.number, tc.label, self.progress.short(tc)))
        check, report, in_run = self.preflight.before(f"{trial.number:04d}-{_slug(tc.label)}", spec, key)
        if check is not None:
            self._checked(trial, rec, check)
            if not check.ok:
                return self._refuse(trial, rec, tc, check.reason, check, t0, check.failure or "refused", report)
        runs = list(rec.runs)  # a retry's finished runs
        for seed in decided.seeds:
            job = self._job(trial, tc, spec, seed, len(runs), check=in_run)
            outcome = call_runner(self.runner, job)
            if job.check:
                in_run = False
                self._checked(trial, rec, self.preflight.from_run(key, outcome))
            if outcome.status == "refused":
                return self._refuse(trial, rec, tc, outcome.reason, rec.check, t0, outcome.failure, outcome.check)
            runs.append(outcome)
            rec.runs = runs
            self._write(trial, rec, "runs")
            with self._lock:
                self.run_stats["run_s"] += outcome.wallclock_s or 0.0
                self.run_stats["train_s"] += outcome.train_time_s or 0.0
            if outcome.status == "pruned":
                break
        return self._finish(trial, rec, tc, None, "", runs, t0)

    def _checked(self, trial: Any, rec: TrialRecord, check: CheckRecord) -> None:
        rec.check = check
        self._write(trial, rec, "check")
        with self._lock:
            self.run_stats["check_s"] += check.seconds

    def _record_config(self, trial: Any, rec: TrialRecord, tc: TrialConfig, plugins: Plugins, key: str) -> None:
        if not tc.label:
            chosen = [n for n in plugins if n in self.space.optional]
            tc.label = tune_label(chosen, key == baseline_key(self.study))
        tc.plugins = plugins
        mine = tc.record(key)
        changed = [k for k, v in mine.config_attrs().items() if trial.user_attrs.get(k) != v]  # what is not stored
        for k in changed:
            setattr(rec, k, getattr(mine, k))
        self._write(trial, rec, *changed)

    def _seeds(self, key: str, runs: list[Any]) -> list[int]:
        """``repeats`` seeds for this trial: the profile's seed and up, skipping seeds this
        configuration already ran (in this trial before a restart, or in earlier trials) and seeds
        reserved for this planner's trials of it asked before and not finished (side by side, two
        trials of one configuration get two seeds, as one after the other)."""
        used = {r.seed for r in runs}
        for t in self._trials():
            rec = TrialRecord.of(t)
            if rec.key == key and rec.status != "interrupted":
                used |= rec.seeds()
        for other in self._decided.values():
            if other.key == key:
                used |= set(other.seeds)
        need = self.d.repeats - len([r for r in runs if r.status in ("complete", "failed")])
        out, s = [], self.base.config.seed
        while len(out) < need:
            if s not in used:
                out.append(s)
            s += 1
        return out

    def _limit_s(self, spec: Any) -> float:
        return hard_limit_s(spec.config.to_dict(), self.d.trial_timeout)

    def _job(self, trial: Any, tc: TrialConfig, spec: Any, seed: int, repeat: int, check: bool) -> Job:
        run_spec = spec.replace(seed=seed)
        run_dir = self.out_dir / self.d.name / f"{trial.number:04d}-{_slug(tc.label)}-s{seed}"

        def report(step: int, bpb: float) -> bool:
            trial.report(bpb, step)
            return trial.should_prune()

        prunable = repeat == 0 and self.d.mode == "tune" and self.d.pruner != "none"
        return Job(study=self.d.name, trial=trial.number, label=tc.label, plugins=run_spec.plugins,
                   spec=run_spec.to_dict(), seed=seed, run_dir=str(run_dir), timeout_s=self._limit_s(run_spec),
                   nproc=self.d.nproc, repeat=repeat, report=report if prunable else None, check=check,
                   threads=self.threads, devices=getattr(self._local, "devices", None))

    def _refuse(self, trial: Any, rec: TrialRecord, tc: TrialConfig, reason: str, check: CheckRecord | None,
                t0: float, failure: str = "refused", report: dict[str, Any] | None = None) -> dict[str, Any]:
        """The configuration is refused (costs no training): remembered, told as infeasible."""
        self.verdicts.remember(rec.key, rec.plugins, reason, trial.number, self.space, report)
        rec.check = check
        return self._finish(trial, rec, tc, "refused", reason, [], t0, failure=failure or "refused")

    def _finish(self, trial: Any, rec: TrialRecord, tc: TrialConfig, status: str | None, reason: str,
                runs: list[Any], t0: float, failure: str = "") -> dict[str, Any]:
        import optuna

        S = optuna.trial.TrialState
        value = None
        if status is None:
            status, value, reason, failure = settle(runs)
        rec.status, rec.reason, rec.failure, rec.cost_s = status, reason, failure, round(time.time() - t0, 3)
        summary = rec.summarize(self.baseline_ms(rec)) if runs else ()  # its runs as numbers (the dashboard's)
        self._write(trial, rec, "status", "reason", "failure", "cost_s", *summary)
        if status == "complete":
            limit = self.base.config.artifact_limit_bytes
            sizes = [r.artifact_bytes for r in runs if r.status == "complete" and r.artifact_bytes]
            trial.set_constraint("artifact_bytes", float(max(sizes) - limit) if sizes else 0.0)
            self.study.tell(trial, value)
        elif status == "pruned":
            self.study.tell(trial, state=S.PRUNED)
        else:
            trial.set_constraint(status, 1.0)  # refused / failed: infeasible, so the sampler avoids it
            self.study.tell(trial, state=S.PRUNED)
        with self._lock:
            self.run_stats["trials"] += 1
        self.say(self.progress.finished(trial.number, tc, status, reason, value, runs, rec.check, rec.cost_s))
        return {"status": status, "reason": reason, "value": value, "runs": [r.to_dict() for r in runs],
                "key": rec.key}

    # ---- reading the study ----------------------------------------------------------------------
    def _trials(self, states: Any = None) -> list[Any]:
        return self.study.get_trials(deepcopy=False, states=states)

    def finished(self) -> list[Any]:
        import optuna

        S = optuna.trial.TrialState
        return self._trials(states=(S.COMPLETE, S.PRUNED))

    def counted(self) -> list[Any]:
        """Trials that count toward ``trials``: all but interrupted and unused ones."""
        import optuna

        S = optuna.trial.TrialState
        return [t for t in self._trials() if t.state in (S.COMPLETE, S.PRUNED, S.RUNNING, S.WAITING)]

    def running(self) -> int:
        """How many trials this planner runs now."""
        return len(self._running)

    def running_rank(self, number: int, done: set[int] = frozenset()) -> int:
        """1 + how many of the trials this planner runs now came before trial ``number``, leaving out
        those in ``done`` (a trial told finished is still running here until its thread lets it go)."""
        with self._lock:
            return 1 + sum(1 for n in self._running if n < number and n not in done)

    def best(self) -> tuple[Any, float] | None:
        """Optuna's best trial (the lowest mean val_bpb among the feasible complete ones) and its value."""
        try:
            t = self.study.best_trial
        except ValueError:  # nothing complete, or nothing feasible, yet
            return None
        return t, t.value

    def baseline_ms(self, finishing: TrialRecord | None = None) -> float | None:
        """The baseline's mean ms/step in this study (None before it ran); ``finishing``: a trial about
        to be told, whose runs count when it is the baseline's configuration."""
        key = baseline_key(self.study)
        if not key:
            return None
        recs = [TrialRecord.of(t) for t in self.finished()] + ([finishing] if finishing is not None else [])
        return mean_ms(r for rec in recs if rec.key == key for r in rec.runs)

    # ---- budget -----------------------------------------------------------------------------
    def spent_s(self) -> float:
        return budget.spent_s(self._trials())

    def estimate_next_s(self) -> float:
        return budget.estimate_next_s(self.finished(), self.base.config, self.d.repeats, self.d.checks)

    def budget_stop(self, starting: Any = None) -> str:
        """Why no trial may start now ('' when one may). ``starting``: a trial asked already (a batch's,
        waiting for its turn), left out of what the others commit, as it is the one that would start."""
        if self.d.budget_hours is None:
            return ""
        trials, need = self._trials(), self.estimate_next_s()
        if starting is not None:
            trials = [t for t in trials if t.number != starting.number]
        return budget.stop_reason(budget.spent_s(trials), need, self.d.budget_hours, budget.committed_s(trials, need))

    def money(self, seconds: float) -> str:
        from golfplan.planner.progress import money

        return money(seconds, self.d.cost_per_hour)


def _slug(label: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "+-_." else "-" for ch in label)[:60]
