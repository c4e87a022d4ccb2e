"""The planner's commands end to end: real tiny training, simulated plans, reports, YAML studies."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml

from tests.conftest import golfplan_in_process

from .conftest import REPO, TINY_SETS, log_events

S = optuna.trial.TrialState


def run(args, cwd, timeout=300, **env):
    e = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    e.update({k: str(v) for k, v in env.items()})
    return subprocess.run([sys.executable, "-m", "golfplan", *args], cwd=cwd, env=e, capture_output=True, text=True,
                          timeout=timeout)


def tiny_args():
    out = []
    for s in TINY_SETS:
        out += ["--set", s]
    return out


def test_help_does_not_import_optuna():
    code = ("import sys, golfplan.cli as c; p = c.build_parser(); "
            "print('optuna' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.stdout.split()[0] == "False", out.stderr


def test_a_real_study_of_a_few_trials_completes_with_its_report(tmp_path):
    out = run(["study", "--plugins", "tidal,gqa", "--trials", "3", "--profile", "cpu", "--trial-seconds", "2",
               "--smoke-steps", "20", "--storage", f"sqlite:///{tmp_path / 'g.db'}", "--study", "real",
               "--report-dir", str(tmp_path / "rep"), *tiny_args()], tmp_path)
    assert out.returncode == 0, out.stderr + out.stdout
    assert "[3/3]" in out.stdout, out.stdout
    # a 2 s cap: the speed column appears when some run reached its step count first (a fast machine)
    assert re.search(r"\| # \| Experiment \| Description \| BPB \|( ms/step vs baseline \|)? Steps \| Delta \| Status \|",
                     out.stdout), out.stdout
    trials = optuna.load_study(study_name="real", storage=f"sqlite:///{tmp_path / 'g.db'}").get_trials()
    assert len(trials) == 3 and all(t.state in (S.COMPLETE, S.PRUNED) for t in trials)
    md = (tmp_path / "rep" / "real.md").read_text()
    for t in trials:
        assert f"| {t.number} | {t.user_attrs['label']} |" in md
        run_ = t.user_attrs["runs"][0]
        assert Path(run_["run_dir"], "train.log").exists()
        if t.user_attrs["status"] == "complete":
            assert run_["steps"] > 0 and run_["artifact_bytes"] > 0 and run_["ms_per_step"] > 0
    base = trials[0]
    assert base.user_attrs["label"] == "baseline" and not base.user_attrs["check"]["cached"]
    # the check ran inside the baseline's own run (no process of its own), and later runs skip it
    assert base.user_attrs["check"]["where"] == base.user_attrs["runs"][0]["run_dir"]
    assert base.user_attrs["check"]["ok"] and "trace" in base.user_attrs["check"]["checks"]
    assert base.user_attrs["runs"][0]["threads"] >= 1 and base.user_attrs["runs"][0]["concurrent"] >= 1
    if (tmp_path / "rep" / "best.yaml").exists():  # the best config runs as it is
        data = yaml.safe_load((tmp_path / "rep" / "best.yaml").read_text())
        assert data["profile"] == "cpu" and data["max_wallclock_seconds"] == 2.0


@pytest.mark.xdist_group("alone")  # a kill -9 and a wait on its child: one at a time under pytest-xdist
def test_kill_9_of_the_planner_takes_its_training_run_down_and_the_rerun_finishes(tmp_path):
    storage = f"sqlite:///{tmp_path / 'k.db'}"
    args = ["study", "--plugins", "tidal", "--trials", "2", "--profile", "cpu", "--trial-seconds", "4",
            "--checks", "none", "--storage", storage, "--study", "k", "--no-report", *tiny_args()]
    e = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "golfplan", *args], cwd=tmp_path, env=e, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    logs = lambda: list((tmp_path / "runs" / "k").glob("*/train.log"))  # noqa: E731
    t0 = time.time()
    while not (logs() and "step:" in logs()[0].read_text()) and time.time() - t0 < 90:
        time.sleep(0.2)
    trial = optuna.load_study(study_name="k", storage=storage).get_trials()[0]
    child = trial.user_attrs["owner"]["child"]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    t0 = time.time()
    while time.time() - t0 < 10 and not _gone(child):
        time.sleep(0.1)
    assert _gone(child)  # the training process died with its planner: no orphan keeps training
    out = run(args, tmp_path)
    assert out.returncode == 0, out.stderr
    trials = optuna.load_study(study_name="k", storage=storage).get_trials()
    assert trials[0].user_attrs["status"] == "interrupted"
    assert len([t for t in trials if t.state != S.FAIL]) == 2


def _gone(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_plan_chooses_a_stack_and_says_why_with_a_simulated_runner(tmp_path, sim_file):
    storage = f"sqlite:///{tmp_path / 'q.db'}"
    args = ["plan", "--plugins", "tidal,parallel,gqa,z_loss", "--profile", "cpu", "--runner", f"{sim_file}:run",
            "--checks", "none", "--runs", "30", "--study", "q", "--storage", storage]
    out = run(args, tmp_path, SIM_LOG=tmp_path / "sim.log")
    assert out.returncode == 0, out.stderr + out.stdout
    text = out.stdout
    chosen = next(line for line in text.splitlines() if line.startswith("chosen: "))
    assert all(p in chosen for p in ("parallel", "tidal", "gqa")) and "z_loss" not in chosen
    for name in ("parallel", "tidal", "gqa"):  # each stacked technique with its measured effect and p
        line = next(x for x in text.splitlines() if x.startswith(f"  + {name}: "))
        assert "BPB ±" in line and "p = " in line, line
    runs = len([e for e in log_events(tmp_path / "sim.log") if e[0] == "end"])
    assert runs <= 30 and f"{runs} runs" in text
    assert {s.study_name for s in optuna.get_all_study_summaries(storage)} == {"q.plan"}
    # rerunning resumes: nothing runs again
    again = run(args, tmp_path, SIM_LOG=tmp_path / "sim.log")
    assert again.returncode == 0, again.stderr
    assert len([e for e in log_events(tmp_path / "sim.log") if e[0] == "end"]) == runs


def test_plan_waves_runs_ablate_stack_and_tune_with_a_simulated_runner(tmp_path, sim_file):
    out = run(["plan", "--strategy", "waves", "--plugins", "tidal,parallel,gqa,z_loss", "--repeats", "3",
               "--profile", "cpu",
               "--runner", f"{sim_file}:run", "--checks", "none", "--tune-trials", "5", "--study", "p",
               "--storage", f"sqlite:///{tmp_path / 'p.db'}"], tmp_path, SIM_LOG=tmp_path / "sim.log")
    assert out.returncode == 0, out.stderr + out.stdout
    text = out.stdout
    assert "| 2 | parallel |" in text and "Winner" in text and "Worse" in text  # the ablation's table
    assert "stacking, best effect first: parallel" in text
    assert "final stack: parallel + tidal + gqa" in text
    storage = f"sqlite:///{tmp_path / 'p.db'}"
    names = {s.study_name for s in optuna.get_all_study_summaries(storage)}
    assert names == {"p.ablate", "p.stack", "p.tune"}
    tune = optuna.load_study(study_name="p.tune", storage=storage).get_trials()
    assert len(tune) == 5 and all(set(t.user_attrs["plugins"]) == {"parallel", "tidal", "gqa"} for t in tune)
    for sub in ("p.ablate", "p.stack", "p.tune"):
        assert (tmp_path / "reports" / sub / f"{sub}.md").exists()
    # rerunning the plan resumes it: nothing runs again
    n = len(log_events(tmp_path / "sim.log"))
    again = run(["plan", "--strategy", "waves", "--plugins", "tidal,parallel,gqa,z_loss", "--repeats", "3",
                 "--profile", "cpu",
                 "--runner", f"{sim_file}:run", "--checks", "none", "--tune-trials", "5", "--study", "p",
                 "--storage", storage], tmp_path, SIM_LOG=tmp_path / "sim.log")
    assert again.returncode == 0, again.stderr
    assert len(log_events(tmp_path / "sim.log")) == n


def test_report_command_and_usage_errors(tmp_path, sim_file):
    storage = f"sqlite:///{tmp_path / 'r.db'}"
    out = run(["ablate", "--plugins", "tidal,parallel", "--repeats", "2", "--profile", "cpu", "--runner",
               f"{sim_file}:run", "--checks", "none", "--storage", storage, "--study", "a", "--no-report",
               "--quiet"], tmp_path)
    assert out.returncode == 0, out.stderr
    rep = run(["report", "a", "--storage", storage, "--out", str(tmp_path / "rep")], tmp_path)
    assert rep.returncode == 0, rep.stderr
    assert "| 1 | tidal |" in rep.stdout and "(n=2)" in rep.stdout
    assert {p.name for p in (tmp_path / "rep").iterdir()} >= {"a.md", "a.csv", "best.yaml", "history.png",
                                                              "bpb_vs_steps.png", "distribution.png"}
    # the usage errors, in this process (tests.conftest.golfplan_in_process)
    bad = golfplan_in_process("study", "--plugins", "tidla", "--storage", storage, cwd=tmp_path)
    assert bad.returncode == 2 and "did you mean 'tidal'" in bad.stderr
    missing = golfplan_in_process("report", "nope", "--storage", storage, cwd=tmp_path)
    assert missing.returncode == 2 and "no study 'nope'" in missing.stderr
    changed = golfplan_in_process("ablate", "--plugins", "tidal,parallel", "--repeats", "3", "--profile", "cpu",
                                  "--runner", f"{sim_file}:run", "--checks", "none", "--storage", storage,
                                  "--study", "a", cwd=tmp_path)
    assert changed.returncode == 2 and "different repeats" in changed.stderr
