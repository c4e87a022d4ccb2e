"""The seed's waves, automated: ablate -> greedy stack -> tune.

* **ablate** is a study of mode ``ablate``: the baseline and each plugin alone with default
  params, ``repeats`` seeds each, judged against the baseline (see :mod:`stats`).
* **stack** starts from the ablation's baseline and adds its winners in order of effect (most
  negative delta first). Each candidate stack is run with ``repeats`` seeds and kept only if it
  beats the current stack the way a Winner beats a baseline (Welch p < alpha and more than the
  noise floor; with a single seed, more than the floor). Candidates that break the slot,
  conflict or requires rules are skipped with the reason. The ablation's runs are copied into
  the stack study, so the baseline and the single-plugin results are not run again. The final
  stack is the stack study's chosen configuration: its report's best, even where a dropped
  candidate measured lower by chance.
* **tune** searches the params of the final stack's plugins with TPE (a ``tune`` study whose
  ``always`` plugins are the stack), in the budget left.

``golfplan plan`` runs the three in order under one ``--budget-hours``; each phase is its own
study (``NAME.ablate``, ``NAME.stack``, ``NAME.tune``), so rerunning the command resumes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable

from golfplan.planner.definition import Plugins, StudyDef, StudyError, describe_plugins
from golfplan.planner.records import TrialRecord
from golfplan.planner.stats import SLIGHT, WINNER, improves


@dataclass
class StackStep:
    plugin: str
    label: str
    kept: bool
    note: str
    values: list[float] = field(default_factory=list)


@dataclass
class StackResult:
    plugins: Plugins
    steps: list[StackStep]
    values: list[float]
    stopped: str = ""


def winners(rows: list[Any], base: Any, include_slight: bool = False) -> list[tuple[str, dict, Any]]:
    """(plugin, params, row) of each single-plugin configuration judged a Winner, best effect first."""
    words = (WINNER, SLIGHT) if include_slight else (WINNER,)
    out = []
    base_names = set(base.plugins) if base else set()
    for r in rows:
        if r.is_baseline or r.verdict is None or r.verdict.word not in words or not r.feasible:
            continue
        added = [n for n in r.plugins if n not in base_names]
        if len(added) != 1:
            continue
        out.append((added[0], dict(r.plugins[added[0]]), r))
    out.sort(key=lambda x: x[2].verdict.delta)
    return out


def copy_trials(source: Any, target: Any) -> int:
    """Copy the ``source`` study's finished trials into the ``target`` Planner's study (keys it lacks),
    marked as copies."""
    import optuna

    S = optuna.trial.TrialState
    have = {TrialRecord.of(t).key for t in target.study.get_trials(deepcopy=False)
            if t.state in (S.COMPLETE, S.PRUNED, S.RUNNING, S.WAITING)}
    n = 0
    for t in source.get_trials(deepcopy=False, states=(S.COMPLETE, S.PRUNED)):
        rec = TrialRecord.of(t)
        if not rec.key or rec.key in have or rec.status not in ("complete", "pruned", "refused", "failed"):
            continue
        target.add_copy(t, source.study_name)
        have.add(rec.key)
        n += 1
    return n


def evaluate(planner: Any, plugins: Plugins, label: str, description: str, phase: str) -> list[float] | None:
    """Run ``plugins`` with the study's repeats (or reuse its finished runs); None when the budget
    stopped it. Returns the configuration's final BPBs (empty when it failed or was refused)."""
    from golfplan.planner.configs import TrialConfig
    from golfplan.planner.report import collect

    key = planner.key_of(plugins)
    rows, _ = collect(planner.study, planner.d.alpha, planner.d.noise_floor)
    row = next((r for r in rows if r.key == key), None)
    if row is None:
        planner.enqueue(TrialConfig(label, plugins, {}, description, "", phase), key)
        res = planner.run()
        if res.stopped.startswith("budget"):
            return None
        rows, _ = collect(planner.study, planner.d.alpha, planner.d.noise_floor)
        row = next((r for r in rows if r.key == key), None)
    return row.values if row is not None else []


def stack(source: Any, planner: Any, include_slight: bool = False, say: Callable[[str], None] = print) -> StackResult:
    """Greedy stacking of ``source``'s (an ablation Planner) winners, run in ``planner``'s study. The
    final stack is recorded as the stack study's chosen configuration (its report's best), whatever
    a dropped candidate measured."""
    result = _stack(source, planner, include_slight, say)
    planner.choose(result.plugins, "final stack", stopped=result.stopped)
    return result


def _stack(source: Any, planner: Any, include_slight: bool, say: Callable[[str], None]) -> StackResult:
    from golfplan.planner.report import collect
    from golfplan.registry import clash, combination_problems

    rows, base = collect(source.study, source.d.alpha, source.d.noise_floor)
    if base is None or not base.values:
        raise StudyError(f"study '{source.d.name}' has no finished baseline to stack on")
    n = copy_trials(source.study, planner)
    if n:
        say(f"copied {n} finished configurations from '{source.d.name}'")
    found = winners(rows, base, include_slight)
    if not found:
        say("no winners to stack: the baseline stays the best base")
        return StackResult(dict(base.plugins), [], base.values, "no winners")
    say("stacking, best effect first: " + ", ".join(f"{p} ({r.verdict.fmt_delta()})" for p, _, r in found))
    current, values = dict(base.plugins), list(base.values)
    steps: list[StackStep] = []
    for name, params, row in found:
        # a winner replaces the fixed plugin it displaced in the ablation (a slot-mate, a conflict),
        # as that ablation measured it; a clash with another winner is a real conflict (skipped)
        cls = planner.registry.get(name)
        cand = {n: p for n, p in current.items() if not (n in base.plugins and clash(planner.registry.get(n), cls))}
        cand[name] = params
        label = "+".join(n for n in cand if n not in base.plugins)
        problems = combination_problems(planner.registry.classes(list(cand)))
        if problems:
            steps.append(StackStep(name, label, False, f"skipped: {problems[0]}"))
            say(f"  {label}: skipped ({problems[0]})")
            continue
        got = evaluate(planner, cand, label, describe_plugins(cand, planner.registry), "stack")
        if got is None:
            say("  budget spent: stacking stops here")
            return StackResult(current, steps, values, "budget")
        keep = bool(got) and improves(got, values, planner.d.alpha, planner.d.noise_floor)
        note = _compare(got, values, planner.d.alpha, planner.d.noise_floor)
        steps.append(StackStep(name, label, keep, note, got))
        say(f"  {label}: {'kept' if keep else 'dropped'} ({note})")
        if keep:
            current, values = cand, got
    return StackResult(current, steps, values)


def _compare(new: list[float], old: list[float], alpha: float, floor: float) -> str:
    from golfplan.planner.stats import summarize, verdict

    if not new:
        return "no complete run"
    v = verdict(new, old, alpha, floor)
    s = summarize(new)
    return f"{s.fmt() if s else '—'} vs current, {v.fmt_delta()}: {v.word}"


def tune_definition(stack_def: StudyDef, plugins: Plugins, base_fixed: Plugins, registry: Any, name: str,
                    trials: int, budget_hours: float | None) -> StudyDef | None:
    """A ``tune`` study over the params of the stack's added plugins (None when none has params)."""
    added = {n: {} for n in plugins if n not in base_fixed}
    if not any(registry.get(n).params for n in added):
        return None
    return replace(stack_def, name=name, mode="tune", plugins={}, always=added, fixed=dict(base_fixed),
                   experiments=[], trials=trials, budget_hours=budget_hours, repeats=1)
