"""Creating a study, or resuming one: the same study, or an error naming the difference.

A study is created with its definition (``golfplan.definition``, the storage URL masked) and the
resolved config every trial starts from (``golfplan.base_config``). Rerunning the same command
resumes it: a stored study with a different definition (plugins, mode, repeats, profile, config,
cap, sampler, ...) or a resolved config that changed since (a profile's default) is an error;
budgets and trial counts may change. Workers join with the study's own definition and each
samples from its own seed stream.
"""

from __future__ import annotations

import os
from typing import Any

from golfplan.planner.definition import StudyDef, StudyError
from golfplan.planner.storage import BASE_ATTR, DEF_ATTR, mask_url

LOCAL_KEYS = ("data_path", "tokenizer_path", "progress_bar")  # per machine: not part of a study's identity


def quiet_optuna() -> None:
    """Optuna's INFO lines and experimental-feature warnings stay out of the progress text."""
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message=".*constraints_func.*")


def base_spec(d: StudyDef, local_config: dict[str, Any] | None = None) -> Any:
    """The RunSpec every trial starts from, resolved once from the study's profile and config keys
    (``local_config``: this machine's data paths, for a worker); what a Planner is given."""
    from golfplan.core.config import load_spec

    data: dict[str, Any] = dict(d.config)
    data.update(local_config or {})
    if d.trial_seconds is not None:
        data["max_wallclock_seconds"] = d.trial_seconds
    data["progress_bar"] = False
    if d.plugin_path:
        data["plugin_path"] = list(d.plugin_path)
    return load_spec(profile=d.profile, data=data, where=f"study '{d.name}'")


def stored_definition(d: StudyDef) -> dict[str, Any]:
    out = d.to_dict()
    out["storage"] = mask_url(out.get("storage")) or None  # a worker has its URL from its own command line
    return out


def base_record(base: Any) -> dict[str, Any]:
    """The resolved config every trial starts from (paths to this machine's data left out)."""
    return {"profile": base.profile,
            "config": {k: v for k, v in base.config.to_dict().items() if k not in LOCAL_KEYS}}


def sampler(d: StudyDef, worker: bool) -> Any:
    import optuna

    seed = d.seed
    if worker:  # each worker its own stream, or two workers would propose the same params
        seed = (seed * 1_000_003 + os.getpid()) % (2**31)
    if d.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    n_startup = max(3, min(10, d.trials // 4))
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup, multivariate=True, group=True,
                                      constant_liar=True)


def pruner(d: StudyDef) -> Any:
    import optuna

    if d.pruner == "none" or d.mode != "tune":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=0)


def create_or_resume(d: StudyDef, storage: Any, base: Any, worker: bool = False,
                     readonly: bool = False) -> tuple[Any, dict[str, Any]]:
    """The Optuna study named ``d.name`` (created, not by a worker; or loaded and checked), and the
    study attributes the Planner is to write: the definition and the resolved config, when new or
    resumed (budgets and counts may change)."""
    import optuna

    try:
        study = optuna.load_study(study_name=d.name, storage=storage, sampler=sampler(d, worker), pruner=pruner(d))
    except KeyError:
        if worker:
            raise StudyError(f"no study '{d.name}' in this storage") from None
        study = optuna.create_study(study_name=d.name, storage=storage, direction="minimize",
                                    sampler=sampler(d, worker), pruner=pruner(d), load_if_exists=True)
        return study, {DEF_ATTR: stored_definition(d), BASE_ATTR: base_record(base)}
    stored = study.user_attrs.get(DEF_ATTR)
    if stored is None:
        raise StudyError(f"study '{d.name}' exists but was not made by golfplan; pick another --study name")
    writes: dict[str, Any] = {}
    if not worker:
        old = StudyDef.from_dict(stored, where=f"stored study '{d.name}'")
        mine, theirs = d.identity(), old.identity()
        diff = [k for k in mine if mine[k] != theirs.get(k)]
        if diff:
            raise StudyError(f"study '{d.name}' already exists with a different {diff[0]} "
                             f"({theirs.get(diff[0])!r} there, {mine[diff[0]]!r} here); "
                             f"rerun it as it was or pick another --study name")
        writes[DEF_ATTR] = stored_definition(d)  # budgets and counts may change
    if not readonly and not same_base(study, d.name, base):  # a worker too: the creator's profile and defaults
        writes[BASE_ATTR] = base_record(base)
    return study, writes


def same_base(study: Any, name: str, base: Any) -> bool:
    """A resumed study must start its trials from the same resolved config (a profile or a default
    that changed in between would mix two different experiments in one table). False when the
    study has no resolved config stored yet (the caller stores it)."""
    stored = study.user_attrs.get(BASE_ATTR)
    mine = base_record(base)
    if stored is None:
        return False
    if stored["profile"] != mine["profile"]:
        raise StudyError(f"study '{name}' ran on profile {stored['profile']}, this is {mine['profile']}")
    for k, v in mine["config"].items():
        if k in stored["config"] and stored["config"][k] != v:
            raise StudyError(f"study '{name}' ran with {k}={stored['config'][k]!r}; the resolved config "
                             f"now has {k}={v!r}; pick another --study name")
    return True
