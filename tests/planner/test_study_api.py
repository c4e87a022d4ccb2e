"""Studies through the runner API (a simulated runner with known effects: no training)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import optuna
import pytest

from golfplan.core.config import load_spec
from golfplan.planner import waves
from golfplan.planner.definition import Experiment
from golfplan.planner.report import best_row, collect, write_report
from golfplan.planner.liveness import owner_record
from golfplan.planner.study import Planner

from .conftest import TINY, Sim, make_def, new_planner, registry_of

S = optuna.trial.TrialState


def test_tune_study_runs_baseline_and_all_on_first_and_reports_rows(make_planner, tmp_path):
    sim = Sim({"tidal": -0.02, "parallel": -0.05})
    p = make_planner(make_def(mode="tune", plugins={"tidal": {}, "parallel": {}, "gqa": {}}, trials=6), sim)
    res = p.run()
    trials = p.study.get_trials()
    assert res.stopped == "done" and len(trials) == 6 and len(sim.calls) == 6
    assert [t.user_attrs["label"] for t in trials[:2]] == ["baseline", "all-on"]
    assert trials[0].user_attrs["plugins"] == {} and set(trials[1].user_attrs["plugins"]) == {"tidal", "parallel", "gqa"}
    for t in trials:
        run = t.user_attrs["runs"][0]
        assert t.user_attrs["status"] == "complete" and run["seed"] == 1337 and run["steps"] == 100
        assert t.value == pytest.approx(run["val_bpb"])
    files = write_report(p, tmp_path / "report")
    md = files["text"]
    # cpu-profile runs are capped by steps: each row's ms/step over the baseline's sits beside its BPB
    assert "| # | Experiment | Description | BPB | ms/step vs baseline | Steps | Delta | Status |" in md
    assert md.count("speed benefit is not counted in its BPB") == 1
    for row in files["rows"]:
        assert f"| {row.label} |" in md and row.speed == "x1.00"
    assert md.count("| Baseline |") == 1
    csv_lines = (tmp_path / "report" / "t.csv").read_text().strip().splitlines()
    assert len(csv_lines) == 1 + 6
    best = files["best"]
    assert best.summary.mean == min(t.value for t in trials)
    spec = load_spec(config_file=files["best_yaml"])  # golfplan run --config accepts it
    assert spec.plugins == best.plugins and spec.config.num_layers == TINY["num_layers"]
    assert {"history.png", "bpb_vs_steps.png", "distribution.png"} <= {f.split("/")[-1] for f in files["plots"]}


def test_the_artifact_constraint_keeps_an_over_budget_trial_from_being_best(make_planner):
    sim = Sim({"parallel": -0.1, "tidal": -0.01}, artifact={"parallel": 20_000_000})
    d = make_def(mode="experiments", fixed={}, experiments=[
        Experiment("P", "parallel", plugins={"parallel": {}}), Experiment("T", "tidal", plugins={"tidal": {}})])
    p = make_planner(d, sim)
    p.run()
    by_label = {t.user_attrs["label"]: t for t in p.study.get_trials()}
    assert by_label["parallel"].value < by_label["tidal"].value  # the best BPB ...
    assert by_label["parallel"].constraints == {"artifact_bytes": 4_000_000.0}  # ... is over the limit
    assert p.best()[0].user_attrs["label"] == "tidal"
    assert p.study.best_trial.user_attrs["label"] == "tidal"  # Optuna agrees: best feasible
    rows, _ = collect(p.study)
    assert best_row(rows).label == "tidal"
    over = next(r for r in rows if r.label == "parallel")
    assert not over.feasible and "over the artifact limit" in over.status_cell()


def test_ablate_with_repeats_gives_verdicts_of_known_effects(make_planner):
    sim = Sim({"parallel": -0.05, "tidal": -0.0004, "z_loss": 0.02}, noise=0.002)
    d = make_def(mode="ablate", plugins={"parallel": {}, "tidal": {}, "gqa": {}, "z_loss": {}}, repeats=4)
    p = make_planner(d, sim)
    p.run()
    assert len(sim.calls) == 5 * 4
    rows, base = collect(p.study, d.alpha, d.noise_floor)
    words = {r.label: r.word for r in rows}
    assert words == {"baseline": "Baseline", "parallel": "Winner", "tidal": "Neutral", "gqa": "Neutral",
                     "z_loss": "Worse"}
    par = next(r for r in rows if r.label == "parallel")
    assert par.summary.n == 4 and par.verdict.p < 1e-4
    assert sorted(r.seed for r in par.runs) == [1337, 1338, 1339, 1340]
    assert base.summary.n == 4


def test_failed_runs_are_broken_and_a_crashing_runner_fails_only_its_trial(make_planner):
    def runner(job):
        if "parallel" in job.plugins:
            raise RuntimeError("cluster launcher exploded")
        return Sim({"tidal": -0.02})(job) if "tidal" not in job.plugins else {
            "status": "failed", "failure": "nan", "reason": "loss became NaN/inf by step 7"}
    d = make_def(mode="ablate", plugins={"parallel": {}, "tidal": {}, "gqa": {}})
    p = make_planner(d, runner)
    p.run()
    rows, _ = collect(p.study)
    cells = {r.label: r.status_cell() for r in rows}
    assert cells["parallel"] == "Broken: crash" and cells["tidal"] == "Broken: nan"
    assert cells["gqa"] in ("Neutral", "Slight help", "Worse")
    t = next(t for t in p.study.get_trials() if t.user_attrs["label"] == "parallel")
    assert "cluster launcher exploded" in t.user_attrs["reason"] and t.constraints["failed"] == 1.0


def test_a_refused_combination_costs_no_training_and_is_not_checked_again(make_planner):
    sim = Sim()
    d = make_def(mode="experiments", checks="static", experiments=[
        Experiment("A", "kv3", plugins={"gqa": {"kv_heads": 3}}),
        Experiment("B", "kv3 again", plugins={"gqa": {"kv_heads": 3}}),
        Experiment("C", "mqa", plugins={"gqa": {"kv_heads": 1}})])
    p = make_planner(d, sim)
    p.run()
    assert sorted(j.label for j in sim.calls) == ["baseline", "mqa"]
    rows, _ = collect(p.study)
    kv3 = next(r for r in rows if r.exp_id == "A")
    assert kv3.status == "refused" and kv3.word == "Refused" and "kv_heads=3 does not divide num_heads=4" in kv3.reason
    assert kv3.trials == [1, 2]  # the same configuration twice: one row, both refused
    second = p.study.get_trials()[2]
    assert second.user_attrs["check"]["cached"] and "refused before, trial #1" in second.user_attrs["reason"]


BRANCHY = '''
from golfplan.core.technique import Technique, hookimpl


class Branchy(Technique):
    name = "branchy"
    summary = "a data-dependent Python branch in the loss, wrongly declared compile-safe"
    compile_safe = True

    @hookimpl
    def on_loss(self, config):
        def term(ctx):
            if ctx.logits.abs().mean() > 1.0:
                return 1e-4 * ctx.logits.square().mean()
            return 1e-4 * ctx.logits.abs().mean()
        return term
'''


def test_a_refused_plugin_is_never_proposed_again_in_a_tune_study(make_planner, tmp_path):
    f = tmp_path / "branchy.py"
    f.write_text(textwrap.dedent(BRANCHY))
    sim = Sim({"tidal": -0.02})
    d = make_def(mode="tune", plugins={"branchy": {}, "tidal": {"warmup_frac": 0.382}}, trials=6, checks="full",
                 smoke_steps=20, plugin_path=[str(f)])
    p = make_planner(d, sim)
    p.run()
    trials = p.study.get_trials()
    refused = [t for t in trials if t.user_attrs["status"] == "refused"]
    assert len(refused) == 1 and refused[0].user_attrs["label"] == "all-on"
    assert "branchy" in refused[0].user_attrs["reason"] and refused[0].user_attrs["check"]["ok"] is False
    assert all("branchy" not in j.plugins for j in sim.calls)  # no training of it, ever
    later = [t for t in trials if t.number > refused[0].number]
    assert later and all("branchy" not in t.user_attrs["plugins"] for t in later)
    assert "golfplan.refused:set:branchy" in p.study.user_attrs
    # checks ran once per distinct configuration, then came from the cache
    fresh = [t for t in trials if not t.user_attrs["check"].get("cached")]
    assert len(fresh) == len({t.user_attrs["key"] for t in trials})


def test_compile_unsafe_plugins_are_screened_out_of_a_tune_space(make_planner):
    d = make_def(mode="tune", plugins={"layer_dropout": {}, "gqa": {}}, trials=2, checks="static")
    p = make_planner(d, Sim())
    assert "layer_dropout" in p.screened and "compile-safe" in p.screened["layer_dropout"]
    assert p.space.domains == {"gqa": {"kv_heads": [1, 2, 4]}}  # values the static check refuses are left out
    assert [g.name for g in p.space.groups] == ["gqa"]


def test_the_budget_starts_no_trial_that_cannot_finish(make_planner):
    sim = Sim(sleep=1.5)
    d = make_def(mode="tune", plugins={"tidal": {}, "parallel": {}}, trials=50, trial_seconds=1.0)
    p = make_planner(d, sim)
    p.run(max_new=1)  # one trial measured: the next estimate is what a run of it cost
    estimate = p.estimate_next_s()
    assert estimate == pytest.approx(p.spent_s()) and estimate >= 1.5
    p.d.budget_hours = (p.spent_s() + 1.5 * estimate) / 3600.0  # room for one more, not two
    res = p.run()
    assert res.stopped.startswith("budget") and 1 <= res.ran <= 2
    assert p.spent_s() <= p.d.budget_hours * 3600.0
    assert p.spent_s() + p.estimate_next_s() > p.d.budget_hours * 3600.0


def test_an_interrupted_trial_is_marked_failed_and_queued_again_with_its_finished_runs(make_planner):
    sim = Sim()
    d = make_def(mode="experiments", repeats=2, experiments=[Experiment("T", "tidal", plugins={"tidal": {}})])
    p = make_planner(d, sim)
    t = p.study.ask()  # the baseline, claimed by a "planner" that then died
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    owner = owner_record() | {"pid": dead.pid, "start": None}
    t.set_user_attr("owner", owner)
    t.set_user_attr("runs", [{"seed": 1337, "status": "complete", "val_bpb": 2.5}])
    assert p.reap_stale() == 1
    old = p.study.get_trials()[t.number]
    assert old.state == S.FAIL and old.user_attrs["status"] == "interrupted"
    p.run()
    base_trials = [x for x in p.study.get_trials() if x.user_attrs.get("label") == "baseline"]
    retry = base_trials[-1]
    assert retry.user_attrs["retry_of"] == t.number and retry.user_attrs["status"] == "complete"
    assert [r["seed"] for r in retry.user_attrs["runs"]] == [1337, 1338]
    assert [j.seed for j in sim.calls if j.label == "baseline"] == [1338]  # the finished seed was not rerun
    assert len(p.counted()) == 2  # baseline + tidal: the interrupted one does not count


def test_greedy_stacking_keeps_only_significant_improvements(make_planner, tmp_path):
    sim = Sim({"parallel": -0.05, "tidal": -0.02, "gqa": -0.01, "z_loss": 0.01},
              interactions={frozenset({"parallel", "gqa"}): 0.01}, noise=0.001)
    src = make_planner(make_def("abl", mode="ablate", plugins={"tidal": {}, "parallel": {}, "gqa": {}, "z_loss": {}},
                                repeats=3), sim)
    src.run()
    assert len(sim.calls) == 15
    stack_def = make_def("abl.stack", mode="experiments", repeats=3)
    planner = new_planner(stack_def, src.storage, runner=sim, out_dir=tmp_path / "runs")
    planner.open(enqueue=False)
    planner.set_baseline({})
    result = waves.stack(src, planner, say=lambda m: None)
    assert [s.plugin for s in result.steps] == ["parallel", "tidal", "gqa"]
    assert [s.kept for s in result.steps] == [True, True, False]
    assert set(result.plugins) == {"parallel", "tidal"}
    assert len(sim.calls) == 15 + 2 * 3  # parallel alone came from the ablation; 2 new stacks x 3 seeds
    tune = waves.tune_definition(planner.d, result.plugins, {}, planner.registry, "abl.tune", 4, None)
    assert tune.mode == "tune" and tune.always == {"parallel": {}, "tidal": {}} and not tune.plugins


def test_a_winner_replaces_the_fixed_plugin_it_displaced_when_stacked(make_planner, tmp_path):
    """The seed's waves ran on a cosine baseline: tidal (same lr_schedule slot) must still be stacked."""
    sim = Sim({"tidal": -0.02, "parallel": -0.05, "cosine": 0.0}, noise=0.001)
    src = make_planner(make_def("fx", mode="ablate", fixed={"cosine": {}}, plugins={"tidal": {}, "parallel": {}},
                                repeats=3), sim)
    src.run()
    planner = new_planner(make_def("fx.stack", mode="experiments", fixed={"cosine": {}}, repeats=3), src.storage,
                          runner=sim, out_dir=tmp_path / "runs")
    planner.open(enqueue=False)
    planner.set_baseline({"cosine": {}})
    result = waves.stack(src, planner, say=lambda m: None)
    assert [s.plugin for s in result.steps] == ["parallel", "tidal"] and all(s.kept for s in result.steps)
    assert set(result.plugins) == {"parallel", "tidal"}  # cosine gave its slot to tidal


def test_the_orphans_of_a_dead_planner_are_killed_and_nothing_else():
    from golfplan.planner.procs import kill_orphan

    from .test_runner import gone

    # a session leader (the run) that exits, leaving a "torchrun" and an unrelated process in its group
    code = ("import subprocess, sys, time; "
            "a = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)', 'golfplan', 'run']); "
            "b = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)', 'unrelated']); "
            "print(a.pid, b.pid, flush=True)")
    leader = subprocess.Popen([sys.executable, "-c", code], start_new_session=True, stdout=subprocess.PIPE, text=True)
    ours, other = map(int, leader.stdout.readline().split())
    leader.wait()
    try:
        kill_orphan({"child": leader.pid})
        time.sleep(0.3)
        assert gone(ours) and not gone(other)
    finally:
        os.kill(other, 9)


def test_a_resumed_study_must_have_the_same_definition_and_resolved_config(make_planner, tmp_path):
    from golfplan.planner.definition import StudyError
    from golfplan.planner.resume import base_spec

    p = make_planner(make_def("same", mode="ablate", plugins={"tidal": {}}), Sim())
    p.run()
    again = make_planner(make_def("same", mode="ablate", plugins={"tidal": {}}), Sim())  # resumes: fine
    assert again.run().ran == 0
    with pytest.raises(StudyError, match="different plugins"):
        make_planner(make_def("same", mode="ablate", plugins={"gqa": {}}), Sim())
    changed = make_def("same", mode="ablate", plugins={"tidal": {}})
    moved = base_spec(changed)  # the profile's defaults changed meanwhile
    moved = moved.__class__(profile="cpu", config=moved.config.replace(iterations=999), plugins={})
    q = Planner(changed, moved, registry_of(changed), storage=p.storage, runner=Sim(), out_dir=tmp_path)
    with pytest.raises(StudyError, match="iterations=999"):
        q.open()
