"""The configurations a study runs: what a trial is (plugins + config keys + its label), and the fixed
configurations of the modes that do not sample (the baseline, each plugin alone, the experiments).

A configuration's identity is its key (:func:`golfplan.planner.definition.config_key`): trials of one
key pool their runs in reports, share one preflight and one remembered refusal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from golfplan.planner.definition import Experiment, Plugins, StudyDef, describe_plugins
from golfplan.planner.records import TrialRecord

__all__ = ["Initial", "LoopResult", "TrialConfig", "baseline_config", "experiment_config", "experiment_configs",
           "initial", "settle", "tune_label", "with_replacements"]


@dataclass
class LoopResult:
    """What one ``Planner.run()`` did: trials run here, and why it stopped."""

    ran: int = 0
    stopped: str = ""  # done, or the budget's message


@dataclass
class TrialConfig:
    label: str
    plugins: Plugins
    config: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    exp_id: str = ""
    phase: str = ""

    def record(self, key: str) -> TrialRecord:
        """The record of a trial that runs this configuration (``key``: its hash)."""
        return TrialRecord(self.label, self.description, dict(self.plugins), dict(self.config), key, self.exp_id,
                           self.phase)

    def attrs(self, key: str) -> dict[str, Any]:
        """The attributes a queued trial of this configuration carries."""
        return self.record(key).config_attrs()


def with_replacements(d: StudyDef, registry: Any, added: Plugins, without: list[str] = ()) -> Plugins:
    """The fixed plugins (minus ``without`` and minus any that shares a slot with an added one), then
    the added ones: what a configuration that adds ``added`` to the study's fixed plugins runs."""
    taken = {s for n in added for s in registry.get(n).slots()}
    out = {n: dict(p) for n, p in d.fixed.items()
           if n not in without and n not in added and not (set(registry.get(n).slots()) & taken)}
    out.update({n: dict(p) for n, p in added.items()})
    return out


def baseline_config(d: StudyDef, registry: Any, space: Any = None) -> TrialConfig:
    """The reference: the fixed plugins, plus (tune) the ``always`` plugins with their default params."""
    plugins = {n: dict(p) for n, p in d.fixed.items()}
    if d.mode == "tune" and space is not None:
        plugins.update({n: space.defaults(n) for n in d.always})
    return TrialConfig("baseline", plugins, description=describe_plugins(plugins, registry)
                       if plugins else "no plugins: the profile's baseline", exp_id="0")


def experiment_configs(d: StudyDef, registry: Any) -> list[TrialConfig]:
    """The fixed configurations of an ablate or experiments study, baseline first."""
    out: list[TrialConfig] = []
    if d.baseline or d.mode == "ablate":
        out.append(baseline_config(d, registry))
    if d.mode == "ablate":
        for i, (name, params) in enumerate(d.plugins.items(), 1):
            plugins = with_replacements(d, registry, {name: dict(params)})
            out.append(TrialConfig(name, plugins, description=registry.get(name).summary, exp_id=str(i),
                                   phase="ablate"))
    for e in d.experiments:
        out.append(experiment_config(d, registry, e))
    return out


def experiment_config(d: StudyDef, registry: Any, e: Experiment) -> TrialConfig:
    plugins = with_replacements(d, registry, e.plugins, e.without)
    return TrialConfig(e.name or e.id, plugins, dict(e.config), e.description or describe_plugins(e.plugins),
                       e.id, "experiments")


def tune_label(chosen: list[str], is_baseline: bool) -> str:
    """A sampled trial's label: the searched plugins it switched on, else ``baseline`` when it is the
    reference configuration, else ``tuned`` (only the ``always`` plugins' params differ)."""
    if chosen:
        return "+".join(chosen)
    return "baseline" if is_baseline else "tuned"


def settle(runs: list[Any]) -> tuple[str, float | None, str, str]:
    """(status, value, reason, failure) of a trial from its runs (RunOutcomes): complete with the mean
    BPB of its complete runs, else pruned, else failed as its first failed run says."""
    done = [r for r in runs if r.status == "complete"]
    failed = [r for r in runs if r.status == "failed"]
    if done:
        reason = f"{len(failed)} of {len(runs)} runs failed: {failed[0].reason}" if failed else ""
        return "complete", sum(float(r.val_bpb) for r in done) / len(done), reason, ""
    pruned = [r for r in runs if r.status == "pruned"]
    if pruned:
        return "pruned", None, pruned[0].reason, ""
    first = failed[0] if failed else None
    return "failed", None, first.reason if first else "no run finished", (first.failure if first else "") or "crash"


@dataclass
class Initial:
    """What a study queues when it opens: the baseline's key, and (params, attributes) per trial."""

    baseline_key: str | None = None
    queue: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)


def initial(trials: list[Any], d: StudyDef, registry: Any, space: Any, key_of: Any) -> Initial:
    """The mode's first configurations, given the study's ``trials`` so far (the Planner queues them).
    Tune: the baseline (the ``always`` plugins with their defaults) and all-on, once, when the study
    is new. Ablate and experiments: every configuration entry without a trial yet (two entries of one
    configuration, the seed's reruns, are two trials whose runs pool in the report)."""
    import optuna

    out = Initial()
    if d.mode == "tune":
        out.baseline_key = key_of(baseline_config(d, registry, space).plugins)
        if trials:
            return out
        always = {n: space.defaults(n) for n in d.always}
        for label, chosen in (("baseline", {}), ("all-on", space.all_on()))[: d.trials]:
            if label == "all-on" and not chosen:
                continue
            out.queue.append((space.encode({**chosen, **always}), {"label": label, "phase": "tune"}))
        return out
    configs = experiment_configs(d, registry)
    if configs and configs[0].label == "baseline":
        out.baseline_key = key_of(configs[0].plugins, configs[0].config)
    have = {(r.exp_id, r.key) for r in (TrialRecord.of(t) for t in trials
                                         if t.state != optuna.trial.TrialState.FAIL) if r.key}
    for c in configs:
        key = key_of(c.plugins, c.config)
        if (c.exp_id, key) not in have:
            out.queue.append(({}, c.attrs(key)))
            have.add((c.exp_id, key))
    return out
