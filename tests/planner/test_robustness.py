"""What a plugin, a parameter or an input can do to a study: refuse one configuration, never the study.

Plugin code that raises, hangs or exhausts memory in the preflight; plugins that reject sampled
combinations of their params; storage URLs with passwords; inputs the planner refuses; how many
threads a trial gets; the speed column of step-capped reports; and the planner bugs of issue 10.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import optuna
import pytest

from golfplan.planner.definition import Experiment
from golfplan.planner.report import collect, write_report

from tests.conftest import golfplan_in_process

from .conftest import Sim, make_def, new_planner
from .test_cli import run, tiny_args

S = optuna.trial.TrialState

# Plugins whose code misbehaves in the check: in the smoke stage (their evaluate hook runs only when a
# model is trained and validated) or in the static stage (configure), where a check gets to quickest.
MISBEHAVING = '''
import time

from golfplan.core.technique import Float, Technique, hookimpl


class Boom(Technique):
    name = "boom"
    summary = "raises in its evaluate hook"

    @hookimpl
    def evaluate(self, model, val, config):
        raise RuntimeError("boom in evaluate")


class Stuck(Technique):
    name = "stuck"
    summary = "never returns from its evaluate hook"

    @hookimpl
    def evaluate(self, model, val, config):
        time.sleep(3600)


class Greedy(Technique):
    name = "greedy"
    summary = "asks for a petabyte in its evaluate hook"

    @hookimpl
    def evaluate(self, model, val, config):
        return bytearray(1 << 50)


class Broken(Technique):
    name = "broken"
    summary = "raises in configure (the static stage)"

    @hookimpl
    def configure(self, config):
        raise RuntimeError("broken configure")


class Frozen(Technique):
    name = "frozen"
    summary = "never returns from configure"

    @hookimpl
    def configure(self, config):
        time.sleep(3600)


class Hungry(Technique):
    name = "hungry"
    summary = "asks for a petabyte in configure"

    @hookimpl
    def configure(self, config):
        return {"num_layers": len(bytearray(1 << 50))}


class Picky(Technique):
    name = "picky"
    summary = "rejects a > b itself, without declaring the order"
    params = {"a": Float(0.3, 0.0, 1.0), "b": Float(0.6, 0.0, 1.0)}

    def __init__(self, **values):
        super().__init__(**values)
        if self.p.a > self.p.b:
            from golfplan.core.errors import PluginError

            raise PluginError(f"plugin 'picky': a={self.p.a} exceeds b={self.p.b}")
'''


@pytest.fixture
def misbehaving(tmp_path):
    f = tmp_path / "misbehaving.py"
    f.write_text(textwrap.dedent(MISBEHAVING))
    return str(f)


def by_label(study):
    return {t.user_attrs["label"]: t for t in study.get_trials() if t.state != S.FAIL}


def check_refusals(p, expected):
    trials = by_label(p.study)
    for label, (kind, reason) in expected.items():
        ua = trials[label].user_attrs
        assert (ua["status"], ua["failure"]) == ("refused", kind), ua
        assert reason in ua["reason"] and ua["check"]["ok"] is False and not ua.get("runs")
        assert trials[label].constraints == {"refused": 1.0}  # told to Optuna as infeasible
    cells = {r.label: r.status_cell() for r in collect(p.study)[0]}
    assert {label: cells[label] for label in expected} == {label: f"Refused: check {kind}"
                                                           for label, (kind, _) in expected.items()}
    return trials


def test_a_plugin_that_raises_hangs_or_exhausts_memory_in_the_check_refuses_one_configuration(
        make_planner, misbehaving):
    sim = Sim()
    d = make_def(mode="experiments", checks="full", baseline=False, trial_timeout=20, plugin_path=[misbehaving],
                 experiments=[Experiment("B", "broken", plugins={"broken": {}}),
                              Experiment("F", "frozen", plugins={"frozen": {}}),
                              Experiment("H", "hungry", plugins={"hungry": {}})])
    p = make_planner(d, sim)
    assert p.run().stopped == "done"
    trials = check_refusals(p, {"broken": ("crash", "preflight crash (exit 1): RuntimeError: broken configure"),
                                "frozen": ("timeout", "preflight timed out: killed after the hard limit of 20s"),
                                "hungry": ("oom", "preflight out of memory: MemoryError")})
    assert sim.calls == []  # nothing of them trained
    # the refusal is remembered: proposing the configuration again costs nothing
    p.enqueue(p.experiment_configs()[0], trials["broken"].user_attrs["key"])
    p.run()
    again = p.study.get_trials()[-1]
    assert again.user_attrs["check"]["cached"] and "refused before, trial #0" in again.user_attrs["reason"]


@pytest.mark.slow
def test_a_plugin_that_raises_hangs_or_exhausts_memory_in_the_smoke_stage_refuses_one_configuration(
        make_planner, misbehaving):
    sim = Sim({"tidal": -0.02})
    d = make_def(mode="experiments", checks="full", smoke_steps=20, trial_timeout=120, plugin_path=[misbehaving],
                 experiments=[Experiment("B", "boom", plugins={"boom": {}}),
                              Experiment("S", "stuck", plugins={"stuck": {}}),
                              Experiment("G", "greedy", plugins={"greedy": {}}),
                              Experiment("T", "tidal", plugins={"tidal": {}})])
    p = make_planner(d, sim)
    assert p.run().stopped == "done"
    trials = check_refusals(p, {"boom": ("crash", "RuntimeError: boom in evaluate"),
                                "stuck": ("timeout", "timed out: killed after the hard limit of 120s"),
                                "greedy": ("oom", "MemoryError")})
    assert sorted(j.label for j in sim.calls) == ["baseline", "tidal"]  # only the sound ones trained
    assert trials["tidal"].user_attrs["status"] == "complete"


def test_a_plugin_that_crashes_the_check_inside_its_run_refuses_it_and_the_study_finishes(tmp_path, misbehaving):
    storage = f"sqlite:///{tmp_path / 'c.db'}"
    f = tmp_path / "study.yaml"
    f.write_text(f"mode: experiments\nbaseline: false\nplugin_path: [{misbehaving}]\n"
                 "experiments:\n  - {id: X, name: broken, plugins: {broken: {}}}\n")
    out = run(["study", str(f), "--profile", "cpu", "--storage", storage, "--study", "c", "--no-report",
               *tiny_args()], tmp_path)
    assert out.returncode == 0, out.stderr + out.stdout
    assert "Traceback" not in out.stdout + out.stderr
    broken = by_label(optuna.load_study(study_name="c", storage=storage))["broken"].user_attrs
    assert (broken["status"], broken["failure"]) == ("refused", "crash")
    assert "preflight crash (exit 1): RuntimeError: broken configure" in broken["reason"]
    run_dir = broken["check"]["where"]  # the check ran in the trial's own `golfplan run` process
    assert "RuntimeError: broken configure" in (tmp_path / run_dir / "stderr.log").read_text()


def test_screening_catches_a_plugin_that_raises_and_the_study_goes_on(make_planner, misbehaving):
    d = make_def(mode="tune", plugins={"broken": {}, "tidal": {}}, trials=3, checks="static",
                 plugin_path=[misbehaving])
    p = make_planner(d, Sim())
    assert "RuntimeError: broken configure" in p.screened["broken"]
    assert p.run().stopped == "done" and len(p.finished()) == 3


def test_a_plugin_that_hangs_in_the_static_stage_is_refused_and_the_study_goes_on(make_planner, misbehaving,
                                                                                  monkeypatch):
    """Screening and `checks: static` run plugin code in the planner's process: on a watchdog."""
    from golfplan.planner import checks

    monkeypatch.setattr(checks, "STATIC_LIMIT_S", 1.0)
    tune = make_planner(make_def(mode="tune", plugins={"frozen": {}, "tidal": {}}, trials=3, checks="static",
                                 plugin_path=[misbehaving]), Sim())
    assert "did not return within 1s" in tune.screened["frozen"]
    assert tune.run().stopped == "done" and len(tune.finished()) == 3
    sim = Sim()
    ablate = make_planner(make_def("x", mode="experiments", checks="static", plugin_path=[misbehaving],
                                   experiments=[Experiment("F", "frozen", plugins={"frozen": {}})]), sim)
    assert ablate.run().stopped == "done"
    frozen = by_label(ablate.study)["frozen"].user_attrs
    assert frozen["status"] == "refused" and "did not return within 1s" in frozen["reason"]
    assert [j.label for j in sim.calls] == ["baseline"]


# ---- parameters: ordered ones are sampled valid; a rejected combination refuses one configuration ------


def ordered_plugins():
    from golfplan.registry import Registry

    reg = Registry()
    return [n for n in reg.names() if reg.get(n).ordered_params()]


def test_thermal_vent_and_head_pruning_declare_their_order():
    assert {"thermal_vent", "head_pruning"} <= set(ordered_plugins())


@pytest.mark.parametrize("name", ordered_plugins())
def test_searching_a_plugin_with_ordered_params_never_aborts(make_planner, name):
    sim = Sim({name: -0.01})
    p = make_planner(make_def(name=f"o-{name}", mode="tune", plugins={name: {}}, trials=16, sampler="tpe"), sim)
    assert p.run().stopped == "done"
    statuses = [t.user_attrs["status"] for t in p.study.get_trials()]
    assert statuses == ["complete"] * 16
    cls = p.registry.get(name)
    for job in sim.calls:
        if name in job.plugins:
            cls(**job.plugins[name])  # every proposal is one the plugin accepts
            for lower, higher in cls.ordered_params():
                assert job.plugins[name][lower] <= job.plugins[name][higher]


def test_a_plugin_rejecting_a_sampled_combination_refuses_that_trial_and_the_sampler_is_told(
        make_planner, misbehaving):
    d = make_def(mode="tune", plugins={"picky": {}}, trials=14, sampler="random", plugin_path=[misbehaving])
    sim = Sim()
    p = make_planner(d, sim)
    assert p.run().stopped == "done"
    trials = p.study.get_trials()
    refused = [t for t in trials if t.user_attrs["status"] == "refused"]
    assert refused and len(trials) == 14
    for t in refused:
        assert "exceeds b=" in t.user_attrs["reason"] and t.user_attrs["failure"] == "refused"
        assert t.state == S.PRUNED and t.constraints == {"refused": 1.0}
        assert t.params["picky.a"] > t.params["picky.b"]
    assert all(j.plugins.get("picky", {"a": 0, "b": 1})["a"] <= j.plugins.get("picky", {"a": 0, "b": 1})["b"]
               for j in sim.calls)


def test_golfplan_study_of_thermal_vent_finishes(tmp_path, sim_file):
    out = run(["study", "--plugins", "thermal_vent,tidal", "--trials", "8", "--profile", "cpu", "--runner",
               f"{sim_file}:run", "--checks", "static", "--storage", f"sqlite:///{tmp_path / 'v.db'}",
               "--no-report"], tmp_path)
    assert out.returncode == 0, out.stderr
    assert "boost_max 3.0 [1.0, 10.0] >= boost_min" in out.stdout and "[8/8]" in out.stdout


# ---- secrets ----------------------------------------------------------------------------------------


def test_mask_url():
    from golfplan.planner.storage import mask_url, scrub

    assert mask_url("postgresql+psycopg2://u:SECRET@host:5432/db") == "postgresql+psycopg2://u:***@host:5432/db"
    assert mask_url("postgresql://u@host/db") == "postgresql://u@host/db"
    assert mask_url("mysql://u:p%40ss@h/db?password=x&ssl=1") == "mysql://u:***@h/db?password=***&ssl=1"
    assert mask_url("cannot open postgresql://a:b@h/d: refused") == "cannot open postgresql://a:***@h/d: refused"
    assert mask_url("sqlite:///golfplan.db") == "sqlite:///golfplan.db"
    assert scrub("password authentication failed: SECRET", "postgresql://u:SECRET@h/d") == \
        "password authentication failed: ***"


def test_a_storage_password_is_never_printed(tmp_path):
    url = "postgresql://golfer:SECRET@127.0.0.1:1/golf"
    out = golfplan_in_process("study", "--plugins", "tidal", "--trials", "1", "--profile", "cpu", "--checks", "none",
                              "--storage", url, cwd=tmp_path)
    assert out.returncode == 2
    assert "SECRET" not in out.stdout + out.stderr and "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot open storage postgresql://golfer:***@127.0.0.1:1/golf")
    for cmd in (["report", "x", "--storage", url], ["worker", "--study", "x", "--storage", url, "--wait", "0"]):
        out = golfplan_in_process(*cmd, cwd=tmp_path)
        assert out.returncode == 2 and "SECRET" not in out.stdout + out.stderr and "***" in out.stderr


def test_a_storage_password_is_not_stored_shown_or_reported(tmp_path, sim_file):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    f = tmp_path / "s.yaml"
    f.write_text("mode: ablate\nplugins: [tidal]\nstorage: postgresql://golfer:SECRET@db-host/golf\n")
    out = run(["study", str(f), "--profile", "cpu", "--runner", f"{sim_file}:run", "--checks", "none",
               "--storage", storage, "--report-dir", str(tmp_path / "rep")], tmp_path)
    assert out.returncode == 0, out.stderr
    assert "SECRET" not in out.stdout + out.stderr
    study = optuna.load_study(study_name="s", storage=storage)
    stored = json.dumps([study.user_attrs] + [t.user_attrs for t in study.get_trials()], default=str)
    assert "SECRET" not in stored
    for p in (tmp_path / "rep").iterdir():
        if p.suffix in (".md", ".csv", ".yaml"):
            assert "SECRET" not in p.read_text()


def test_the_planner_api_stores_a_masked_url(tmp_path):
    from golfplan.planner.storage import DEF_ATTR

    d = make_def("m", mode="ablate", plugins={"tidal": {}}, storage="postgresql://u:SECRET@h/db")
    p = new_planner(d, f"sqlite:///{tmp_path / 'm.db'}", runner=Sim())
    p.open()
    assert p.study.user_attrs[DEF_ATTR]["storage"] == "postgresql://u:***@h/db"
    q = new_planner(make_def("n", mode="ablate", plugins={"tidal": {}}), f"sqlite:///{tmp_path / 'm.db'}",
                    runner=Sim())
    assert q.storage_url == f"sqlite:///{tmp_path / 'm.db'}"


# ---- refused inputs: one line, non-zero, no traceback ----------------------------------------------


@pytest.mark.parametrize("args,message", [
    (["--trial-seconds", "0"], "--trial-seconds: must be a positive number"),
    (["--trial-timeout", "-5"], "--trial-timeout: must be a positive number"),
    (["--plugins", "thermal_vent", "--set", "thermal_vent.boost_min=3.17", "--set", "thermal_vent.boost_max=1.9"],
     "boost_min=3.17 must not exceed boost_max=1.9"),
])
def test_a_refused_input_exits_non_zero_with_one_line(tmp_path, args, message):
    if "--plugins" not in args:
        args = ["--plugins", "tidal", *args]
    out = golfplan_in_process("study", *args, "--profile", "cpu", "--storage", f"sqlite:///{tmp_path / 'x.db'}",
                              cwd=tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], out.stderr


def test_a_study_file_with_a_zero_cap_is_refused(tmp_path):
    f = tmp_path / "z.yaml"
    f.write_text("mode: ablate\nplugins: [tidal]\ntrial_seconds: 0\n")
    out = golfplan_in_process("study", str(f), "--storage", f"sqlite:///{tmp_path / 'x.db'}", cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.strip().count("\n") == 0
    assert "'trial_seconds' must be a positive number of seconds" in out.stderr


# ---- threads: each trial gets its share of the cores -------------------------------------------------


def test_the_host_slot_counts_live_trials_and_prunes_dead_ones(tmp_path):
    from golfplan.planner.procs import HostSlot, proc_start

    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        (tmp_path / f"{other.pid}.{proc_start(other.pid)}").touch()
        (tmp_path / f"{dead.pid}.1").touch()
        with HostSlot(tmp_path) as n:
            assert n == 2  # this planner and the other live one
            assert sorted(p.name.split(".")[0] for p in tmp_path.iterdir()) == sorted([str(os.getpid()),
                                                                                       str(other.pid)])
        assert [p.name.split(".")[0] for p in tmp_path.iterdir()] == [str(other.pid)]
    finally:
        other.kill()


def test_a_trial_is_told_how_many_trials_share_the_host(tmp_path):
    from golfplan.planner.runner import Job, SubprocessRunner

    exe = tmp_path / "fake_python"
    exe.write_text(f"#!{sys.executable}\nimport os, sys\na = sys.argv\n"
                   "d = os.path.join(a[a.index('--out') + 1], a[a.index('--name') + 1])\n"
                   "open(os.path.join(d, 'concurrent'), 'w').write(os.environ['GOLFPLAN_CONCURRENT'])\n")
    exe.chmod(0o755)
    job = Job("s", 0, "x", {}, {"config": {}}, 1, str(tmp_path / "r"), timeout_s=30)
    out = SubprocessRunner(python=str(exe))(job)
    assert out.concurrent >= 1 and (tmp_path / "r" / "concurrent").read_text() == str(out.concurrent)


# ---- step-capped reports show speed ---------------------------------------------------------------------


def speedy(job):
    out = Sim({"parallel": -0.01})(job)
    out["ms_per_step"] = 8.0 if "parallel" in job.plugins else 10.0
    out["capped_by"] = "steps"
    return out


def test_a_step_capped_report_shows_the_speed_ratio_beside_the_bpb(make_planner, tmp_path):
    p = make_planner(make_def(mode="ablate", plugins={"parallel": {}, "tidal": {}}), speedy)
    p.run()
    md = write_report(p, tmp_path / "rep", plots=False)["text"]
    assert "| BPB | ms/step vs baseline | Steps |" in md and md.count("speed benefit is not counted") == 1
    row = next(line for line in md.splitlines() if "| parallel |" in line)
    assert "| x0.80 |" in row
    assert any("parallel: val_bpb" in line and "(ms/step x0.80 baseline)" in line for line in make_planner.lines)


def test_a_wallclock_capped_report_keeps_the_seeds_table(make_planner, tmp_path):
    def capped(job):
        return dict(speedy(job), capped_by="wallclock")

    p = make_planner(make_def(mode="ablate", plugins={"parallel": {}}, trial_seconds=5.0), capped)
    p.run()
    md = write_report(p, tmp_path / "rep", plots=False)["text"]
    assert "| # | Experiment | Description | BPB | Steps | Delta | Status |" in md
    assert "speed benefit" not in md


# ---- issue 10 -------------------------------------------------------------------------------------------


def test_always_plugins_run_their_defaults_as_the_baseline_and_other_trials_are_not_called_baseline(
        make_planner):
    sim = Sim({"tidal": -0.01})
    p = make_planner(make_def(mode="tune", always={"tidal": {}, "thermal_vent": {}}, trials=5), sim)
    p.run()
    trials = p.study.get_trials()
    defaults = {"tidal": {"warmup_frac": 0.382}, "thermal_vent": {"layers": 2, "boost_min": 2.0, "boost_max": 3.0}}
    assert trials[0].user_attrs["label"] == "baseline" and trials[0].user_attrs["plugins"] == defaults
    assert sim.calls[0].plugins == defaults
    from golfplan.planner.storage import BASELINE_ATTR

    assert trials[0].user_attrs["key"] == p.study.user_attrs[BASELINE_ATTR]
    assert [t.user_attrs["label"] for t in trials[1:]] == ["tuned"] * 4
    assert all(t.user_attrs["key"] != trials[0].user_attrs["key"] for t in trials[1:])


def test_checks_none_still_filters_invalid_param_values(make_planner):
    p = make_planner(make_def(mode="tune", plugins={"gqa": {}, "unet": {}}, trials=2, checks="none"), Sim())
    assert p.space.domains == {"gqa": {"kv_heads": [1, 2, 4]}, "unet": {"encoder_layers": [0, 1, 2]}}
    p.run()
    for t in p.study.get_trials():
        plugins = t.user_attrs["plugins"]
        assert plugins.get("gqa", {"kv_heads": 1})["kv_heads"] in (1, 2, 4)


def test_the_stack_studys_best_is_the_final_stack_even_when_a_dropped_candidate_measured_lower(
        make_planner, tmp_path):
    from golfplan.planner import waves
    from golfplan.planner.report import best_row, chosen_key

    # gqa alone looks like a winner; on top of parallel it adds -0.0008: lower, but within the noise
    sim = Sim({"parallel": -0.05, "gqa": -0.02}, interactions={frozenset({"parallel", "gqa"}): 0.0192}, noise=0.0005)
    src = make_planner(make_def("abl", mode="ablate", plugins={"parallel": {}, "gqa": {}}, repeats=3), sim)
    src.run()
    planner = new_planner(make_def("abl.stack", mode="experiments", repeats=3), src.storage, runner=sim,
                          out_dir=tmp_path / "runs")
    planner.open(enqueue=False)
    planner.set_baseline({})
    result = waves.stack(src, planner, say=lambda m: None)
    assert set(result.plugins) == {"parallel"} and [s.kept for s in result.steps] == [True, False]
    rows, _ = collect(planner.study)
    dropped = next(r for r in rows if set(r.plugins) == {"parallel", "gqa"})
    final = next(r for r in rows if set(r.plugins) == {"parallel"})
    assert dropped.summary.mean < final.summary.mean  # Optuna's best trial is the dropped candidate ...
    assert planner.best()[0].user_attrs["key"] == dropped.key
    assert best_row(rows, chosen_key(planner.study)) is final  # ... the study's reported best is the stack
    files = write_report(planner, tmp_path / "rep", plots=False)
    assert files["best"].key == final.key and "Chosen configuration (the final stack): parallel" in files["text"]


def test_the_first_estimate_of_a_step_capped_study_does_not_block_a_small_budget(make_planner):
    p = make_planner(make_def(mode="ablate", plugins={"tidal": {}}, checks="static", budget_hours=0.01), Sim())
    assert p.estimate_next_s() == 10.0  # no run measured and none to guess from: only a check
    assert p.run().stopped == "done"
    capped = make_planner(make_def("w", mode="ablate", plugins={"tidal": {}}, trial_seconds=10.0), Sim())
    assert capped.estimate_next_s() == pytest.approx(10.0 * 1.3 + 30.0)


@pytest.mark.parametrize("strategy, said, studies", [
    ("stack-tune", "chosen: ", {"h.plan"}),
    ("waves", "final stack: ", {"h.ablate", "h.stack", "h.tune"}),
])
def test_plan_with_half_an_hour_runs_every_phase(tmp_path, sim_file, strategy, said, studies):
    out = run(["plan", "--strategy", strategy, "--plugins", "tidal,parallel", "--repeats", "2", "--profile", "cpu",
               "--budget-hours", "0.5", "--runner", f"{sim_file}:run", "--checks", "none", "--tune-trials", "3",
               "--study", "h", "--storage", f"sqlite:///{tmp_path / 'h.db'}", "--no-report", "--quiet"], tmp_path)
    assert out.returncode == 0, out.stderr
    assert "budget ran out" not in out.stdout
    line = next((x for x in out.stdout.splitlines() if x.startswith(said)), "")
    assert "parallel" in line and "tidal" in line, out.stdout  # the stack, whatever values it tuned
    names = {s.study_name for s in optuna.get_all_study_summaries(f"sqlite:///{tmp_path / 'h.db'}")}
    assert names == studies
