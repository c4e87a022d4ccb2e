"""What the planner records in Optuna, typed: a trial (:class:`TrialRecord`), a preflight
(:class:`CheckRecord`), a remembered refusal (:class:`Refusal`), converted to and from Optuna's
attributes here and nowhere else.

Every other module reads a trial through ``TrialRecord.of(trial)``, a check through
``CheckRecord.from_attr`` and the study's own attributes through :class:`Chosen`, :func:`baseline_key`
and :func:`base_config`; only the Planner (:mod:`golfplan.planner.study`) writes attributes, through
``to_attrs``. The stored layout is plain JSON (Optuna's ``user_attrs``), so a study is readable
without golfplan (optuna-dashboard, ``optuna.load_study``): a trial's attributes are

    label, description, plugins, config, key, exp_id, phase   the configuration and its stable hash
    status, reason, failure                    complete | pruned | refused | failed | interrupted | unused
    runs                                       one entry per seed (RunOutcome.to_dict)
    check                                      the preflight's verdict (CheckRecord)
    cost_s                                     seconds the trial held its slot (checks + runs)
    owner, heartbeat                           who runs it, and when it last said so
    retry_of, copied_from                      the trial it retries; the study#trial it was copied from
    val_bpb, ms_per_step, ms_per_step_ratio,   a finished trial's runs as numbers (SUMMARY_ATTRS): mean
    steps, artifact_bytes                      val_bpb, ms/step and its ratio to the baseline's, steps,
                                               the largest artifact; each only where known

The summary is for readers that show scalars best: optuna-dashboard makes a number a sortable column
only where every trial's value is a number (so an unknown one is left out, never ``None``) and cuts a
list or mapping's JSON at 1,024 characters (``runs``: about two seeds; the summary carries the means).

A run is a :class:`golfplan.planner.runner.RunOutcome` (the runner API's own dataclass).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Iterable, Mapping

from golfplan.planner.runner import RunOutcome
from golfplan.planner.storage import BASE_ATTR, BASELINE_ATTR, CHOSEN_ATTR, LADDER_ATTR

Plugins = dict[str, dict[str, Any]]

# the attributes that say what a trial runs (queued with it, carried to its retry)
CONFIG_ATTRS = ("label", "plugins", "config", "key", "description", "exp_id", "phase")
# what a finished trial measured, as numbers (TrialRecord.summarize)
SUMMARY_ATTRS = ("val_bpb", "ms_per_step", "ms_per_step_ratio", "steps", "artifact_bytes")


def from_known(cls: Any, data: Mapping[str, Any]) -> Any:
    """The dataclass ``cls`` from its stored mapping; keys it does not know (another version's) are dropped."""
    known = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in dict(data).items() if k in known})


def run_of(data: Mapping[str, Any] | RunOutcome) -> RunOutcome:
    """A stored run (``RunOutcome.to_dict``) as a RunOutcome; unknown keys (older studies) are dropped."""
    return data if isinstance(data, RunOutcome) else from_known(RunOutcome, data)


def complete_runs(runs: Iterable[RunOutcome]) -> list[RunOutcome]:
    return [r for r in runs if r.status == "complete"]


def mean_ms(runs: Iterable[RunOutcome]) -> float | None:
    """The mean ms/step of the complete runs that measured one."""
    ms = [float(r.ms_per_step) for r in runs if r.status == "complete" and r.ms_per_step]
    return sum(ms) / len(ms) if ms else None


@dataclass
class CheckRecord:
    """A preflight's verdict on one configuration, as a trial (``check``) and the study
    (``golfplan.check:KEY``) keep it."""

    ok: bool = True
    reason: str = ""
    seconds: float = 0.0
    cached: bool = False  # taken from the study's memory, not run for this trial
    skipped: bool = False  # checks: none, or a runner that does not check
    failure: str = ""  # crash | timeout | oom | refused: how a check that left no report ended
    eager: bool = False
    estimate: dict[str, Any] = field(default_factory=dict)
    checks: dict[str, float] = field(default_factory=dict)  # stage -> seconds
    where: str = ""  # the folder it ran in

    @classmethod
    def from_attr(cls, data: Mapping[str, Any] | None) -> "CheckRecord | None":
        return from_known(cls, data) if data else None

    def to_attr(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_report(cls, report: Mapping[str, Any], seconds: float | None = None, where: str = "") -> "CheckRecord":
        """From a check report (``CheckReport.to_dict()``); ``seconds``: measured around it, else the
        sum of its stages."""
        stages = {c["name"]: c.get("seconds", 0.0) for c in report.get("checks") or []}
        failure = str(report.get("failure") or "")  # timeout: a stage passed its limit (golfplan.check.stages)
        return cls(ok=bool(report.get("ok")), reason=str(report.get("reason") or ""), eager=bool(report.get("eager")),
                   failure="" if failure == "refused" else failure,
                   estimate=dict(report.get("estimate") or {}), checks=stages, where=where,
                   seconds=round(seconds if seconds is not None else sum(stages.values()), 3))

    @classmethod
    def failed(cls, kind: str, reason: str, seconds: float = 0.0, where: str = "") -> "CheckRecord":
        """A check that ended without a report (crash | timeout | oom), or a refusal without one."""
        return cls(ok=False, reason=reason, failure=kind, seconds=round(seconds, 3), where=where)

    @classmethod
    def skip(cls) -> "CheckRecord":
        return cls(skipped=True)

    def as_cached(self) -> "CheckRecord":
        """This verdict as a later trial of the same configuration sees it (costs nothing)."""
        from dataclasses import replace

        return replace(self, cached=True, seconds=0.0)


@dataclass
class Refusal:
    """A refused configuration the study remembers (``golfplan.refused:KEY``), and the subset of
    plugins that fails whatever else is on (``golfplan.refused:set:A+B``), when there is one."""

    reason: str
    trial: int | None = None
    subset: list[str] | None = None
    key: str = ""

    @classmethod
    def from_attr(cls, data: Mapping[str, Any] | None) -> "Refusal | None":
        if not data:
            return None
        return cls(str(data.get("reason") or ""), data.get("trial"), data.get("subset"), str(data.get("key") or ""))

    def to_attr(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Chosen:
    """The configuration a strategy chose for its study (``golfplan.chosen_key``): the final stack,
    which is the study's reported best even where another configuration measured lower."""

    key: str = ""
    label: str = ""
    stopped: str = ""  # why the strategy stopped, where it says

    @classmethod
    def of(cls, study: Any) -> "Chosen":
        data = study.user_attrs.get(CHOSEN_ATTR) or {}
        return cls(str(data.get("key") or ""), str(data.get("label") or ""), str(data.get("stopped") or ""))

    def to_attr(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v or k in ("key", "label")}


MIN_SPEARMAN = 0.5  # below it, over MIN_CONFIGS or more configurations, two ladder rungs disagree
MIN_CONFIGS = 5


@dataclass
class RungRecord:
    """What a ladder's rung study records about its place on the ladder (``golfplan.ladder``): the
    rung, the study below it, Spearman's rank correlation of the two rungs' mean BPBs over the
    configurations both measured, and whether the rungs disagree."""

    rung: str
    below: str = ""  # the study of the rung below ("" on the bottom rung)
    spearman: float | None = None
    n: int = 0  # configurations measured on both rungs
    disagrees: bool = False
    promoted: list[str] = field(default_factory=list)  # keys promoted to this rung
    chosen: str = ""  # the key this rung chose (its best)

    @classmethod
    def of(cls, study: Any) -> "RungRecord | None":
        data = study.user_attrs.get(LADDER_ATTR)
        return from_known(cls, data) if data else None

    def to_attr(self) -> dict[str, Any]:
        return asdict(self)

    def text(self) -> str:
        """One line on how far this rung agrees with the one below it."""
        if self.spearman is None:
            return f"rung {self.rung} against {self.below}: no rank correlation ({self.n} configurations on both)"
        what = f"Spearman {self.spearman:+.2f} over {self.n} configurations"
        if self.disagrees:
            return (f"!! rung {self.rung} DISAGREES with {self.below}: {what} (below {MIN_SPEARMAN}): the verdicts "
                    f"of {self.below} do not carry up; {self.rung}'s verdict wins")
        if self.n < MIN_CONFIGS:
            return f"rung {self.rung} against {self.below}: {what}: too few to judge (at least {MIN_CONFIGS})"
        return f"rung {self.rung} against {self.below}: {what}: agrees"


def baseline_key(study: Any) -> str | None:
    """The key of the configuration every other one of the study is judged against."""
    return study.user_attrs.get(BASELINE_ATTR) or None


def base_config(study: Any) -> dict[str, Any]:
    """The resolved config every trial of the study started from (``golfplan.base_config``)."""
    return dict((study.user_attrs.get(BASE_ATTR) or {}).get("config") or {})


@dataclass
class TrialRecord:
    """Everything golfplan records on one Optuna trial (see the module's doc)."""

    label: str = ""
    description: str = ""
    plugins: Plugins = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    key: str = ""
    exp_id: str = ""
    phase: str = ""
    status: str = ""  # "" while it is queued or running
    reason: str = ""
    failure: str = ""
    runs: list[RunOutcome] = field(default_factory=list)
    check: CheckRecord | None = None
    cost_s: float | None = None
    owner: dict[str, Any] | None = None
    heartbeat: float | None = None
    retry_of: int | None = None
    copied_from: str = ""
    val_bpb: float | None = None  # mean over the complete runs (the trial's value when complete)
    ms_per_step: float | None = None  # mean over the complete runs that measured one
    ms_per_step_ratio: float | None = None  # ms_per_step over the study's baseline's, where known
    steps: float | None = None  # mean over the complete runs (an int when they all ran the same)
    artifact_bytes: int | None = None  # the largest (what the constraint judges)
    number: int = -1  # the trial's number (Optuna's, not an attribute)

    @classmethod
    def of(cls, trial: Any) -> "TrialRecord":
        """The record of an Optuna trial (a FrozenTrial or a live Trial)."""
        return cls.from_attrs(trial.user_attrs, trial.number)

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any], number: int = -1) -> "TrialRecord":
        a = dict(attrs)
        return cls(label=str(a.get("label") or ""), description=str(a.get("description") or ""),
                   plugins={n: dict(p) for n, p in (a.get("plugins") or {}).items()},
                   config=dict(a.get("config") or {}),
                   key=str(a.get("key") or ""), exp_id=str(a.get("exp_id") or ""), phase=str(a.get("phase") or ""),
                   status=str(a.get("status") or ""), reason=str(a.get("reason") or ""),
                   failure=str(a.get("failure") or ""), runs=[run_of(r) for r in a.get("runs") or []],
                   check=CheckRecord.from_attr(a.get("check")), cost_s=a.get("cost_s"), owner=a.get("owner"),
                   heartbeat=a.get("heartbeat"), retry_of=a.get("retry_of"),
                   copied_from=str(a.get("copied_from") or ""),
                   **{k: a.get(k) for k in SUMMARY_ATTRS}, number=number)

    def to_attrs(self, names: Iterable[str] | None = None) -> dict[str, Any]:
        """The attributes named (default: every one that is set) as Optuna stores them."""
        out: dict[str, Any] = {}
        for name in names if names is not None else [f.name for f in fields(self) if f.name != "number"]:
            value = getattr(self, name)
            if names is None and value in (None, "") and name not in CONFIG_ATTRS:
                continue
            if name == "runs":
                value = [r.to_dict() for r in value]
            elif name == "check":
                value = value.to_attr() if value is not None else None
            elif name == "plugins":
                value = {n: dict(p) for n, p in value.items()}
            elif name == "config":
                value = dict(value)
            out[name] = value
        return out

    def summarize(self, base_ms: float | None) -> tuple[str, ...]:
        """Set the summary of the complete runs (``base_ms``: the study's baseline's mean ms/step, None
        where unknown); returns the names of those known, the ones to write."""
        done = self.done
        self.val_bpb = sum(self.values) / len(self.values) if self.values else None
        ms = mean_ms(done)
        self.ms_per_step = round(ms, 3) if ms else None
        self.ms_per_step_ratio = round(ms / base_ms, 4) if ms and base_ms else None
        steps = [r.steps for r in done if r.steps is not None]
        mean = sum(steps) / len(steps) if steps else None
        self.steps = None if mean is None else int(mean) if float(mean).is_integer() else round(mean, 1)
        self.artifact_bytes = max((r.artifact_bytes for r in done if r.artifact_bytes), default=None)
        return tuple(n for n in SUMMARY_ATTRS if getattr(self, n) is not None)

    def config_attrs(self) -> dict[str, Any]:
        """What a queued trial carries: the configuration it runs."""
        return self.to_attrs(CONFIG_ATTRS)

    # ---- what readers ask of a trial ---------------------------------------------------
    @property
    def done(self) -> list[RunOutcome]:
        return complete_runs(self.runs)

    @property
    def values(self) -> list[float]:
        return [float(r.val_bpb) for r in self.done if r.val_bpb is not None]

    def seeds(self) -> set[int | None]:
        return {r.seed for r in self.runs}
