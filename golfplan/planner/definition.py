"""What a study is: its plugins, mode, repeats, budgets and storage, from YAML or the command line.

A study file (``studies/*.yaml``) is a mapping of the keys below; every key is optional
except what the mode needs. Unknown keys, plugins and plugin params are errors (with the
closest valid name), checked against the registry when the file is loaded.

    name: wave2-nature              # the study's name in the storage (default: the file's stem)
    description: ...
    mode: experiments               # tune | ablate | experiments
    profile: rtx4000                # hardware profile (default: cpu without CUDA, else 1xh100)
    config: {logit_softcap: 20}     # config keys for every trial
    plugin_path: [my_plugins/]      # extra technique files
    fixed: {cosine: {}}             # on in every trial, params as given (an experiment's or a
                                    # searched plugin in the same slot replaces it)
    plugins: [tidal, parallel]      # tune: switched on/off, params searched; ablate: each alone.
                                    # The mapping form {gqa: {kv_heads: 1}} fixes those params.
    always: {lr: {}}                # tune: on in every trial, params searched
    experiments:                    # experiments: one entry per configuration
      - id: N2
        name: Tidal LR
        description: golden-ratio warmup then cosine
        plugins: {tidal: {}}        # added to (or replacing a slot-mate of) the fixed plugins
        without: []                 # fixed plugins this experiment removes
        config: {}                  # config keys of this experiment
        seed: {bpb: 1.5906, delta: -0.021, status: Winner}   # what the seed log reported
    baseline: true                  # experiments: also run the fixed plugins alone as the reference
    repeats: 1                      # seeds per configuration
    trials: 20                      # tune: number of trials
    trial_seconds: 600              # training wallclock cap per run, > 0 (default: the profile's)
    trial_timeout: null             # hard limit per run in seconds, > 0 (default 2 x the cap, or
                                    # the profile's time_limit_seconds, + 300)
    budget_hours: null              # whole-study budget of run time
    cost_per_hour: 0.20             # $ per hour of the machine, for the report
    sampler: tpe                    # tpe | random
    seed: 0                         # the sampler's seed
    pruner: median                  # median | none (needs val_loss_every > 0 to act)
    checks: full                    # full | static | none: preflight before every trial
    smoke_steps: 30
    nproc: 1                        # GPUs per trial (torchrun)
    jobs: null                      # trials side by side (default: what fits the host: the usable
                                    # cores / threads on a CPU profile, the GPUs / nproc on a GPU one;
                                    # 1 with a custom runner); not part of the study's identity
    batch: 2                        # tune: sampled trials are asked this many at a time, each batch
                                    # once the one before has finished, so the sampled path is the
                                    # same whatever jobs is (golfplan.planner.loop); part of the
                                    # study's identity (tune), a fixed number, never the host's
    threads: 1                      # CPU threads of each run on a CPU profile: fixed by the study,
                                    # whatever --jobs is, as CPU kernels sum in a thread-count order
    alpha: 0.05                     # significance level of the Welch t-tests
    noise_floor: 0.002              # BPB noise assumed while the baseline has a single run
    storage: null                   # Optuna storage URL (default sqlite:///golfplan.db); stored
                                    # in the study with its password masked
    ladder: [cpu, 1xh100, 8xh100]   # golfplan plan: climb these rungs (PROFILE[+KEY=VALUE...],
                                    # golfplan.planner.ladder); each rung a study NAME@RUNG
    promote: 6                      # configurations promoted from a rung to the next (ladder)
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from golfplan.core.errors import ConfigError, GolfplanError, closest

MODES = ("tune", "ablate", "experiments")
SAMPLERS = ("tpe", "random")
PRUNERS = ("median", "none")
CHECKS = ("full", "static", "none")
DEFAULT_STORAGE = "sqlite:///golfplan.db"

Plugins = dict[str, dict[str, Any]]


class StudyError(GolfplanError):
    """A study file or study option that is not valid."""


@dataclass
class Experiment:
    id: str
    name: str = ""
    description: str = ""
    plugins: Plugins = field(default_factory=dict)
    without: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    seed: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class StudyDef:
    name: str = ""
    description: str = ""
    mode: str = "tune"
    profile: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    plugin_path: list[str] = field(default_factory=list)
    fixed: Plugins = field(default_factory=dict)
    plugins: Plugins = field(default_factory=dict)
    always: Plugins = field(default_factory=dict)
    experiments: list[Experiment] = field(default_factory=list)
    baseline: bool = True
    repeats: int = 1
    trials: int = 20
    trial_seconds: float | None = None
    trial_timeout: float | None = None
    budget_hours: float | None = None
    cost_per_hour: float | None = None
    sampler: str = "tpe"
    seed: int = 0
    pruner: str = "median"
    checks: str = "full"
    smoke_steps: int = 30
    nproc: int = 1
    jobs: int | None = None
    batch: int = 2  # CI's and the dev machine's core count, but fixed: a default study retraces on any host
    threads: int = 1
    alpha: float = 0.05
    noise_floor: float = 0.002
    storage: str | None = None
    ladder: list[str] = field(default_factory=list)
    promote: int = 6

    # ---- (de)serialisation -----------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["experiments"] = [e.to_dict() for e in self.experiments]
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "study") -> "StudyDef":
        known = {f.name for f in fields(cls)}
        unknown = [k for k in data if k not in known]
        if unknown:
            raise StudyError(f"{where}: unknown key '{unknown[0]}'{closest(unknown[0], known)}")
        kw: dict[str, Any] = {}
        for key, value in data.items():
            if value is None and key not in ("profile", "trial_seconds", "trial_timeout", "budget_hours",
                                             "cost_per_hour", "storage", "jobs"):
                continue
            if key in ("fixed", "plugins", "always"):
                kw[key] = normalize_plugins(value, f"{where}: '{key}'")
            elif key == "experiments":
                kw[key] = [_experiment(e, i, where) for i, e in enumerate(value or [])]
            elif key == "plugin_path":
                kw[key] = [str(p) for p in (value if isinstance(value, list) else [value])]
            elif key == "ladder":
                kw[key] = [str(r).strip() for r in (value.split(",") if isinstance(value, str) else value or [])
                           if str(r).strip()]
            elif key == "config":
                if not isinstance(value, dict):
                    raise StudyError(f"{where}: 'config' must be a mapping of config keys")
                kw[key] = dict(value)
            else:
                kw[key] = value
        d = cls(**kw)
        d.coerce(where)
        return d

    def coerce(self, where: str = "study") -> None:
        """Type-check the scalar fields; raise StudyError naming the key."""
        def num(key: str, kind: type, low: float | None = None, optional: bool = False, positive: bool = False) -> None:
            v = getattr(self, key)
            if v is None and optional:
                return
            if isinstance(v, bool) or not isinstance(v, (int, float)) or (kind is int and not float(v).is_integer()):
                raise StudyError(f"{where}: '{key}' expects {'an integer' if kind is int else 'a number'}, got {v!r}")
            v = kind(v)
            if positive and not v > 0:
                raise StudyError(f"{where}: '{key}' must be a positive number of seconds, got {v!r}")
            if not math.isfinite(v) or (low is not None and v < low):
                raise StudyError(f"{where}: '{key}' must be >= {low}, got {v!r}")
            setattr(self, key, v)

        num("repeats", int, 1)
        num("trials", int, 1)
        num("seed", int, 0)
        num("smoke_steps", int, 1)
        num("nproc", int, 1)
        num("jobs", int, 1, optional=True)
        num("batch", int, 1)
        num("threads", int, 1)
        num("promote", int, 2)
        num("trial_seconds", float, optional=True, positive=True)  # a cap; the profile's when not given
        num("trial_timeout", float, optional=True, positive=True)  # a hard limit is never "none"
        num("budget_hours", float, 0, optional=True)
        num("cost_per_hour", float, 0, optional=True)
        num("alpha", float, 0)
        num("noise_floor", float, 0)
        for key, allowed in (("mode", MODES), ("sampler", SAMPLERS), ("pruner", PRUNERS), ("checks", CHECKS)):
            v = getattr(self, key)
            if v not in allowed:
                raise StudyError(f"{where}: '{key}' must be one of {', '.join(allowed)}, got {v!r}")
        if not 0 < self.alpha < 1:
            raise StudyError(f"{where}: 'alpha' must be in (0, 1), got {self.alpha}")
        if self.name and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+=@-]*", self.name):
            raise StudyError(f"{where}: study name '{self.name}' may hold letters, digits and _ . + = @ - only")
        if not isinstance(self.baseline, bool):
            raise StudyError(f"{where}: 'baseline' expects true/false")
        ids = [e.id for e in self.experiments]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise StudyError(f"{where}: experiment id '{dup[0]}' is used twice")
        if self.mode == "experiments" and not self.experiments and not self.baseline:
            raise StudyError(f"{where}: mode 'experiments' needs an 'experiments' list")
        if self.mode in ("tune", "ablate") and self.experiments:
            raise StudyError(f"{where}: 'experiments' is only read in mode 'experiments' (mode is '{self.mode}')")

    # ---- checks against the registry and the config fields ---------------------------
    def validate(self, registry: Any) -> None:
        """Unknown plugins, params or config keys are errors naming the closest valid one."""
        from golfplan.core.config import check_field

        def plugins_ok(mapping: Plugins, where: str, searched: bool = False) -> None:
            for name, params in mapping.items():
                try:
                    cls = registry.get(name)
                    cls(**(cls.completed(params) if searched else params))  # searched: the rest is sampled
                except GolfplanError as e:
                    raise StudyError(f"{where}: {e}") from None
                except Exception as e:  # noqa: BLE001 - a plugin's own bug, as one line
                    raise StudyError(f"{where}: plugin '{name}' raised {type(e).__name__}: {e}") from None

        def config_ok(mapping: dict[str, Any], where: str) -> None:
            for key, value in mapping.items():
                if key in ("profile", "plugins", "plugin_path"):
                    raise StudyError(f"{where}: '{key}' is a study key, not a config key")
                try:
                    check_field(key, value)
                except ConfigError as e:
                    raise StudyError(f"{where}: {e}") from None

        label = self.name or "study"
        config_ok(self.config, f"{label}: config")
        for key in ("fixed", "plugins", "always"):
            plugins_ok(getattr(self, key), f"{label}: {key}", searched=key != "fixed" and self.mode == "tune")
        both = set(self.plugins) & (set(self.always) | set(self.fixed)) | set(self.always) & set(self.fixed)
        if both:
            raise StudyError(f"{label}: plugin '{sorted(both)[0]}' is listed in more than one of plugins/always/fixed")
        for e in self.experiments:
            where = f"{label}: experiment {e.id}"
            plugins_ok(e.plugins, where)
            config_ok(e.config, where)
            for name in e.without:
                if name not in self.fixed:
                    raise StudyError(f"{where}: 'without' names '{name}', which is not among the fixed plugins"
                                     f"{closest(name, self.fixed)}")
        if self.mode == "tune" and not (self.plugins or self.always):
            raise StudyError(f"{label}: mode 'tune' needs plugins to search (--plugins or 'plugins:')")
        if self.mode == "ablate" and not self.plugins:
            raise StudyError(f"{label}: mode 'ablate' needs plugins to ablate (--plugins or 'plugins:')")

    # ---- identity ----------------------------------------------------------------------
    def identity(self) -> dict[str, Any]:
        """The fields that decide what a trial runs: a stored study resumes only with the same ones."""
        keys = ("mode", "profile", "config", "plugin_path", "fixed", "plugins", "always", "baseline",
                "repeats", "trial_seconds", "sampler", "seed", "checks", "nproc", "threads")
        d = self.to_dict()
        out = {k: d[k] for k in keys}
        if self.mode == "tune":  # the batches decide what the sampler sees at each ask; queued trials have none
            out["batch"] = d["batch"]
        out["experiments"] = [{k: v for k, v in e.items() if k in ("id", "plugins", "without", "config")}
                              for e in d["experiments"]]
        return out


def _experiment(raw: Any, index: int, where: str) -> Experiment:
    if not isinstance(raw, dict):
        raise StudyError(f"{where}: experiment #{index + 1} must be a mapping")
    known = {f.name for f in fields(Experiment)}
    unknown = [k for k in raw if k not in known]
    if unknown:
        raise StudyError(f"{where}: experiment #{index + 1}: unknown key '{unknown[0]}'{closest(unknown[0], known)}")
    if "id" not in raw:
        raise StudyError(f"{where}: experiment #{index + 1} needs an 'id'")
    e = Experiment(
        id=str(raw["id"]), name=str(raw.get("name") or raw["id"]), description=str(raw.get("description") or ""),
        plugins=normalize_plugins(raw.get("plugins"), f"{where}: experiment {raw['id']}"),
        without=[str(x) for x in (raw.get("without") or [])],
        config=dict(raw.get("config") or {}), seed=dict(raw.get("seed") or {}),
    )
    return e


def normalize_plugins(value: Any, where: str) -> Plugins:
    """``[a, b]``, ``"a,b"`` or ``{a: {param: v}}`` -> ``{name: params}`` (order kept)."""
    from golfplan.core.config import normalize_plugins as core_normalize

    try:
        return core_normalize(value, where)
    except ConfigError as e:
        raise StudyError(str(e)) from None


def load_study_file(path: str | Path) -> StudyDef:
    from golfplan.core.yamlfile import read_yaml

    p = Path(path)
    try:
        data = read_yaml(p)
    except ConfigError as e:
        raise StudyError(str(e).replace("config file", "study file")) from None
    d = StudyDef.from_dict(data, where=str(p))
    if not d.name:
        d.name = re.sub(r"[^A-Za-z0-9_.+=-]", "-", p.stem)
    # relative plugin paths are relative to the study file
    d.plugin_path = [str((p.parent / q).resolve()) if not Path(q).is_absolute() else q for q in d.plugin_path]
    return d


# ---- configurations and their keys -----------------------------------------------------


def canonical_plugins(registry: Any, plugins: Plugins) -> Plugins:
    """Every param of every plugin, defaults filled in and values coerced (sorted by name)."""
    out: Plugins = {}
    for name in sorted(plugins):
        cls = registry.get(name)
        out[name] = dict(cls(**plugins[name]).values)
    return out


def config_key(plugins: Plugins, config: dict[str, Any] | None = None) -> str:
    """A short stable hash of a configuration (canonical plugins + config overrides)."""
    payload = {"plugins": {n: {k: _norm(v) for k, v in sorted(p.items())} for n, p in sorted(plugins.items())},
               "config": {k: _norm(v) for k, v in sorted((config or {}).items())}}
    return hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def _norm(v: Any) -> Any:
    if isinstance(v, float):
        return float(f"{v:.10g}")
    return v


def describe_plugins(plugins: Plugins, registry: Any | None = None, skip_defaults: bool = True) -> str:
    """``tidal(warmup_frac=0.41) + parallel`` (defaults omitted when the registry is given)."""
    if not plugins:
        return "baseline (no plugins)"
    parts = []
    for name, params in plugins.items():
        shown = dict(params)
        if registry is not None and skip_defaults:
            try:
                spec = registry.get(name).params
                shown = {k: v for k, v in params.items() if k not in spec or spec[k].default != v}
            except GolfplanError:
                pass
        args = ", ".join(f"{k}={fmt_value(v)}" for k, v in shown.items())
        parts.append(f"{name}({args})" if args else name)
    return " + ".join(parts)


def fmt_value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
