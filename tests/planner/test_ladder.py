"""The promotion ladder: rungs parsed, survivors promoted with repeats, agreement measured, the upper
rung's verdict winning, loudly when the rungs disagree; end to end on two CPU rungs."""

from __future__ import annotations

import optuna
import pytest

from golfplan.planner.definition import StudyError

from .conftest import TINY_SETS, Sim, log_events, make_def, registry_of

S = optuna.trial.TrialState
CANDIDATES = ("parallel", "tidal", "gqa", "z_loss", "silu2", "untied")


class Rungs(Sim):
    """A simulated runner whose effects depend on the rung (the runs' iterations): at 40 steps
    parallel and gqa help and z_loss hurts; at 60 steps they turn round."""

    LOW = {"parallel": -0.05, "tidal": -0.02, "gqa": -0.015, "z_loss": 0.02, "silu2": 0.01, "untied": 0.004}
    HIGH = {"parallel": 0.03, "tidal": -0.02, "gqa": 0.02, "z_loss": -0.04, "silu2": 0.01, "untied": -0.01}

    def __call__(self, job):
        self.effects = self.HIGH if job.spec["config"]["iterations"] >= 60 else self.LOW
        return super().__call__(job)


def test_a_ladder_and_its_rungs_parse_with_clear_errors():
    from golfplan.planner.ladder import parse_ladder, rung_definition

    cpu, longer, top = parse_ladder("cpu, cpu+iterations=60+repeats=3+runs=12, 8xh100+hours=2")
    assert (longer.profile, longer.config, longer.repeats, longer.runs) == ("cpu", {"iterations": 60}, 3, 12)
    assert longer.name == "cpu+iterations=60"  # the study's name: not the rung's budget, so that can change
    d = make_def("h.plan", plugins={"tidal": {}}, config={"num_layers": 2, "iterations": 40})
    low, up, gpu = (rung_definition(d, r, bottom=r is cpu) for r in (cpu, longer, top))
    assert low.name == "h.plan@cpu" and low.mode == "tune" and low.config["iterations"] == 40
    assert up.name == "h.plan@cpu+iterations=60" and up.mode == "experiments" and up.repeats == 3
    assert up.config == {"num_layers": 2, "iterations": 60} and up.nproc == 1
    assert gpu.nproc == 8 and gpu.budget_hours == 2.0 and gpu.profile == "8xh100"  # torchrun over the 8 GPUs
    for bad, said in (("cpux", "did you mean 'cpu'"), ("cpu+iteratons=3", "did you mean 'iterations'"),
                      ("cpu+runs=0", "'runs' expects a positive integer"), ("cpu,cpu", "listed twice")):
        with pytest.raises(StudyError, match=said):
            parse_ladder(bad)


def test_spearman_and_when_two_rungs_disagree():
    from golfplan.planner.ladder import disagrees, spearman

    assert spearman([1, 2, 3, 4, 5], [2, 4, 6, 8, 10]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4, 5], [5, 4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1.0], [2.0]) is None
    assert disagrees(0.3, 5) and not disagrees(0.3, 4) and not disagrees(0.6, 8)


def climb_sim(tmp_path, runner, ladder, promote=6, lines=None, storage=None):
    """A ladder whose bottom rung is an ablation (as ``golfplan study FILE`` with ``ladder:``): the
    ladder's own mechanics, whatever the plan strategy does (the command-line test climbs from a plan)."""
    from golfplan.planner.ladder import climb, parse_ladder

    from .conftest import new_planner

    d = make_def("lad", mode="ablate", plugins={n: {} for n in CANDIDATES}, promote=promote)
    storage = storage or optuna.storages.InMemoryStorage()  # fast: SQLite's part is tested elsewhere
    say = lines.append if lines is not None else (lambda m: None)

    def bottom(rd, cap):
        p = new_planner(rd, storage, runner=runner, out_dir=tmp_path / "runs")
        p.open()
        p.run(max_new=cap)
        return p, None

    return climb(d, parse_ladder(ladder), registry_of(d), bottom, storage=storage, runner=runner,
                 out_dir=str(tmp_path / "runs"), say=say)


def test_the_upper_rungs_verdict_wins_and_a_disagreement_is_reported_loudly(tmp_path):
    from golfplan.planner.records import RungRecord
    from golfplan.planner.report import chosen_key, write_report

    lines: list[str] = []
    sim = Rungs(noise=0.0005)
    res = climb_sim(tmp_path, sim, "cpu,cpu+iterations=60", lines=lines)
    low, high = res.rungs
    assert low.planner.d.name == "lad@cpu" and high.planner.d.name == "lad@cpu+iterations=60"
    assert set(low.chosen.plugins) == {"parallel"}  # what 40 steps say
    # the promoted configurations ran on the upper rung with 2 seeds each, the baseline among them
    upper_jobs = [j for j in sim.calls if j.spec["config"]["iterations"] == 60]
    assert len(upper_jobs) == 2 * len(high.rows) == 2 * 6  # the chosen, the baseline and the next four
    rec = RungRecord.of(high.planner.study)
    assert rec.below == "lad@cpu" and rec.n >= 5 and rec.spearman < 0.5 and rec.disagrees
    assert res.disagreements == [rec]
    assert any("DISAGREES" in line and "lad@cpu" in line for line in lines)
    # the upper rung's best is the ladder's choice, not the bottom rung's
    best = min((r for r in high.rows if r.summary), key=lambda r: r.summary.mean)
    assert res.chosen.key == best.key == rec.chosen == chosen_key(high.planner.study) != low.chosen.key
    assert set(best.plugins) == {"tidal"}
    md = write_report(high.planner, tmp_path / "rep", plots=False)["text"]
    assert "**!! rung cpu+iterations=60 DISAGREES with lad@cpu" in md


def test_rungs_that_agree_say_so_and_a_rerun_resumes_every_rung(tmp_path):
    from golfplan.planner.records import RungRecord

    sim = Sim({"parallel": -0.05, "tidal": -0.02, "gqa": -0.015, "z_loss": 0.02, "silu2": 0.01, "untied": 0.004},
              noise=0.0005)
    storage = optuna.storages.InMemoryStorage()
    res = climb_sim(tmp_path, sim, "cpu,cpu+iterations=60", storage=storage)
    rec = RungRecord.of(res.rungs[1].planner.study)
    assert rec.n >= 5 and rec.spearman > 0.5 and not rec.disagrees and not res.disagreements
    runs = len(sim.calls)
    again = climb_sim(tmp_path, sim, "cpu,cpu+iterations=60", storage=storage)
    assert len(sim.calls) == runs and again.chosen.key == res.chosen.key  # nothing ran twice


def test_a_rung_runs_only_what_its_budget_pays_for(tmp_path):
    sim = Sim({"parallel": -0.05, "tidal": -0.02}, noise=0.0005)
    res = climb_sim(tmp_path, sim, "cpu,cpu+iterations=60+runs=6+repeats=3")
    high = res.rungs[1]
    assert high.planner.d.repeats == 3 and len(high.rows) == 2  # 6 runs: the chosen one and the baseline
    assert {len(r.values) for r in high.rows} == {3}


def test_plan_climbs_a_ladder_from_the_command_line(tmp_path, sim_file, capsys, monkeypatch):
    from golfplan.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SIM_LOG", str(tmp_path / "sim.log"))
    storage = f"sqlite:///{tmp_path / 'q.db'}"
    code = main(["plan", "--plugins", "tidal,parallel,gqa,z_loss", "--runner", f"{sim_file}:run", "--checks", "none",
                 "--runs", "8", "--ladder", "cpu,cpu+iterations=60+repeats=1", "--promote", "3", "--study", "q",
                 "--storage", storage, "--no-report", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0, out
    names = {s.study_name for s in optuna.get_all_study_summaries(storage)}
    assert names == {"q.plan@cpu", "q.plan@cpu+iterations=60"}
    assert "ladder q.plan:" in out and "the ladder's choice (the top rung's best): " in out
    assert "rung cpu+iterations=60 against q.plan@cpu: Spearman" in out
    upper = [e for e in log_events(tmp_path / "sim.log") if e[0] == "end" and e[2] == "q.plan@cpu+iterations=60"]
    assert len(upper) == 3  # the three promoted, one seed each


def test_a_ladder_names_each_rungs_profile(capsys, tmp_path, monkeypatch):
    from golfplan.cli import main

    monkeypatch.chdir(tmp_path)
    code = main(["plan", "--plugins", "tidal", "--ladder", "cpu,1xh100", "--profile", "cpu", "--storage",
                 f"sqlite:///{tmp_path / 'x.db'}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "drop --profile" in err[0]


@pytest.mark.slow  # real training on two CPU rungs: about a minute on a busy 2-core machine
def test_the_ladder_runs_end_to_end_on_two_cpu_rungs(tmp_path):
    from .test_cli import run

    sets = [x for s in TINY_SETS if not s.startswith(("iterations=", "warmdown_iters="))
            for x in ("--set", s)] + ["--set", "iterations=8", "--set", "warmdown_iters=2"]
    storage = f"sqlite:///{tmp_path / 'e.db'}"
    out = run(["plan", "--plugins", "tidal", "--checks", "none", "--runs", "3", "--ladder",
               "cpu,cpu+iterations=16+repeats=1", "--promote", "2", "--study", "e", "--storage", storage,
               "--report-dir", str(tmp_path / "rep"), *sets], tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr + out.stdout
    upper = optuna.load_study(study_name="e.plan@cpu+iterations=16", storage=storage).get_trials()
    assert len(upper) == 2 and all(t.state == S.COMPLETE for t in upper)
    for t in upper:
        assert t.user_attrs["runs"][0]["steps"] == 16 and t.user_attrs["runs"][0]["threads"] == 1
    assert "rung cpu+iterations=16 against e.plan@cpu" in out.stdout
    best = tmp_path / "rep" / "best.yaml"
    assert best.exists() and "iterations: 16" in best.read_text()


def test_a_study_file_with_a_ladder_climbs_from_the_study_itself(tmp_path, sim_file, capsys, monkeypatch):
    from golfplan.cli import main

    monkeypatch.chdir(tmp_path)
    f = tmp_path / "abl.yaml"
    f.write_text("mode: ablate\nplugins: [tidal, parallel]\nladder: cpu,cpu+iterations=60+repeats=1\npromote: 3\n")
    storage = f"sqlite:///{tmp_path / 'a.db'}"
    code = main(["study", str(f), "--runner", f"{sim_file}:run", "--checks", "none", "--storage", storage,
                 "--no-report", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert {s.study_name for s in optuna.get_all_study_summaries(storage)} == {"abl@cpu", "abl@cpu+iterations=60"}
    top = optuna.load_study(study_name="abl@cpu+iterations=60", storage=storage).get_trials()
    assert len(top) == 3 and "ladder abl:" in out  # the ablation's three configurations, promoted
