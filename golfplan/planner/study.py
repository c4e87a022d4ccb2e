"""The study loop: create or resume an Optuna study, then ask, check, run, record and tell, trial by
trial, until the mode's work is done or the budget is spent.

One Optuna trial is one *configuration* (plugins + params + config keys) run with ``repeats``
seeds, each seed one run of the runner (by default a ``golfplan run`` subprocess). What the planner
records on each trial (``trial.user_attrs``):

    label, description, plugins, config, key   the configuration and its stable hash
    status, reason, failure                    complete | pruned | refused | failed | interrupted
    runs                                       one entry per seed: status, val_bpb, val_loss, steps,
                                               ms/step, artifact bytes, wallclock, run directory, ...
    check                                      the preflight's verdict and time (cached per key)
    cost_s                                     seconds this trial held the machine (checks + runs)
    owner, heartbeat                           who runs it, and when it last said so

Optuna's own state is what the sampler learns from: complete trials carry their mean val_bpb and
a constraint ``artifact_bytes - limit`` (``trial.set_constraint``), so the best trial is the best
feasible one (``study.best_trial``); refused and failed trials are told as PRUNED with a violated
constraint, so TPE steers away from them; pruned trials are PRUNED.

The rest lives beside it: where studies are stored (:mod:`storage`), the configurations of each
mode (:mod:`configs`), the search space (:mod:`space`), the preflight and what the study
remembers of it (:mod:`checks`), runs (:mod:`runner`, :mod:`procs`), dead planners' trials
(:mod:`liveness`), the budget (:mod:`budget`) and the progress text (:mod:`progress`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from golfplan.core.errors import GolfplanError
from golfplan.planner import budget, checks, liveness, resume
from golfplan.planner.configs import (TrialConfig, enqueue_initial, experiment_configs, settle, tune_label,
                                      with_replacements)
from golfplan.planner.definition import (DEFAULT_STORAGE, Plugins, StudyDef, canonical_plugins, config_key,
                                         describe_plugins)
from golfplan.planner.progress import Progress, mean_ms
from golfplan.planner.runner import Job, Runner, SubprocessRunner, call_runner, hard_limit_s
from golfplan.planner.storage import BASELINE_ATTR, mask_url, open_storage

__all__ = ["BASELINE_ATTR", "LoopResult", "Planner", "TrialConfig"]


@dataclass
class LoopResult:
    ran: int = 0
    stopped: str = ""  # why the loop ended: done, or the budget's message


class Planner:
    """Create or resume one study and run its trials (``run``).

    ``runner`` is called once per seed of each trial (default: a ``golfplan run`` subprocess);
    ``say`` receives the progress lines. ``worker``: join a study another planner created (never
    enqueue); ``readonly``: read it for a report, run nothing.
    """

    def __init__(self, definition: StudyDef, storage: Any = None, runner: Runner | None = None,
                 out_dir: str | Path = "runs", registry: Any = None, say: Callable[[str], None] | None = None,
                 worker: bool = False, local_config: dict[str, Any] | None = None, readonly: bool = False) -> None:
        resume.quiet_optuna()
        self.d = definition
        url = storage if isinstance(storage, str) else (definition.storage or DEFAULT_STORAGE) if storage is None \
            else None
        self.storage_url = mask_url(url) if url else None  # for messages: the password masked
        self.storage = open_storage(url) if url else storage
        self.custom_runner = runner is not None
        self.runner: Runner = runner or SubprocessRunner(on_start=self._child_started)
        self.out_dir = Path(out_dir).resolve()
        self.say = say or (lambda msg: print(msg, flush=True))
        self.worker = worker or readonly
        self.readonly = readonly
        self.local_config = dict(local_config or {})  # per-machine keys (data paths) a worker may change
        if registry is None:
            from golfplan.registry import Registry

            registry = Registry(plugin_paths=definition.plugin_path)
        self.registry = registry
        self.d.validate(registry)
        self.study: Any = None
        self.space: Any = None
        self.base: Any = None  # the RunSpec every trial starts from
        self.screened: dict[str, str] = {}  # searched plugins refused alone: name -> reason
        self.verdicts: checks.Verdicts | None = None
        self.preflight: checks.Preflight | None = None
        self.progress = Progress(self)
        self._current_trial: Any = None
        self.t_start = time.time()
        self.run_stats = {"check_s": 0.0, "run_s": 0.0, "train_s": 0.0, "trials": 0}

    # ---- opening the study ---------------------------------------------------------------
    def open(self, enqueue: bool = True) -> Any:
        """Create the study, or load it and make sure it is the same study (resume).

        ``enqueue``: queue the mode's initial configurations (tune: baseline and all-on;
        ablate/experiments: every configuration not run yet). Workers never enqueue.
        """
        self.base = self._base_spec()
        self.study = resume.create_or_resume(self.d, self.storage, self.base, worker=self.worker,
                                             readonly=self.readonly)
        self.verdicts = checks.Verdicts(self.study, self.registry)
        self.preflight = checks.Preflight(self.d, self.registry, self.verdicts, in_run=not self.custom_runner,
                                          work_dir=self.out_dir / self.d.name, limit_s=self._limit_s,
                                          on_start=self._child_started)
        self.space = self._build_space()
        self.verdicts.forbid_known(self.space)
        if enqueue and not self.worker:
            self._enqueue_initial()
        return self.study

    def _base_spec(self) -> Any:
        return resume.base_spec(self.d, self.local_config)

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

    def _enqueue_initial(self) -> None:
        enqueue_initial(self.study, self.d, self.registry, self.space, self.key_of)

    # ---- the loop --------------------------------------------------------------------------
    def run(self, max_new: int | None = None) -> LoopResult:
        """Run trials until the mode's work is done, the budget is spent, or ``max_new`` ran here."""
        if self.study is None:
            self.open()
        res = LoopResult()
        self.reap_stale()
        while True:
            if max_new is not None and res.ran >= max_new:
                res.stopped = "done"
                break
            why = self._no_more_work() or self._budget_stop()
            if why:
                res.stopped = why
                if why != "done":
                    self.say(why)
                break
            self.verdicts.forbid_known(self.space)  # refusals other workers learned meanwhile
            trial = self.study.ask()
            if self.d.mode != "tune" and not trial.user_attrs.get("key"):
                self._abandon(trial, "unused", "no queued configuration left when this worker asked")
                res.stopped = "done"
                break
            self.execute(trial)
            res.ran += 1
            self.reap_stale()
        return res

    def _no_more_work(self) -> str:
        import optuna

        if self._trials(states=(optuna.trial.TrialState.WAITING,)):
            return ""  # queued trials (initial ones, retries of interrupted ones) always run
        if self.d.mode == "tune":
            return "done" if len(self.counted()) >= self.d.trials else ""
        return "done"

    def reap_stale(self) -> int:
        """Mark the RUNNING trials of dead planners as interrupted and queue them again."""
        mine = self._current_trial.number if self._current_trial is not None else None
        return liveness.reap_stale(self.study, self.storage, mine, self.say)

    def _abandon(self, trial: Any, status: str, reason: str) -> None:
        import optuna

        trial.set_user_attr("status", status)
        trial.set_user_attr("reason", reason)
        self.study.tell(trial, state=optuna.trial.TrialState.FAIL)

    def _child_started(self, pid: int) -> None:
        if self._current_trial is not None:
            try:
                self._current_trial.set_user_attr("owner", liveness.owner_record(child=pid))
            except Exception:  # noqa: BLE001 - best effort: the pdeathsig already ties the child to us
                pass

    # ---- one trial ----------------------------------------------------------------------------
    def trial_config(self, trial: Any) -> TrialConfig:
        """What ``trial`` runs: sampled (tune; its label is decided once its key is known), or queued."""
        ua = trial.user_attrs
        if self.d.mode == "tune":
            plugins = self.space.sample(trial)
            shown = {n: p for n, p in plugins.items() if n not in self.d.fixed}
            return TrialConfig(ua.get("label", ""), plugins, {}, describe_plugins(shown, self.registry) if shown else
                               "no searched plugin on", ua.get("exp_id", ""), "tune")
        return TrialConfig(ua.get("label", f"trial {trial.number}"), dict(ua.get("plugins") or {}),
                           dict(ua.get("config") or {}), ua.get("description", ""), ua.get("exp_id", ""),
                           ua.get("phase", ""))

    def execute(self, trial: Any) -> dict[str, Any]:
        """Check, run the seeds, record, tell. Returns the trial's outcome as recorded."""
        import optuna

        t0 = time.time()
        self._current_trial = trial
        trial.set_user_attr("owner", liveness.owner_record())
        trial.set_user_attr("heartbeat", t0)
        try:
            with liveness.Heartbeat(trial):
                return self._execute(trial, t0)
        except BaseException as e:
            if isinstance(e, GolfplanError) or not isinstance(e, Exception):
                raise  # KeyboardInterrupt or a user error: the trial stays RUNNING and is reaped later
            # a planner bug on this trial: fail it with the reason rather than losing the study
            trial.set_user_attr("status", "failed")
            trial.set_user_attr("failure", "crash")
            trial.set_user_attr("reason", f"planner error: {type(e).__name__}: {e}")
            trial.set_user_attr("cost_s", round(time.time() - t0, 3))
            trial.set_constraint("failed", 1.0)
            self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            raise
        finally:
            self._current_trial = None

    def _execute(self, trial: Any, t0: float) -> dict[str, Any]:
        tc = self.trial_config(trial)
        try:
            canon = canonical_plugins(self.registry, tc.plugins)
            spec = self.spec_for(canon, tc.config)
        except Exception as e:  # noqa: BLE001 - a plugin or the config rejects these values: refuse them
            canon, key = tc.plugins, config_key(tc.plugins, tc.config)
            self._record_config(trial, tc, canon, key)
            reason = str(e) if isinstance(e, GolfplanError) else f"plugin code raised {type(e).__name__}: {e}"
            return self._refuse(trial, tc, key, canon, reason, {"ok": False, "reason": reason, "seconds": 0.0,
                                                                 "cached": False}, t0)
        key = config_key(canon, tc.config)
        self._record_config(trial, tc, canon, key)
        known = self.verdicts.known_refusal(key, list(canon))
        if known is not None:
            reason = f"{known['reason']} (refused before, trial #{known.get('trial')})"
            check = {"ok": False, "reason": reason, "cached": True, "seconds": 0.0}
            trial.set_user_attr("check", check)
            return self._finish(trial, tc, "refused", reason, [], t0, check, failure="refused")
        self.say(self.progress.started(trial.number, tc.label, self.progress.short(tc)))
        check, report, in_run = self.preflight.before(f"{trial.number:04d}-{_slug(tc.label)}", spec, key)
        if check is not None:
            trial.set_user_attr("check", check)
            self.run_stats["check_s"] += check.get("seconds", 0.0)
            if not check["ok"]:
                return self._refuse(trial, tc, key, canon, check["reason"], check, t0, check.get("failure", "refused"),
                                    report)
        runs: list[dict[str, Any]] = list(trial.user_attrs.get("runs") or [])
        for seed in self._seeds(key, runs):
            job = self._job(trial, tc, spec, seed, len(runs), check=in_run)
            outcome = call_runner(self.runner, job)
            if job.check:
                in_run, check = False, self.preflight.from_run(key, outcome)
                trial.set_user_attr("check", check)
                self.run_stats["check_s"] += check.get("seconds", 0.0)
            if outcome.status == "refused":
                return self._refuse(trial, tc, key, canon, outcome.reason, check or {}, t0, outcome.failure,
                                    outcome.check)
            runs.append(outcome.to_dict())
            trial.set_user_attr("runs", runs)
            self.run_stats["run_s"] += outcome.wallclock_s or 0.0
            self.run_stats["train_s"] += outcome.train_time_s or 0.0
            if outcome.status == "pruned":
                break
        return self._finish(trial, tc, None, "", runs, t0, check or {})

    def _record_config(self, trial: Any, tc: TrialConfig, plugins: Plugins, key: str) -> None:
        if not tc.label:
            chosen = [n for n in plugins if n in self.space.optional]
            tc.label = tune_label(chosen, key == self.study.user_attrs.get(BASELINE_ATTR))
        tc.plugins = plugins
        for k, v in tc.attrs(key).items():
            if trial.user_attrs.get(k) != v:
                trial.set_user_attr(k, v)

    def _seeds(self, key: str, runs: list[dict[str, Any]]) -> list[int]:
        """``repeats`` seeds for this trial: the profile's seed and up, skipping seeds this
        configuration already ran (in this trial before a restart, or in earlier trials)."""
        used = {r.get("seed") for r in runs}
        for t in self._trials():
            if t.user_attrs.get("key") == key and t.user_attrs.get("status") != "interrupted":
                used |= {r.get("seed") for r in t.user_attrs.get("runs", [])}
        need = self.d.repeats - len([r for r in runs if r.get("status") in ("complete", "failed")])
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
                   nproc=self.d.nproc, repeat=repeat, report=report if prunable else None, check=check)

    def _refuse(self, trial: Any, tc: TrialConfig, key: str, plugins: Plugins, reason: str, check: dict[str, Any],
                t0: float, failure: str = "refused", report: dict[str, Any] | None = None) -> dict[str, Any]:
        """The configuration is refused (costs no training): remembered, told as infeasible."""
        self.verdicts.remember(key, plugins, reason, trial.number, self.space, report)
        return self._finish(trial, tc, "refused", reason, [], t0, check, failure=failure or "refused")

    def _finish(self, trial: Any, tc: TrialConfig, status: str | None, reason: str, runs: list[dict[str, Any]],
                t0: float, check: dict[str, Any], failure: str = "") -> dict[str, Any]:
        import optuna

        S = optuna.trial.TrialState
        value = None
        if status is None:
            status, value, reason, failure = settle(runs)
        cost = round(time.time() - t0, 3)
        for k, v in (("status", status), ("reason", reason), ("failure", failure), ("cost_s", cost)):
            trial.set_user_attr(k, v)
        if status == "complete":
            limit = self.base.config.artifact_limit_bytes
            sizes = [r.get("artifact_bytes") for r in runs if r.get("status") == "complete" and r.get("artifact_bytes")]
            trial.set_constraint("artifact_bytes", float(max(sizes) - limit) if sizes else 0.0)
            self.study.tell(trial, value)
        elif status == "pruned":
            self.study.tell(trial, state=S.PRUNED)
        else:
            trial.set_constraint(status, 1.0)  # refused / failed: infeasible, so the sampler avoids it
            self.study.tell(trial, state=S.PRUNED)
        self.run_stats["trials"] += 1
        self.say(self.progress.finished(trial.number, tc, status, reason, value, runs, check, cost))
        return {"status": status, "reason": reason, "value": value, "runs": runs, "key": trial.user_attrs.get("key")}

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

    def best(self) -> tuple[Any, float] | None:
        """Optuna's best trial (the lowest mean val_bpb among the feasible complete ones) and its value."""
        try:
            t = self.study.best_trial
        except ValueError:  # nothing complete, or nothing feasible, yet
            return None
        return t, t.value

    def baseline_ms(self) -> float | None:
        """The baseline's mean ms/step in this study (None before it ran)."""
        key = self.study.user_attrs.get(BASELINE_ATTR)
        return mean_ms(r for t in self.finished() if key and t.user_attrs.get("key") == key
                       for r in t.user_attrs.get("runs") or [])

    # ---- budget -----------------------------------------------------------------------------
    def spent_s(self) -> float:
        return budget.spent_s(self._trials())

    def estimate_next_s(self) -> float:
        return budget.estimate_next_s(self.finished(), self.base.config, self.d.repeats, self.d.checks)

    def _budget_stop(self) -> str:
        if self.d.budget_hours is None:
            return ""
        return budget.stop_reason(self.spent_s(), self.estimate_next_s(), self.d.budget_hours)

    def money(self, seconds: float) -> str:
        from golfplan.planner.progress import money

        return money(seconds, self.d.cost_per_hour)


def _slug(label: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "+-_." else "-" for ch in label)[:60]
