"""An Optuna study of golfplan trials: storage, the trial loop, resume, budgets, several workers.

One Optuna trial is one *configuration* (plugins + params) run with ``repeats`` seeds, each seed
one run of the runner (by default a ``golfplan run`` subprocess). What the planner records on
each trial (``trial.user_attrs``):

    label, description, plugins, config, key   the configuration and its stable hash
    status, reason, failure                    complete | pruned | refused | failed | interrupted
    runs                                       one entry per seed: status, val_bpb, val_loss, steps,
                                               ms/step, artifact bytes, wallclock, run directory, ...
    check                                      the preflight's verdict and time (cached per key)
    cost_s                                     seconds this trial held the machine (checks + runs)
    owner, heartbeat                           who runs it, and when it last said so

Optuna's own state is what the sampler learns from: complete trials carry their mean val_bpb
and a constraint ``artifact_bytes - limit`` (``trial.set_constraint``), so the best trial is the
best feasible one; refused and failed trials are told as PRUNED with a violated constraint, so
TPE steers away from them; pruned trials are PRUNED. A trial whose planner died (``kill -9``,
a crash, a lost machine) is found by the next planner or worker on the study: its owner's
process is gone (same host) or its heartbeat is stale (other hosts). It is marked FAIL
(``status: interrupted``, never counted) and enqueued again with the runs it had finished, so
nothing finished is lost and nothing is counted twice.
"""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from golfplan.core.errors import GolfplanError
from golfplan.planner.definition import (DEFAULT_STORAGE, Experiment, Plugins, StudyDef, StudyError,
                                         canonical_plugins, config_key, describe_plugins)
from golfplan.planner.runner import Job, Runner, SubprocessRunner, call_runner

DEF_ATTR = "golfplan.definition"
BASELINE_ATTR = "golfplan.baseline_key"
BASE_ATTR = "golfplan.base_config"
REFUSED_PREFIX = "golfplan.refused:"
CHECKED_PREFIX = "golfplan.check:"
HEARTBEAT_S = 10.0
STALE_REMOTE_S = 300.0  # a heartbeat older than this on another host: that planner is gone
STALE_LOCAL_NOOWNER_S = 60.0  # a RUNNING trial that never recorded an owner


# ---- storage ---------------------------------------------------------------------------


def open_storage(url: str | None) -> Any:
    """An Optuna storage from a URL: sqlite:///file.db (default), postgresql://..., or a journal file
    (``journal:PATH`` or a path ending in .log / .journal / .jsonl)."""
    import optuna

    url = url or DEFAULT_STORAGE
    journal = None
    if url.startswith("journal:"):
        journal = url[len("journal:"):]
        journal = journal[2:] if journal.startswith("//") else journal
    elif "://" not in url and url.endswith((".log", ".journal", ".jsonl")):
        journal = url
    if journal is not None:
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        if not journal:
            raise StudyError("journal storage needs a file: journal:PATH")
        Path(journal).parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(journal))
    if "://" not in url:
        raise StudyError(f"storage '{url}' is not a URL: use sqlite:///FILE.db, postgresql://USER@HOST/DB "
                         f"or journal:FILE")
    kwargs: dict[str, Any] = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
    except Exception as e:  # noqa: BLE001 - driver and connection errors, as one line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise StudyError(f"cannot open storage {url}: {type(e).__name__}: {first}") from None


def study_names(storage: Any) -> list[str]:
    import optuna

    return [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]


def load_definition(storage: Any, name: str) -> StudyDef:
    import optuna

    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        from golfplan.core.errors import closest

        raise StudyError(f"no study '{name}' in this storage{closest(name, study_names(storage))}") from None
    raw = study.user_attrs.get(DEF_ATTR)
    if raw is None:
        raise StudyError(f"study '{name}' was not made by golfplan (no definition stored)")
    return StudyDef.from_dict(raw, where=f"stored study '{name}'")


# ---- liveness of the process that owns a trial ---------------------------------------------


def _proc_start(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    now = _proc_start(pid)
    return start is None or now is None or now == start


def owner_record(child: int | None = None) -> dict[str, Any]:
    pid = os.getpid()
    rec: dict[str, Any] = {"host": socket.gethostname(), "pid": pid, "start": _proc_start(pid)}
    if child is not None:
        rec["child"] = child
        rec["child_start"] = _proc_start(child)
    return rec


def _kill_orphan(owner: dict[str, Any]) -> None:
    """Kill what a dead planner's run left on this host: the run's process group (the run is a
    session leader, so its group id is its pid). Normally it died with its planner already; a
    torchrun under it (``--nproc``) may not have. Only processes whose command line names
    golfplan or torch's launcher are touched."""
    import signal

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


# ---- the planner ---------------------------------------------------------------------------


@dataclass
class TrialConfig:
    label: str
    plugins: Plugins
    config: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    exp_id: str = ""
    phase: str = ""

    def attrs(self, key: str) -> dict[str, Any]:
        return {"label": self.label, "plugins": self.plugins, "config": self.config, "key": key,
                "description": self.description, "exp_id": self.exp_id, "phase": self.phase}


@dataclass
class LoopResult:
    ran: int = 0
    stopped: str = ""  # why the loop ended


def _quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message=".*constraints_func.*")


class Planner:
    """Create or resume one study and run its trials (``run``), or evaluate given configurations.

    ``runner`` is called once per seed of each trial (default: a ``golfplan run`` subprocess);
    ``say`` receives the progress lines.
    """

    def __init__(self, definition: StudyDef, storage: Any = None, runner: Runner | None = None,
                 out_dir: str | Path = "runs", registry: Any = None, say: Callable[[str], None] | None = None,
                 worker: bool = False, local_config: dict[str, Any] | None = None, readonly: bool = False) -> None:
        _quiet_optuna()
        self.d = definition
        self.storage_url = storage if isinstance(storage, str) or storage is None else None
        self.storage = open_storage(storage or definition.storage) if (storage is None or isinstance(storage, str)) \
            else storage
        self.custom_runner = runner is not None
        self.runner: Runner = runner or SubprocessRunner(on_start=self._child_started)
        self.out_dir = Path(out_dir).resolve()
        self.say = say or (lambda msg: print(msg, flush=True))
        self.worker = worker or readonly
        self.readonly = readonly  # reports: read the study, run nothing
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
        self._check_cache: dict[str, dict[str, Any]] = {}
        self._current_trial: Any = None
        self.t_start = time.time()
        self.run_stats = {"check_s": 0.0, "run_s": 0.0, "train_s": 0.0, "trials": 0}

    # ---- setup -----------------------------------------------------------------------
    def open(self, enqueue: bool = True) -> Any:
        """Create the study, or load it and make sure it is the same study (resume).

        ``enqueue``: queue the mode's initial configurations (tune: baseline and all-on;
        ablate/experiments: every configuration not run yet). Workers never enqueue.
        """
        import optuna

        self.base = self._base_spec()
        name = self.d.name
        try:
            study = optuna.load_study(study_name=name, storage=self.storage, sampler=self._sampler(),
                                      pruner=self._pruner())
            stored = study.user_attrs.get(DEF_ATTR)
            if stored is None:
                raise StudyError(f"study '{name}' exists but was not made by golfplan; pick another --study name")
            if not self.worker:
                old = StudyDef.from_dict(stored, where=f"stored study '{name}'")
                mine, theirs = self.d.identity(), old.identity()
                diff = [k for k in mine if mine[k] != theirs.get(k)]
                if diff:
                    raise StudyError(f"study '{name}' already exists with a different {diff[0]} "
                                     f"({theirs.get(diff[0])!r} there, {mine[diff[0]]!r} here); "
                                     f"rerun it as it was or pick another --study name")
                study.set_user_attr(DEF_ATTR, self.d.to_dict())  # budgets and counts may change
            if not self.readonly:
                self._same_base(study)  # a worker too: same profile and defaults as the study's creator
        except KeyError:
            if self.worker:
                raise StudyError(f"no study '{name}' in this storage") from None
            study = optuna.create_study(study_name=name, storage=self.storage, direction="minimize",
                                        sampler=self._sampler(), pruner=self._pruner(), load_if_exists=True)
            study.set_user_attr(DEF_ATTR, self.d.to_dict())
            study.set_user_attr(BASE_ATTR, self._base_record())
        self.study = study
        self.space = self._build_space()
        self._load_refusals()
        if enqueue and not self.worker:
            self._enqueue_initial()
        return study

    def _base_record(self) -> dict[str, Any]:
        """The resolved config every trial starts from (paths to this machine's data left out)."""
        skip = ("data_path", "tokenizer_path", "progress_bar")
        return {"profile": self.base.profile,
                "config": {k: v for k, v in self.base.config.to_dict().items() if k not in skip}}

    def _same_base(self, study: Any) -> None:
        """A resumed study must start its trials from the same resolved config (a profile or a
        default that changed in between would mix two different experiments in one table)."""
        stored = study.user_attrs.get(BASE_ATTR)
        mine = self._base_record()
        if stored is None:
            study.set_user_attr(BASE_ATTR, mine)
            return
        if stored["profile"] != mine["profile"]:
            raise StudyError(f"study '{self.d.name}' ran on profile {stored['profile']}, this is {mine['profile']}")
        for k, v in mine["config"].items():
            if k in stored["config"] and stored["config"][k] != v:
                raise StudyError(f"study '{self.d.name}' ran with {k}={stored['config'][k]!r}; the resolved config "
                                 f"now has {k}={v!r}; pick another --study name")

    def _sampler(self) -> Any:
        import optuna

        seed = self.d.seed
        if self.worker:  # each worker its own stream, or two workers would propose the same params
            seed = (seed * 1_000_003 + os.getpid()) % (2**31)
        if self.d.sampler == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        n_startup = max(3, min(10, self.d.trials // 4))
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup, multivariate=True, group=True,
                                          constant_liar=True)

    def _pruner(self) -> Any:
        import optuna

        if self.d.pruner == "none" or self.d.mode != "tune":
            return optuna.pruners.NopPruner()
        return optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=0)

    def _base_spec(self) -> Any:
        import yaml

        from golfplan.core.config import load_spec

        data: dict[str, Any] = dict(self.d.config)
        data.update(self.local_config)
        if self.d.trial_seconds is not None:
            data["max_wallclock_seconds"] = self.d.trial_seconds
        data["progress_bar"] = False
        data["plugins"] = {}
        if self.d.plugin_path:
            data["plugin_path"] = list(self.d.plugin_path)
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            yaml.safe_dump(data, f)
            path = f.name
        try:
            return load_spec(profile=self.d.profile, config_file=path)
        finally:
            os.unlink(path)

    def _build_space(self) -> Any:
        from golfplan.planner.space import SearchSpace, param_domain

        optional = dict(self.d.plugins) if self.d.mode == "tune" else {}
        domains: dict[str, dict[str, list]] = {}
        if self.d.mode == "tune" and self.d.checks != "none":
            for name in list(optional) + list(self.d.always):
                given = optional.get(name, self.d.always.get(name, {}))
                refusal = self._static_refusal({name: given})
                if refusal and name in optional:
                    self.screened[name] = refusal
                    continue
                for pname, spec in self.registry.get(name).params.items():
                    domain = param_domain(spec)
                    if pname in given or domain is None:
                        continue
                    ok = [v for v in domain if not self._static_refusal({name: {**given, pname: v}})]
                    if len(ok) < len(domain):
                        domains.setdefault(name, {})[pname] = ok
                        if not ok:
                            self.screened[name] = f"no value of {pname} passes the static check"
            for name in self.screened:
                optional.pop(name, None)
        return SearchSpace(self.registry, optional, self.d.always if self.d.mode == "tune" else {},
                           self.d.fixed, domains)

    def _static_refusal(self, plugins: Plugins) -> str:
        from golfplan.planner.check import run_checks

        spec = self._spec_for({**self.d.fixed, **plugins}, {})
        report = run_checks(spec, self.registry, only_static=True)
        return "" if report.ok else report.reason

    # ---- configurations -----------------------------------------------------------------
    def _spec_for(self, plugins: Plugins, config: dict[str, Any], seed: int | None = None) -> Any:
        from golfplan.core.config import RunSpec

        changes = dict(config)
        if seed is not None:
            changes["seed"] = seed
        cfg = self.base.config.replace(**changes) if changes else self.base.config
        return RunSpec(profile=self.base.profile, config=cfg, plugins={n: dict(p) for n, p in plugins.items()},
                       plugin_paths=list(self.base.plugin_paths), explicit=set(self.base.explicit) | set(changes))

    def key_of(self, plugins: Plugins, config: dict[str, Any] | None = None) -> str:
        return config_key(canonical_plugins(self.registry, plugins), config)

    def baseline_config(self) -> TrialConfig:
        plugins = {n: dict(p) for n, p in self.d.fixed.items()}
        if self.d.mode == "tune":
            plugins.update({n: self.space.defaults(n) for n in self.d.always})
        return TrialConfig("baseline", plugins, description=describe_plugins(plugins, self.registry)
                           if plugins else "no plugins: the profile's baseline", exp_id="0")

    def experiment_configs(self) -> list[TrialConfig]:
        """The fixed configurations of an ablate or experiments study, baseline first."""
        out: list[TrialConfig] = []
        if self.d.baseline or self.d.mode == "ablate":
            out.append(self.baseline_config())
        if self.d.mode == "ablate":
            for i, (name, params) in enumerate(self.d.plugins.items(), 1):
                plugins = self._with_replacements({name: dict(params)}, [])
                cls = self.registry.get(name)
                out.append(TrialConfig(name, plugins, description=cls.summary, exp_id=str(i), phase="ablate"))
        for e in self.d.experiments:
            out.append(self.experiment_config(e))
        return out

    def experiment_config(self, e: Experiment) -> TrialConfig:
        plugins = self._with_replacements(e.plugins, e.without)
        return TrialConfig(e.name or e.id, plugins, dict(e.config), e.description or describe_plugins(e.plugins),
                           e.id, "experiments")

    def _with_replacements(self, added: Plugins, without: list[str]) -> Plugins:
        taken = {s for n in added for s in self.registry.get(n).slots()}
        out = {n: dict(p) for n, p in self.d.fixed.items()
               if n not in without and n not in added and not (set(self.registry.get(n).slots()) & taken)}
        out.update({n: dict(p) for n, p in added.items()})
        return out

    def _enqueue_initial(self) -> None:
        import optuna

        trials = self.study.get_trials(deepcopy=False)
        if self.d.mode == "tune":
            base = self.baseline_config()
            self.study.set_user_attr(BASELINE_ATTR, self.key_of(base.plugins))
            if trials:
                return  # resumed: the initial trials were enqueued when it was created
            chosen_all = self.space.all_on()
            for label, chosen in (("baseline", {}), ("all-on", chosen_all))[: self.d.trials]:
                if label == "all-on" and not chosen:
                    continue
                params = self.space.encode(chosen)
                self.study.enqueue_trial(params, user_attrs={"label": label, "phase": "tune"}, skip_if_exists=True)
            return
        configs = self.experiment_configs()
        if configs and configs[0].label == "baseline":
            self.study.set_user_attr(BASELINE_ATTR, self.key_of(configs[0].plugins, configs[0].config))
        # one trial per configuration entry; two entries of one configuration (the seed's reruns)
        # are two trials whose runs pool in the report
        have = {(t.user_attrs.get("exp_id"), t.user_attrs.get("key")) for t in trials
                if t.state != optuna.trial.TrialState.FAIL and t.user_attrs.get("key")}
        for c in configs:
            key = self.key_of(c.plugins, c.config)
            if (c.exp_id, key) not in have:
                self.study.enqueue_trial({}, user_attrs=c.attrs(key))
                have.add((c.exp_id, key))

    # ---- refusals -------------------------------------------------------------------------
    def _load_refusals(self) -> None:
        for k, v in self.study.user_attrs.items():
            if k.startswith(REFUSED_PREFIX) and v.get("subset"):
                self.space.forbid(v["subset"])

    def _known_refusal(self, key: str, names: list[str]) -> dict[str, Any] | None:
        attrs = self.study.user_attrs
        hit = attrs.get(REFUSED_PREFIX + key)
        if hit:
            return hit
        on = set(names)
        for k, v in attrs.items():
            if k.startswith(REFUSED_PREFIX) and v.get("subset") and set(v["subset"]) <= on:
                return v
        return None

    def _remember_refusal(self, key: str, plugins: Plugins, report: Any, trial_number: int) -> dict[str, Any]:
        """Store the refusal; when it does not depend on param values, as a forbidden subset."""
        from golfplan.registry import combination_problems

        failed = next((r for r in report.results if r.status == "fail"), None)
        names = sorted(plugins)
        subset: list[str] | None = None
        if failed is not None:
            if failed.name == "static" and combination_problems(self.registry.classes(names)):
                subset = names
            elif failed.name == "static" and failed.plugin:  # not compile-safe, without --allow-eager
                subset = [failed.plugin]
            elif failed.name in ("trace", "declarations"):
                subset = [failed.plugin] if failed.plugin else names
        entry = {"reason": report.reason, "trial": trial_number, "subset": subset, "key": key}
        self.study.set_user_attr(REFUSED_PREFIX + key, entry)
        if subset:
            self.study.set_user_attr(REFUSED_PREFIX + "set:" + "+".join(subset), entry)
            self.space.forbid(subset)
        return entry

    def _check(self, spec: Any, key: str) -> dict[str, Any]:
        """The preflight for this exact configuration, once per study (cached in the storage)."""
        if self.d.checks == "none":
            return {"ok": True, "reason": "", "seconds": 0.0, "cached": False, "skipped": True}
        hit = self._check_cache.get(key) or self.study.user_attrs.get(CHECKED_PREFIX + key)
        if hit:
            return {**hit, "cached": True, "seconds": 0.0}
        from golfplan.planner.check import run_checks

        t0 = time.perf_counter()
        report = run_checks(spec, self.registry, smoke_steps=self.d.smoke_steps,
                            world_size=self.d.nproc if self.d.nproc > 1 else None,
                            only_static=self.d.checks == "static")
        out = {"ok": report.ok, "reason": report.reason, "eager": report.eager, "estimate": report.estimate,
               "seconds": round(time.perf_counter() - t0, 3), "cached": False,
               "checks": {r.name: r.seconds for r in report.results}, "_report": report}
        if report.ok:
            stored = {k: v for k, v in out.items() if k != "_report"}
            self._check_cache[key] = stored
            self.study.set_user_attr(CHECKED_PREFIX + key, stored)
        return out

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
            why = self._no_more_work()
            if why:
                res.stopped = why
                break
            why = self._budget_stop()
            if why:
                res.stopped = why
                self.say(why)
                break
            self._load_refusals()  # refusals other workers learned meanwhile
            trial = self.study.ask()
            if self.d.mode != "tune" and not trial.user_attrs.get("key"):
                self._abandon(trial, "unused", "no queued configuration left when this worker asked")
                res.stopped = "done"
                break
            self.execute(trial)
            res.ran += 1
            self.reap_stale()
        return res

    def _trials(self, states: Any = None) -> list[Any]:
        return self.study.get_trials(deepcopy=False, states=states)

    def counted(self) -> list[Any]:
        """Trials that count toward ``trials``: all but interrupted and unused ones."""
        import optuna

        S = optuna.trial.TrialState
        return [t for t in self._trials() if t.state in (S.COMPLETE, S.PRUNED, S.RUNNING, S.WAITING)]

    def _no_more_work(self) -> str:
        import optuna

        waiting = self._trials(states=(optuna.trial.TrialState.WAITING,))
        if waiting:  # queued trials (initial ones, retries of interrupted ones) always run
            return ""
        if self.d.mode == "tune":
            return "done" if len(self.counted()) >= self.d.trials else ""
        return "done"

    # ---- budget ----------------------------------------------------------------------------
    def spent_s(self) -> float:
        import optuna

        total = 0.0
        now = time.time()
        for t in self._trials():
            if t.state == optuna.trial.TrialState.RUNNING:
                if t.datetime_start is not None:
                    total += max(now - t.datetime_start.timestamp(), 0.0)
            elif not t.user_attrs.get("copied_from"):  # runs copied from another study were paid there
                total += float(t.user_attrs.get("cost_s") or 0.0)
        return total

    def estimate_next_s(self) -> float:
        """Seconds the next trial needs: the slowest run seen (or the cap + overheads) x repeats + a check."""
        import optuna

        runs, checks = [], []
        for t in self._trials(states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)):
            runs += [r.get("wallclock_s") or 0.0 for r in t.user_attrs.get("runs", []) if r.get("status") == "complete"]
            c = t.user_attrs.get("check") or {}
            if not c.get("cached") and c.get("seconds"):
                checks.append(float(c["seconds"]))
        cap = self.base.config.max_wallclock_seconds
        per_run = max(runs) if runs else (cap * 1.3 + 30.0 if cap > 0 else 600.0)
        check = 0.0 if self.d.checks == "none" else (max(checks) if checks else 10.0)
        return per_run * self.d.repeats + check

    def _budget_stop(self) -> str:
        if self.d.budget_hours is None:
            return ""
        budget = self.d.budget_hours * 3600.0
        spent, need = self.spent_s(), self.estimate_next_s()
        if spent + need > budget:
            return (f"budget: {fmt_s(spent)} of {fmt_s(budget)} spent; the next trial needs ~{fmt_s(need)}, "
                    f"so no new trial starts")
        return ""

    def money(self, seconds: float) -> str:
        if self.d.cost_per_hour is None:
            return ""
        return f"${seconds / 3600.0 * self.d.cost_per_hour:.2f}"

    # ---- stale trials -----------------------------------------------------------------------
    def reap_stale(self) -> int:
        """Mark the RUNNING trials of dead planners as interrupted and queue them again."""
        import optuna
        from optuna.exceptions import UpdateFinishedTrialError

        n = 0
        host, now = socket.gethostname(), time.time()
        mine = self._current_trial.number if self._current_trial is not None else None
        for t in self._trials(states=(optuna.trial.TrialState.RUNNING,)):
            if t.number == mine:
                continue
            owner = t.user_attrs.get("owner")
            if owner is None:
                started = t.datetime_start.timestamp() if t.datetime_start else now
                if now - started < STALE_LOCAL_NOOWNER_S:
                    continue
            elif owner.get("host") == host:
                if owner.get("pid") == os.getpid() or _alive(owner["pid"], owner.get("start")):
                    continue
                _kill_orphan(owner)
            elif now - float(t.user_attrs.get("heartbeat") or 0) < STALE_REMOTE_S:
                continue
            last = float(t.user_attrs.get("heartbeat") or (t.datetime_start.timestamp() if t.datetime_start else now))
            cost = max(last - (t.datetime_start.timestamp() if t.datetime_start else last), 0.0)
            try:
                self.storage.set_trial_user_attr(t._trial_id, "status", "interrupted")
                self.storage.set_trial_user_attr(t._trial_id, "reason", "its planner stopped mid-trial "
                                                 "(killed or crashed); queued again")
                self.storage.set_trial_user_attr(t._trial_id, "cost_s", round(cost, 3))
                self.storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
            except (UpdateFinishedTrialError, RuntimeError):
                continue  # another planner got there first
            carry = {k: v for k, v in t.user_attrs.items()
                     if k in ("label", "plugins", "config", "key", "description", "exp_id", "phase", "runs")}
            carry["retry_of"] = t.number
            carry["runs"] = [r for r in carry.get("runs", []) if r.get("status") in ("complete", "failed")]
            self.study.enqueue_trial(dict(t.params), user_attrs=carry)
            self.say(f"trial #{t.number} was cut off (its planner stopped); marked failed and queued again")
            n += 1
        return n

    def _abandon(self, trial: Any, status: str, reason: str) -> None:
        import optuna

        trial.set_user_attr("status", status)
        trial.set_user_attr("reason", reason)
        self.study.tell(trial, state=optuna.trial.TrialState.FAIL)

    def _child_started(self, pid: int) -> None:
        if self._current_trial is not None:
            try:
                self._current_trial.set_user_attr("owner", owner_record(child=pid))
            except Exception:  # noqa: BLE001 - best effort: the pdeathsig already ties the run to us
                pass

    # ---- one trial ----------------------------------------------------------------------------
    def trial_config(self, trial: Any) -> TrialConfig:
        ua = trial.user_attrs
        if self.d.mode == "tune":
            plugins = self.space.sample(trial)
            chosen = [n for n in plugins if n in self.space.optional]
            label = ua.get("label") or ("+".join(chosen) if chosen else "baseline")
            shown = {n: p for n, p in plugins.items() if n not in self.d.fixed}
            return TrialConfig(label, plugins, {}, describe_plugins(shown, self.registry) if shown else
                               "no searched plugin on", ua.get("exp_id", ""), "tune")
        return TrialConfig(ua.get("label", f"trial {trial.number}"), dict(ua.get("plugins") or {}),
                           dict(ua.get("config") or {}), ua.get("description", ""), ua.get("exp_id", ""),
                           ua.get("phase", ""))

    def execute(self, trial: Any) -> dict[str, Any]:
        """Check, run the seeds, record, tell. Returns the trial's user attrs as recorded."""
        import optuna

        t0 = time.time()
        self._current_trial = trial
        trial.set_user_attr("owner", owner_record())
        trial.set_user_attr("heartbeat", t0)
        try:
            with Heartbeat(trial):
                record = self._execute(trial, t0)
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
        return record

    def _execute(self, trial: Any, t0: float) -> dict[str, Any]:
        tc = self.trial_config(trial)
        canon = canonical_plugins(self.registry, tc.plugins)
        key = config_key(canon, tc.config)
        for k, v in tc.attrs(key).items():
            if k == "plugins":
                v = canon
            if trial.user_attrs.get(k) != v:
                trial.set_user_attr(k, v)
        # a refusal already known costs nothing
        known = self._known_refusal(key, list(canon))
        if known is not None:
            reason = f"{known['reason']} (refused before, trial #{known.get('trial')})"
            check = {"ok": False, "reason": reason, "cached": True, "seconds": 0.0}
            trial.set_user_attr("check", check)
            return self._finish(trial, tc, "refused", reason, [], t0, check)
        spec = self._spec_for(canon, tc.config)
        self.say(f"{self._prefix(trial)} {tc.label}: {self._short(tc)} ...")
        check = self._check(spec, key)
        report = check.pop("_report", None)
        trial.set_user_attr("check", check)
        self.run_stats["check_s"] += check.get("seconds", 0.0)
        if not check["ok"]:
            if report is not None:
                self._remember_refusal(key, canon, report, trial.number)
            return self._finish(trial, tc, "refused", check["reason"], [], t0, check)
        runs: list[dict[str, Any]] = list(trial.user_attrs.get("runs") or [])
        seeds = self._seeds(key, runs)
        for i, seed in enumerate(seeds):
            job = self._job(trial, tc, canon, seed, len(runs))
            outcome = call_runner(self.runner, job)
            rec = outcome.to_dict()
            runs.append(rec)
            trial.set_user_attr("runs", runs)
            self.run_stats["run_s"] += outcome.wallclock_s or 0.0
            self.run_stats["train_s"] += outcome.train_time_s or 0.0
            if outcome.status == "pruned":
                break
        return self._finish(trial, tc, None, "", runs, t0, check)

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

    def _job(self, trial: Any, tc: TrialConfig, plugins: Plugins, seed: int, repeat: int) -> Job:
        spec = self._spec_for(plugins, tc.config, seed)
        yaml_spec = spec.to_yaml_dict()
        yaml_spec["seed"] = seed
        cap = spec.config.max_wallclock_seconds
        timeout = self.d.trial_timeout or ((2.0 * cap + 300.0) if cap > 0 else None)
        slug = "".join(ch if ch.isalnum() or ch in "+-_." else "-" for ch in tc.label)[:60]
        run_dir = self.out_dir / self.d.name / f"{trial.number:04d}-{slug}-s{seed}"
        report = None
        if repeat == 0 and self.d.mode == "tune" and self.d.pruner != "none":
            def report(step: int, bpb: float) -> bool:
                trial.report(bpb, step)
                return trial.should_prune()
        return Job(study=self.d.name, trial=trial.number, label=tc.label, plugins=plugins, spec=yaml_spec,
                   seed=seed, run_dir=str(run_dir), timeout_s=timeout, nproc=self.d.nproc, repeat=repeat,
                   report=report)

    def _finish(self, trial: Any, tc: TrialConfig, status: str | None, reason: str, runs: list[dict[str, Any]],
                t0: float, check: dict[str, Any]) -> dict[str, Any]:
        import optuna

        S = optuna.trial.TrialState
        failure = ""
        value = None
        if status is None:
            done = [r for r in runs if r.get("status") == "complete"]
            failed = [r for r in runs if r.get("status") == "failed"]
            if done:
                status = "complete"
                value = sum(r["val_bpb"] for r in done) / len(done)
                if failed:
                    reason = f"{len(failed)} of {len(runs)} runs failed: {failed[0].get('reason', '')}"
            elif any(r.get("status") == "pruned" for r in runs):
                status = "pruned"
                reason = next(r.get("reason", "") for r in runs if r.get("status") == "pruned")
            else:
                status = "failed"
                first = failed[0] if failed else {}
                failure, reason = first.get("failure", "crash"), first.get("reason", "no run finished")
        cost = round(time.time() - t0, 3)
        trial.set_user_attr("status", status)
        trial.set_user_attr("reason", reason)
        trial.set_user_attr("failure", failure)
        trial.set_user_attr("cost_s", cost)
        limit = self.base.config.artifact_limit_bytes
        if status == "complete":
            sizes = [r.get("artifact_bytes") for r in runs if r.get("status") == "complete" and r.get("artifact_bytes")]
            excess = float(max(sizes) - limit) if sizes else 0.0
            trial.set_constraint("artifact_bytes", excess)
            self.study.tell(trial, value)
        elif status == "pruned":
            self.study.tell(trial, state=S.PRUNED)
        else:
            trial.set_constraint(status, 1.0)  # refused / failed: infeasible, so the sampler avoids it
            self.study.tell(trial, state=S.PRUNED)
        self.run_stats["trials"] += 1
        self._progress(trial.number, tc, status, reason, value, runs, check, cost)
        return {"status": status, "reason": reason, "value": value, "runs": runs, "key": trial.user_attrs.get("key")}

    # ---- progress lines -------------------------------------------------------------------------
    def _prefix(self, trial: Any) -> str:
        if self.d.mode == "tune":
            return f"[{min(len(self.finished()) + 1, self.d.trials)}/{self.d.trials}] #{trial.number}"
        total = len(self.counted())
        return f"[{len(self.finished()) + 1}/{total}] #{trial.number}"

    def finished(self) -> list[Any]:
        import optuna

        S = optuna.trial.TrialState
        return [t for t in self._trials(states=(S.COMPLETE, S.PRUNED))]

    def _short(self, tc: TrialConfig) -> str:
        return tc.description if tc.description and tc.description != tc.label else describe_plugins(tc.plugins, self.registry)

    def best(self) -> tuple[Any, float] | None:
        """The best feasible complete trial (lowest mean val_bpb within the artifact limit)."""
        import optuna

        best = None
        for t in self._trials(states=(optuna.trial.TrialState.COMPLETE,)):
            if any(v > 0 for v in t.constraints.values()):
                continue
            if best is None or t.value < best[1]:
                best = (t, t.value)
        return best

    def _progress(self, number: int, tc: TrialConfig, status: str, reason: str, value: float | None,
                  runs: list[dict[str, Any]], check: dict[str, Any], cost: float) -> None:
        done = [r for r in runs if r.get("status") == "complete"]
        if status == "complete":
            steps = sum(r.get("steps") or 0 for r in done) / len(done)
            ms = [r.get("ms_per_step") for r in done if r.get("ms_per_step")]
            art = max((r.get("artifact_bytes") or 0) for r in done)
            over = art > self.base.config.artifact_limit_bytes
            what = (f"val_bpb {value:.4f}" + (f" (mean of {len(done)})" if len(done) > 1 else "") +
                    f", {steps:.0f} steps" + (f", {sum(ms) / len(ms):.0f} ms/step" if ms else "") +
                    (f", {art / 1e6:.2f} MB" if art else "") + (" OVER THE ARTIFACT LIMIT" if over else ""))
        elif status == "refused":
            what = f"refused: {reason}"
        elif status == "pruned":
            what = reason
        else:
            what = f"failed: {reason}"
        chk = check.get("seconds") or 0.0
        timing = f"{fmt_s(cost)}" + (f" (check {chk:.1f}s)" if chk else (" (check cached)" if check.get("cached") else ""))
        best = self.best()
        best_s = f"best trial {best[1]:.4f} (#{best[0].number})" if best else "best trial —"
        spent = self.spent_s()
        budget = (f"budget {fmt_s(spent)}/{fmt_s(self.d.budget_hours * 3600)}" if self.d.budget_hours is not None
                  else f"used {fmt_s(spent)}")
        money = self.money(spent)
        n_done = len(self.finished())
        total = self.d.trials if self.d.mode == "tune" else len(self.counted())
        self.say(f"[{n_done}/{total}] #{number} {tc.label}: {what} in {timing} | {best_s} | "
                 f"elapsed {fmt_s(time.time() - self.t_start)}, {budget}" + (f", {money}" if money else ""))


def fmt_s(seconds: float) -> str:
    seconds = max(float(seconds), 0.0)
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"
