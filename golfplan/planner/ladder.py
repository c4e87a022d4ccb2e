"""The promotion ladder: plan on the cheapest rung, then promote its survivors, with repeats, up a
ladder of dearer profiles, each rung within its own budget; the upper rung's verdict wins.

    golfplan plan --plugins A,B,C --ladder cpu,1xh100,8xh100 --runs 60    (or ladder: in a study file)

A rung is ``PROFILE[+KEY=VALUE...]``: the profile of its runs, config keys of its runs
(``cpu+iterations=60``) and the rung's own settings:

    runs=N      at most N runs on this rung (bottom rung: the plan's run cap, default --runs)
    hours=H     the rung's time budget (bottom rung: default --budget-hours; others --rung-budget)
    repeats=N   seeds per promoted configuration (default 2; the bottom rung's plan decides its own)
    nproc=N     GPUs per run (default: the profile's, 8 on 8xh100)
    jobs=N      trials side by side on this rung (default: what fits the host running it)

Each rung is its own study, ``NAME@RUNG``, in the one storage: several workers share a rung
(``golfplan worker --study NAME@RUNG --storage URL``), rerunning the command resumes every rung, and
a rung's study does not depend on the rungs above it, so a ladder climbs by adding rungs (plan on a
laptop with ``--ladder cpu``; rerun with ``--ladder cpu,1xh100`` on the H100, same storage: the cpu
rung resumes with nothing to run and the H100 runs only what was promoted).

1. The bottom rung runs the plan (:func:`golfplan.planner.strategy.plan`, a black box), or, for a
   ``golfplan study`` file with ``ladder:``, the study in its own mode.
2. Promoted to the next rung: the rung's chosen configuration, the baseline, the best others by
   mean up to ``promote`` in all, then the close calls beyond them (any configuration within two
   standard errors of the chosen one, the run-to-run noise pooled over the rung's repeats), as many
   as the next rung's ``runs`` pay for at ``repeats`` seeds each.
3. The next rung runs them (an ``experiments`` study, side by side where the host allows), and
   records (its study's ``golfplan.ladder``) Spearman's rank correlation between its mean BPBs and
   the rung below's over the configurations both measured. Below 0.5 over 5 or more configurations
   the rung *disagrees*: it is said loudly and its report shows it. Either way the upper rung's
   verdict wins: its best configuration is its chosen one, and it promotes from its own ranking.
4. The ladder's answer is the top rung's chosen configuration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from golfplan.planner.definition import StudyDef, StudyError
from golfplan.planner.records import MIN_CONFIGS, MIN_SPEARMAN, RungRecord, TrialRecord, baseline_key
from golfplan.planner.storage import LADDER_ATTR

DEFAULT_REPEATS = 2
RUNG_KEYS = {"runs": int, "hours": float, "repeats": int, "nproc": int, "jobs": int}


@dataclass
class Rung:
    text: str  # as given: cpu+iterations=60+runs=20
    profile: str
    config: dict[str, Any] = field(default_factory=dict)
    runs: int | None = None
    hours: float | None = None
    repeats: int | None = None
    nproc: int | None = None
    jobs: int | None = None

    @property
    def name(self) -> str:
        """What the rung's study is named after: its profile and config keys (``cpu+iterations=60``),
        not its budget, so a rung's budget can change and its study still resumes."""
        return "+".join([self.profile] + [f"{k}={v}" for k, v in self.config.items()])


def parse_rung(text: str) -> Rung:
    """``PROFILE[+KEY=VALUE...]`` -> a Rung; an unknown profile or key is an error naming the closest."""
    from golfplan.core.config import check_field
    from golfplan.core.errors import ConfigError, closest
    from golfplan.core.profiles import PROFILES
    from golfplan.core.yamlfile import parse_set

    parts = [x.strip() for x in str(text).replace(" ", "").split("+")]
    if parts[0] not in PROFILES:
        raise StudyError(f"ladder rung '{text}': unknown profile '{parts[0]}'{closest(parts[0], PROFILES)}")
    rung = Rung("+".join(parts), parts[0])
    for item in parts[1:]:
        key, value = parse_set(item)
        if key in RUNG_KEYS:
            kind = RUNG_KEYS[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or (
                    kind is int and not float(value).is_integer()):
                raise StudyError(f"ladder rung '{text}': '{key}' expects a positive "
                                 f"{'integer' if kind is int else 'number'}, got {value!r}")
            setattr(rung, key, kind(value))
            continue
        try:
            check_field(key, value)
        except ConfigError as e:
            raise StudyError(f"ladder rung '{text}': {e} (or a rung key: {', '.join(RUNG_KEYS)})") from None
        rung.config[key] = value
    return rung


def parse_ladder(value: Any) -> list[Rung]:
    items = value.split(",") if isinstance(value, str) else list(value or [])
    rungs = [parse_rung(x) for x in items if str(x).strip()]
    names = [r.name for r in rungs]
    if len(set(names)) != len(names):
        raise StudyError(f"ladder {','.join(names)}: a rung is listed twice")
    return rungs


def rung_definition(d: StudyDef, rung: Rung, bottom: bool, rung_budget: float | None = None) -> StudyDef:
    """The study of ``rung``: ``d`` on the rung's profile and config keys, named ``NAME@RUNG``; an upper
    rung is an ``experiments`` study of the promoted configurations with ``repeats`` seeds each."""
    from golfplan.core.profiles import world_size

    out = replace(d, name=f"{d.name}@{rung.name}", profile=rung.profile, config={**d.config, **rung.config},
                  ladder=[], nproc=rung.nproc or world_size(rung.profile), jobs=rung.jobs or d.jobs)
    if bottom:
        return replace(out, budget_hours=rung.hours if rung.hours is not None else d.budget_hours)
    return replace(out, mode="experiments", experiments=[], baseline=True, repeats=rung.repeats or DEFAULT_REPEATS,
                   budget_hours=rung.hours if rung.hours is not None else rung_budget)


# ---- what is promoted, and how far two rungs agree ----------------------------------------------


def pooled_sd(rows: list[Any], prior: float) -> float:
    """The run-to-run sd pooled over configurations with repeats (prior ``prior``, worth two runs)."""
    ss, dof = 2 * prior ** 2, 2
    for r in rows:
        v = r.values
        if len(v) > 1:
            m = sum(v) / len(v)
            ss += sum((x - m) ** 2 for x in v)
            dof += len(v) - 1
    return math.sqrt(ss / dof)


def promote(rows: list[Any], chosen: Any, baseline: Any, k: int, limit: int | None, noise: float) -> list[Any]:
    """The configurations a rung promotes (see the module's doc), best first after the chosen one
    and the baseline; at most ``limit`` (what the next rung's runs pay for)."""
    from golfplan.planner.report import ranked

    ok = [r for r in ranked(rows) if r.status == "complete" and r.feasible and r.summary]
    picks: dict[str, Any] = {}
    for r in (chosen, baseline):
        if r is not None and any(o.key == r.key for o in ok):
            picks.setdefault(r.key, r)
    for r in ok:
        if len(picks) >= k:
            break
        picks.setdefault(r.key, r)
    if chosen is not None and chosen.summary:
        sd = pooled_sd(rows, noise / 2)
        for r in ok:
            se = sd * math.sqrt(1 / r.summary.n + 1 / chosen.summary.n)
            if r.key not in picks and r.summary.mean - chosen.summary.mean < 2 * se:
                picks[r.key] = r  # a close call: its rank on this rung is not settled
    out = list(picks.values())
    return out[:limit] if limit is not None else out


def spearman(a: list[float], b: list[float]) -> float | None:
    """Spearman's rank correlation (None with fewer than 2 pairs, or a constant side)."""
    if len(a) < 2 or len(set(a)) < 2 or len(set(b)) < 2:
        return None
    from scipy.stats import spearmanr

    rho = float(spearmanr(a, b).statistic)
    return rho if math.isfinite(rho) else None


def agreement(lower: list[Any], upper: list[Any]) -> tuple[float | None, int]:
    """(Spearman of the mean BPBs, configurations) over the configurations complete on both rungs."""
    below = {r.key: r.summary.mean for r in lower if r.status == "complete" and r.summary}
    both = [(below[r.key], r.summary.mean) for r in upper if r.status == "complete" and r.summary and r.key in below]
    return spearman([x for x, _ in both], [y for _, y in both]), len(both)


def disagrees(rho: float | None, n: int) -> bool:
    return rho is not None and n >= MIN_CONFIGS and rho < MIN_SPEARMAN


def agreement_text(rec: RungRecord) -> str:
    """One line on how far a rung agrees with the one below it."""
    return rec.text()


# ---- climbing ------------------------------------------------------------------------------------


@dataclass
class RungResult:
    rung: Rung
    planner: Any
    rows: list[Any]
    chosen: Any  # the rung's chosen row (its best on an upper rung)
    record: RungRecord | None = None  # upper rungs: the agreement with the rung below


@dataclass
class LadderResult:
    rungs: list[RungResult]
    bottom: Any = None  # what the bottom rung's runner returned (the plan's PlanResult)

    @property
    def chosen(self) -> Any:
        return self.rungs[-1].chosen

    @property
    def disagreements(self) -> list[RungRecord]:
        return [r.record for r in self.rungs if r.record is not None and r.record.disagrees]


def rows_of(planner: Any) -> tuple[list[Any], Any]:
    """The planner's rows and its chosen (else best feasible) row."""
    from golfplan.planner.report import best_row, chosen_key, collect

    rows, _ = collect(planner.study, planner.d.alpha, planner.d.noise_floor)
    return rows, best_row(rows, chosen_key(planner.study))


def climb(d: StudyDef, rungs: list[Rung], registry: Any, bottom: Callable[[StudyDef, int | None], tuple[Any, Any]],
          storage: Any = None, runner: Any = None, out_dir: str = "runs", say: Callable[[str], None] = print,
          planner_say: Callable[[str], None] | None = None, rung_budget: float | None = None) -> LadderResult:
    """Climb ``rungs``: ``bottom(definition, run cap)`` runs the bottom rung (the cap: its ``runs=``, else
    None) and returns (its Planner, what it returned); each upper rung runs what the rung below
    promotes. ``d.name`` names the ladder (``NAME@RUNG`` each rung's study); ``d.promote`` how many
    are promoted."""
    from golfplan.planner.configs import TrialConfig
    from golfplan.planner.resume import base_spec
    from golfplan.planner.study import Planner

    if not rungs:
        raise StudyError("a ladder needs at least one rung (--ladder cpu,1xh100,...)")
    say(f"ladder {d.name}: " + " -> ".join(r.text for r in rungs))
    planner, ran = bottom(rung_definition(d, rungs[0], bottom=True), rungs[0].runs)
    rows, chosen = rows_of(planner)
    out = LadderResult([RungResult(rungs[0], planner, rows, chosen)], ran)
    for rung in rungs[1:]:
        below = out.rungs[-1]
        rd = rung_definition(d, rung, bottom=False, rung_budget=rung_budget)
        base_row = next((r for r in below.rows if r.key == baseline_key(below.planner.study)), None)
        limit = rung.runs // rd.repeats if rung.runs else None
        picks = promote(below.rows, below.chosen, base_row, d.promote, limit, d.noise_floor)
        say(f"rung {below.rung.name}: chose {below.chosen.label if below.chosen else 'nothing'}; promoting "
            f"{len(picks)} configuration(s) to {rung.name}, {rd.repeats} seed(s) each")
        p = Planner(rd, base_spec(rd), registry, storage=storage if storage is not None else planner.storage,
                    runner=runner, out_dir=out_dir, say=planner_say or say)
        p.open()  # queues the baseline
        have = {TrialRecord.of(t).key for t in p.counted()}
        for i, row in enumerate(picks):
            if row.key not in have:
                p.enqueue(TrialConfig(row.label, row.plugins, dict(row.config), row.description, f"L{i}", "ladder"))
        p.run()
        rows, best = rows_of_upper(p)
        rho, n = agreement(below.rows, rows)
        rec = RungRecord(rung.name, below.planner.d.name, rho, n, disagrees(rho, n), [r.key for r in picks],
                         best.key if best else "")
        p.set_study_attr(LADDER_ATTR, rec.to_attr())
        if best is not None:
            p.choose(best.plugins, f"ladder: best on {rung.name}", config=best.config)
        say(agreement_text(rec))
        out.rungs.append(RungResult(rung, p, rows, best, rec))
    top = out.rungs[-1]
    say(f"ladder {d.name}: chose {top.chosen.label if top.chosen else 'nothing'} on {top.rung.name}"
        + (f" ({top.chosen.summary.fmt()})" if top.chosen and top.chosen.summary else ""))
    return out


def rows_of_upper(planner: Any) -> tuple[list[Any], Any]:
    """An upper rung's rows and its best feasible row: its own ranking, whatever was chosen below."""
    from golfplan.planner.report import best_row, collect

    rows, _ = collect(planner.study, planner.d.alpha, planner.d.noise_floor)
    return rows, best_row(rows)
