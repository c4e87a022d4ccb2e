"""Resume after a real kill -9 of the planner, and several workers on one study."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter

import optuna
import pytest

from .conftest import REPO, log_events

S = optuna.trial.TrialState
PG_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
# a kill -9 and several planner processes: one at a time under pytest-xdist (tests/conftest.py)
pytestmark = pytest.mark.xdist_group("alone")


def planner_cmd(kind, *args):
    return [sys.executable, "-m", "golfplan", kind, *args]


def env_with(**kw):
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.update({k: str(v) for k, v in kw.items()})
    return env


def wait_for(cond, timeout=60.0, poll=0.1):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if cond():
            return True
        time.sleep(poll)
    return False


def study_cmd(storage, name, sim_file, trials, *extra):
    return planner_cmd("study", "--plugins", "tidal,parallel,gqa", "--trials", str(trials), "--profile", "cpu",
                       "--runner", f"{sim_file}:run", "--checks", "none", "--storage", storage, "--study", name,
                       "--no-report", *extra)


def test_resume_after_kill_9_loses_no_finished_trial_and_duplicates_none(tmp_path, sim_file):
    storage, log = f"sqlite:///{tmp_path / 'r.db'}", tmp_path / "sim.log"
    cmd = study_cmd(storage, "r", sim_file, 6, "--repeats", "2")
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env_with(SIM_SLEEP=0.6, SIM_LOG=log), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def mid_trial():
        ev = log_events(log)
        ends = [e for e in ev if e[0] == "end"]
        starts = [e for e in ev if e[0] == "start"]
        return len(ends) >= 3 and len(starts) > len(ends)

    assert wait_for(mid_trial), proc.stderr.read().decode() if proc.poll() is not None else "no progress"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = optuna.load_study(study_name="r", storage=storage).get_trials()
    cut = [t for t in before if t.state == S.RUNNING]
    assert len(cut) == 1
    finished_before = {t.number: t.value for t in before if t.state == S.COMPLETE}
    runs_of_cut = list(cut[0].user_attrs.get("runs", []))

    out = subprocess.run(cmd, cwd=tmp_path, env=env_with(SIM_SLEEP=0.05, SIM_LOG=log), capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert f"trial #{cut[0].number} was cut off" in out.stdout
    after = optuna.load_study(study_name="r", storage=storage).get_trials()
    done = [t for t in after if t.state == S.COMPLETE]
    assert len(done) == 6  # --trials 6: the interrupted one does not count
    for number, value in finished_before.items():
        assert after[number].value == value  # kept, not rerun
    old = after[cut[0].number]
    assert old.state == S.FAIL and old.user_attrs["status"] == "interrupted"
    retry = [t for t in after if t.user_attrs.get("retry_of") == old.number]
    assert len(retry) == 1 and retry[0].user_attrs["key"] == old.user_attrs["key"]
    assert retry[0].user_attrs["runs"][: len(runs_of_cut)] == runs_of_cut  # its finished seed was kept
    ends = Counter((e[3], e[4]) for e in log_events(log) if e[0] == "end")
    assert max(ends.values()) == 1  # no (trial, seed) ran to the end twice
    for t in done:
        for r in t.user_attrs["runs"]:
            assert (t.number, r["seed"]) in ends or (old.number, r["seed"]) in ends


def test_two_workers_on_one_journal_file_never_run_the_same_trial_twice(tmp_path, sim_file):
    storage, log = f"journal:{tmp_path / 'w.journal'}", tmp_path / "sim.log"
    # runs long enough (16 x 1 s) for the second worker to start and join on a loaded machine
    env = env_with(SIM_SLEEP=1.0, SIM_LOG=log)
    first = subprocess.Popen(planner_cmd("ablate", "--plugins", "tidal,parallel,gqa,z_loss,cosine,silu2,untied",
                                         "--repeats", "2", "--profile", "cpu", "--runner", f"{sim_file}:run",
                                         "--checks", "none", "--storage", storage, "--study", "w", "--no-report",
                                         "--quiet"),
                             cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    second = subprocess.Popen(planner_cmd("worker", "--study", "w", "--storage", storage,
                                          "--runner", f"{sim_file}:run", "--wait", "60"),
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out1, err1 = first.communicate(timeout=180)
    out2, err2 = second.communicate(timeout=180)
    assert first.returncode == 0, err1
    assert second.returncode == 0, err2
    check_no_duplicates(storage, "w", log, expected_trials=8, expected_runs=16)


@pytest.mark.postgres
def test_two_workers_on_one_postgres_study_never_run_the_same_trial_twice(tmp_path, sim_file):
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=2).close()
    except OSError:
        pytest.skip("no PostgreSQL server on 127.0.0.1:5432")
    name, log = f"pg-{uuid.uuid4().hex[:10]}", tmp_path / "sim.log"
    env = env_with(SIM_SLEEP=0.3, SIM_LOG=log)
    try:
        first = subprocess.Popen(study_cmd(PG_URL, name, sim_file, 12, "--quiet"), cwd=tmp_path, env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        second = subprocess.Popen(planner_cmd("worker", "--study", name, "--storage", PG_URL,
                                              "--runner", f"{sim_file}:run", "--wait", "60"),
                                  cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out1, err1 = first.communicate(timeout=180)
        out2, err2 = second.communicate(timeout=180)
        assert first.returncode == 0, err1
        assert second.returncode == 0, err2
        check_no_duplicates(PG_URL, name, log, expected_trials=None, expected_runs=None, at_least=12)
    finally:
        try:
            optuna.delete_study(study_name=name, storage=PG_URL)
        except Exception:  # noqa: BLE001 - the study may not exist if the planner failed early
            pass


def check_no_duplicates(storage, name, log, expected_trials, expected_runs, at_least=None):
    from golfplan.planner.storage import open_storage

    trials = optuna.load_study(study_name=name, storage=open_storage(storage)).get_trials()
    done = [t for t in trials if t.state == S.COMPLETE]
    events = [e for e in log_events(log) if e[0] == "end"]
    per_run = Counter((e[3], e[4]) for e in events)
    assert max(per_run.values()) == 1  # no trial's seed ran twice
    per_trial_pids = {}
    for e in events:
        per_trial_pids.setdefault(e[3], set()).add(e[1])
    assert all(len(p) == 1 for p in per_trial_pids.values())  # each trial ran in exactly one worker
    assert {t.number for t in done} == set(per_trial_pids)
    workers = {e[1] for e in events}
    assert len(workers) == 2  # both worked
    if expected_trials is not None:
        assert len(done) == expected_trials and len(events) == expected_runs
    if at_least is not None:
        assert len(done) >= at_least
