"""Trials side by side (``--jobs``): they overlap, none runs twice, limits hold, a CPU configuration and
seed give the same val_bpb as one at a time; sampled trials asked in lockstep batches (``batch``), so a
tune study asks the same params whatever ``jobs`` is; SQLite popped from several threads; typed records."""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter

import optuna
import pytest

from golfplan.planner.definition import Experiment, StudyError

from .conftest import TINY, Sim, make_def

S = optuna.trial.TrialState


class Overlap(Sim):
    """A runner whose runs wait at a barrier for a partner: a run that never meets one fails."""

    def __init__(self, effects=None, parties=2, **kw):
        super().__init__(effects, **kw)
        self.barrier = threading.Barrier(parties, timeout=20)
        self.spans: list[tuple[float, float]] = []
        self.lock = threading.Lock()

    def __call__(self, job):
        t0 = time.perf_counter()
        self.barrier.wait()  # raises (a crash of this run) unless another run is here at once
        out = super().__call__(job)
        with self.lock:
            self.spans.append((t0, time.perf_counter()))
        return out


def test_queued_trials_run_side_by_side_and_none_twice(make_planner):
    sim = Overlap({"tidal": -0.02})
    d = make_def(mode="experiments", experiments=[Experiment(f"E{i}", f"e{i}", plugins={"tidal": {}},
                                                             config={"seed": 100 + i}) for i in range(3)])
    p = make_planner(d, sim, jobs=2)
    res = p.run()
    trials = p.study.get_trials()
    assert res.stopped == "done" and res.ran == 4 and len(trials) == 4
    assert all(t.state == S.COMPLETE and t.user_attrs["status"] == "complete" for t in trials), \
        [t.user_attrs.get("reason") for t in trials]
    assert Counter(j.trial for j in sim.calls) == {0: 1, 1: 1, 2: 1, 3: 1}  # each queued trial ran once
    assert p.running() == 0 and p.run_stats["trials"] == 4
    # the progress lines stay whole lines, one start and one end per trial
    starts = [line for line in make_planner.lines if line.endswith("...")]
    assert sorted(line.split("/")[0] for line in starts) == ["[1", "[2", "[3", "[4"]  # each its own count
    assert len([line for line in make_planner.lines if "| best trial" in line]) == 4


def test_a_strategy_can_enqueue_candidates_and_run_them_in_one_call(make_planner):
    from golfplan.planner.configs import TrialConfig

    sim = Overlap({"tidal": -0.02, "parallel": -0.05})
    p = make_planner(make_def("s", mode="experiments", baseline=False, experiments=[]), sim, jobs=2)
    keys = [p.enqueue(TrialConfig(name, {name: {}}, phase="stack")) for name in ("tidal", "parallel")]
    assert p.run().ran == 2
    by_key = {t.user_attrs["key"]: t for t in p.study.get_trials()}
    assert set(by_key) == set(keys) and all(t.state == S.COMPLETE for t in by_key.values())
    assert p.choose({"parallel": {}}, "plan") == keys[1]
    from golfplan.planner.report import chosen_key

    assert chosen_key(p.study) == keys[1]


def test_a_tune_study_side_by_side_runs_its_count_and_stops_at_the_budget(make_planner):
    sim = Overlap({"tidal": -0.02, "parallel": -0.05})
    p = make_planner(make_def(mode="tune", plugins={"tidal": {}, "parallel": {}, "gqa": {}}, trials=6), sim, jobs=2)
    assert p.run().ran == 6 and len(p.counted()) == 6
    # a budget: trials side by side count each their own time, and no trial starts that cannot fit
    slow = Sim(sleep=0.6)
    q = make_planner(make_def("b", mode="tune", plugins={"tidal": {}, "parallel": {}}, trials=50,
                              trial_seconds=1.0), slow, jobs=2)
    q.run(max_new=2)
    q.d.budget_hours = (q.spent_s() + 2.5 * q.estimate_next_s()) / 3600.0
    res = q.run()
    assert res.stopped.startswith("budget") and 1 <= res.ran <= 3
    assert q.spent_s() <= q.d.budget_hours * 3600.0 + 0.5


class Lockstep:
    """A deterministic runner: val_bpb from the configuration (plugins and params) and the seed. With
    ``pairs``, each run waits at a barrier for a partner (so two trials really overlap) and the first of
    each pair (an even trial number) finishes last, so results reach the study out of order. Records
    each trial's start and end."""

    def __init__(self, pairs=False):
        self.barrier = threading.Barrier(2, timeout=20) if pairs else None
        self.spans: dict[int, tuple[float, float]] = {}
        self.lock = threading.Lock()

    def __call__(self, job):
        t0 = time.perf_counter()
        if self.barrier is not None:
            self.barrier.wait()
            time.sleep(0.15 if job.trial % 2 == 0 else 0.0)
        rng = random.Random(json.dumps(job.plugins, sort_keys=True) + f"/{job.seed}")
        bpb = 2.5 - 0.05 * ("parallel" in job.plugins) + rng.gauss(0.0, 0.001)
        if "tidal" in job.plugins:
            bpb += (job.plugins["tidal"]["warmup_frac"] - 0.3) ** 2 - 0.02
        if "gqa" in job.plugins:
            bpb += 0.004 * abs(job.plugins["gqa"]["kv_heads"] - 2)
        with self.lock:
            self.spans[job.trial] = (t0, time.perf_counter())
        return {"status": "complete", "val_bpb": bpb, "steps": 100, "ms_per_step": 10.0, "artifact_bytes": 1_000_000}


def tune_def(name, trials=10, **kw):
    return make_def(name, mode="tune", plugins={"tidal": {}, "parallel": {}, "gqa": {}}, trials=trials, **kw)


def path_of(p):
    """Each trial, in order: its number, params, val_bpb and seeds (what the sampled path is)."""
    return [(t.number, t.params, t.value, [r["seed"] for r in t.user_attrs["runs"]])
            for t in sorted(p.study.get_trials(), key=lambda t: t.number)]


def test_a_tune_study_asks_the_same_trials_one_at_a_time_and_side_by_side(make_planner):
    """batch 2 (the default): jobs 1 runs each batch's two trials one after the other, jobs 2 side by
    side with the second finishing first; both ask identical params and get identical values and seeds,
    trial by trial, past TPE's random start (3 trials) into its constant-liar proposals (trials 4-9). In
    memory, to stay fast; the slow real-CPU study below does the same on SQLite."""
    paths = {}
    for jobs in (1, 2):
        runner = Lockstep(pairs=jobs == 2)
        p = make_planner(tune_def(f"j{jobs}"), runner, storage=optuna.storages.InMemoryStorage(), jobs=jobs)
        assert p.run().ran == 10 and p.d.batch == 2
        paths[jobs] = path_of(p)
        assert all(t.state == S.COMPLETE for t in p.study.get_trials())
        if jobs == 2:  # a batch never starts before every trial before it has finished and been told
            spans = runner.spans
            for n in range(2, 10):  # trials 0 and 1 are the queued baseline and all-on; then batches of 2
                first = 2 + 2 * ((n - 2) // 2)
                assert spans[n][0] > max(spans[m][1] for m in range(first)), (n, spans)
            assert spans[3][1] < spans[2][1]  # within a batch, the second trial was told first
    assert paths[1] == paths[2]
    assert len({json.dumps(params, sort_keys=True) for _, params, _, _ in paths[1]}) >= 6  # a real search


def test_a_tune_study_one_trial_a_batch_retraces_itself_and_jobs_above_batch_says_so(make_planner):
    paths = []
    for i in range(2):
        p = make_planner(tune_def(f"b{i}", batch=1), Lockstep(), storage=optuna.storages.InMemoryStorage(), jobs=1)
        p.run()
        paths.append(path_of(p))
    assert paths[0] == paths[1] and len(paths[0]) == 10
    runner = Lockstep()  # jobs 2, batch 1: sampled trials one at a time, never overlapping
    p = make_planner(tune_def("b2", trials=5, batch=1), runner, storage=optuna.storages.InMemoryStorage(), jobs=2)
    assert p.run().ran == 5
    spans = sorted(v for n, v in runner.spans.items() if n >= 2)
    assert all(a[1] < b[0] for a, b in zip(spans, spans[1:]))
    assert any("--jobs 2 with --batch 1" in line and "--batch 2 uses them all" in line for line in make_planner.lines)


def test_a_trial_asked_in_a_batch_and_not_started_is_reaped_queued_again_or_dropped(make_planner):
    """A batch's second trial is RUNNING from its ask, waiting: its owner says so, it costs nothing in
    the budget, and when its planner dies it is queued again with its sampled params; a Ctrl-C leaves the
    running trial RUNNING (reaped later) and tells the waiting one FAIL as unused."""
    import subprocess
    import sys

    from golfplan.planner.liveness import owner_record

    memory = optuna.storages.InMemoryStorage()
    p = make_planner(tune_def("w", trials=6), Lockstep(), storage=memory)
    p.run(max_new=2)  # the queued baseline and all-on
    spent = p.spent_s()
    asked = [p.ask(waiting=True), p.ask(waiting=True)]  # a batch of a planner that died before running it
    time.sleep(0.3)
    assert p.spent_s() == pytest.approx(spent) and p.budget_stop() == ""
    assert all(t.user_attrs["owner"]["waiting"] for t in asked) and all(t.params for t in asked)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    for t in asked:
        t.set_user_attr("owner", owner_record(waiting=True) | {"pid": dead.pid, "start": None})
    q = make_planner(tune_def("w", trials=6), Lockstep(), storage=memory)
    assert q.run().ran == 4  # the two retries, then one batch of two
    trials = q.study.get_trials()
    for t in asked:
        old = trials[t.number]
        assert old.state == S.FAIL and old.user_attrs["status"] == "interrupted" and old.user_attrs["cost_s"] == 0
        retry = [x for x in trials if x.user_attrs.get("retry_of") == t.number]
        assert len(retry) == 1 and retry[0].params == t.params and retry[0].state == S.COMPLETE
    assert len(q.counted()) == 6

    def interrupted(job):
        if job.trial >= 2:
            raise KeyboardInterrupt
        return Lockstep()(job)

    r = make_planner(tune_def("c", trials=6), interrupted, storage=optuna.storages.InMemoryStorage())
    with pytest.raises(KeyboardInterrupt):
        r.run()
    states = {t.number: (t.state, t.user_attrs.get("status")) for t in r.study.get_trials()}
    assert states[2][0] == S.RUNNING and states[3] == (S.FAIL, "unused") and r.running() == 0


@pytest.mark.parametrize("jobs,batch", [(1, 2), (2, 4)])
def test_a_study_stopped_mid_batch_leaves_no_trial_running(make_planner, jobs, batch):
    """The budget stops a batch once its first trials (slower than the estimate) have run: the batch's
    trials asked and sampled but never started are told FAIL as unused and not counted, and no trial
    is left RUNNING."""

    class Slow(Lockstep):  # the sampled trials take three times what the queued ones did
        def __call__(self, job):
            time.sleep(1.5 if job.trial >= 2 else 0.5)
            return super().__call__(job)

    p = make_planner(tune_def(f"stop{jobs}", trials=10, batch=batch), Slow(),
                     storage=optuna.storages.InMemoryStorage(), jobs=jobs)
    p.run(max_new=2)  # the queued baseline and all-on: the estimate of a trial
    p.d.budget_hours = (p.spent_s() + (batch + 0.5) * p.estimate_next_s()) / 3600.0  # a whole batch fits
    res = p.run()
    trials = p.study.get_trials()
    assert res.stopped.startswith("budget") and res.ran == jobs and len(trials) == 2 + batch
    started = range(2, 2 + jobs)
    assert all(trials[n].state == S.COMPLETE for n in started)
    unused = [t for t in trials[2 + jobs:]]
    assert all(t.state == S.FAIL and t.user_attrs["status"] == "unused" and "budget" in t.user_attrs["reason"]
               for t in unused) and all(t.params for t in unused)  # sampled at the ask
    assert not [t.number for t in trials if t.state == S.RUNNING] and p.running() == 0
    assert len(p.counted()) == 2 + jobs


def test_two_trials_of_one_configuration_side_by_side_get_two_seeds(make_planner):
    """Seeds are reserved when a trial is asked: two experiments of one configuration running at once
    get the profile's seed and the next, as one after the other would."""
    sim = Overlap()
    d = make_def(mode="experiments", baseline=False,
                 experiments=[Experiment("A", "tidal", plugins={"tidal": {}}), Experiment("B", "tidal again",
                                                                             plugins={"tidal": {}})])
    p = make_planner(d, sim, jobs=2)
    assert p.run().ran == 2
    assert sorted(j.seed for j in sim.calls) == [1337, 1338]


def test_batch_is_part_of_a_tune_studys_identity_and_jobs_is_not(make_planner):
    memory = optuna.storages.InMemoryStorage()
    make_planner(tune_def("i", batch=2), Lockstep(), storage=memory, jobs=1)
    make_planner(tune_def("i", batch=2), Lockstep(), storage=memory, jobs=3)  # resumes
    with pytest.raises(StudyError, match="different batch"):
        make_planner(tune_def("i", batch=3), Lockstep(), storage=memory)
    ablate = make_def("a", mode="ablate", plugins={"tidal": {}})
    make_planner(ablate, Lockstep(), storage=memory)
    make_planner(make_def("a", mode="ablate", plugins={"tidal": {}}, batch=5), Lockstep(), storage=memory)  # no sampling


def test_the_cli_takes_batch_and_says_when_jobs_leave_slots_idle(tmp_path, sim_file):
    from tests.conftest import golfplan_in_process

    storage = f"sqlite:///{tmp_path / 'c.db'}"
    args = ("study", "--plugins", "tidal,parallel", "--trials", "4", "--profile", "cpu", "--runner",
            f"{sim_file}:run", "--checks", "none", "--storage", storage, "--study", "cli", "--no-report")
    out = golfplan_in_process(*args, "--jobs", "3", "--batch", "2", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "3 trials side by side, sampled 2 at a time" in out.stdout
    assert "note: --jobs 3 with --batch 2: sampled trials are asked 2 at a time, so they run on 2 of the 3 " \
           "slots; --batch 3 uses them all" in out.stdout
    from golfplan.planner.storage import load_definition, open_storage

    assert load_definition(open_storage(storage), "cli").batch == 2
    other = golfplan_in_process(*args, "--batch", "3", cwd=tmp_path)  # another sampled path: another study
    assert other.returncode != 0 and "batch" in other.stdout + other.stderr


def test_an_error_on_one_thread_stops_the_loop_and_is_raised(make_planner):
    from golfplan.core.errors import GolfplanError

    def runner(job):
        if "tidal" in job.plugins:
            raise GolfplanError("the cluster refused the job")
        time.sleep(0.2)
        return Sim()(job)

    d = make_def(mode="ablate", plugins={"tidal": {}, "parallel": {}, "gqa": {}, "z_loss": {}})
    p = make_planner(d, runner, jobs=2)
    with pytest.raises(GolfplanError, match="cluster refused"):
        p.run()
    assert p.running() == 0


def test_sqlite_pops_each_queued_trial_once_across_threads(tmp_path):
    """Python's sqlite3 reads outside a transaction: without BEGIN IMMEDIATE, 8 threads popping 60
    queued trials took some twice (7-8 of 60 measured); the storage golfplan opens never does."""
    from golfplan.planner.storage import open_storage

    study = optuna.create_study(storage=open_storage(f"sqlite:///{tmp_path / 'q.db'}"), study_name="q")
    for i in range(60):
        study.enqueue_trial({}, user_attrs={"i": i})
    got, barrier = Counter(), threading.Barrier(8)

    def work():
        barrier.wait()
        while (i := study.ask().user_attrs.get("i")) is not None:
            got[i] += 1

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == list(range(60)) and set(got.values()) == {1}


def test_jobs_and_threads_fit_the_host(monkeypatch):
    from golfplan.core.config import load_spec
    from golfplan.planner import hosts

    cpu, gpu = load_spec("cpu").config, load_spec("1xh100").config
    monkeypatch.setattr("golfplan.core.train.runtime.available_cores", lambda: 8)
    assert hosts.default_jobs(make_def(), cpu, custom_runner=False) == 8
    assert hosts.default_jobs(make_def(threads=2), cpu, custom_runner=False) == 4
    assert hosts.default_jobs(make_def(), cpu, custom_runner=True) == 1  # a simulator or a launcher: say --jobs
    assert hosts.cpu_threads(make_def(threads=3), cpu) == 3 and hosts.cpu_threads(make_def(), gpu) is None
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")
    assert hosts.default_jobs(make_def(profile="1xh100"), gpu, custom_runner=False) == 4
    assert hosts.default_jobs(make_def(profile="1xh100", nproc=2), gpu, custom_runner=False) == 2
    assert hosts.gpu_slots(2, make_def(nproc=2), gpu, custom_runner=False) == [["4", "5"], ["6", "7"]]
    assert hosts.gpu_slots(1, make_def(), gpu, custom_runner=False) == [None]  # one trial: every GPU, as before
    with pytest.raises(StudyError, match="needs 6 GPUs; this host has 4"):
        hosts.gpu_slots(3, make_def(nproc=2), gpu, custom_runner=False)


def test_a_run_gets_the_studys_threads_and_its_gpus(monkeypatch):
    from golfplan.planner import procs

    env = procs.child_env(2, threads=1, devices=["3"])
    assert env["GOLFPLAN_THREADS"] == env["OMP_NUM_THREADS"] == "1" and env["CUDA_VISIBLE_DEVICES"] == "3"
    assert env["GOLFPLAN_CONCURRENT"] == "2"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    monkeypatch.setenv("GOLFPLAN_THREADS", "4")
    plain = procs.child_env(1)  # a GPU run, one trial at a time: what the planner has, unchanged
    assert plain["CUDA_VISIBLE_DEVICES"] == "0,1" and plain["GOLFPLAN_THREADS"] == "4"


def test_records_round_trip_through_optuna_attributes():
    from golfplan.planner.records import CheckRecord, TrialRecord
    from golfplan.planner.runner import RunOutcome

    rec = TrialRecord("tidal", "d", {"tidal": {"warmup_frac": 0.3}}, {"seed": 2}, "k1", "E1", "stack", "complete",
                      runs=[RunOutcome(val_bpb=2.5, seed=1337, steps=40, ms_per_step=9.0)],
                      check=CheckRecord(ok=True, seconds=1.5, checks={"trace": 0.2}), cost_s=3.0)
    attrs = rec.to_attrs()
    assert attrs["runs"][0]["val_bpb"] == 2.5 and attrs["check"]["checks"] == {"trace": 0.2}
    back = TrialRecord.from_attrs(attrs, number=7)
    assert back.number == 7 and back.to_attrs() == attrs and back.values == [2.5]
    # a finished trial's summary: numbers only, each only where known
    assert back.summarize(base_ms=10.0) == ("val_bpb", "ms_per_step", "ms_per_step_ratio", "steps")
    assert (back.val_bpb, back.ms_per_step_ratio, back.steps) == (2.5, 0.9, 40)
    assert TrialRecord.from_attrs(back.to_attrs()).to_attrs() == back.to_attrs()
    two = TrialRecord(runs=[RunOutcome(val_bpb=2.0, steps=40, artifact_bytes=5), RunOutcome(val_bpb=3.0, steps=41),
                            RunOutcome(status="failed", failure="oom", steps=3)])
    assert two.summarize(None) == ("val_bpb", "steps", "artifact_bytes") and (two.val_bpb, two.steps) == (2.5, 40.5)
    assert TrialRecord(runs=[RunOutcome(status="failed")]).summarize(10.0) == ()
    old = TrialRecord.from_attrs({"label": "x", "runs": [{"seed": 1, "status": "failed", "extra": 1}]})
    assert old.runs[0].seed == 1 and old.runs[0].status == "failed"  # a key of another version is dropped
    assert CheckRecord.from_attr(None) is None and CheckRecord.from_attr({"ok": False}).as_cached().cached


@pytest.mark.slow  # 8 real training processes: 1-2 minutes on a busy 2-core machine
def test_a_real_cpu_study_asks_the_same_trials_and_gives_the_same_val_bpb_one_at_a_time_and_side_by_side(
        tmp_path):
    """A tune study on SQLite, as the README's main job: the queued baseline and all-on, then a batch of
    two sampled trials. Each run gets the study's threads (1), whatever --jobs is, and the batch is asked
    the same way: every trial has the same params, seed and val_bpb, to the last digit, whether it ran
    alone or beside another."""
    from .conftest import new_planner

    paths = {}
    for jobs in (1, 2):
        d = make_def(f"real{jobs}", mode="tune", plugins={"tidal": {}, "parallel": {}}, trials=4,
                     config=dict(TINY, iterations=12, warmdown_iters=4, val_max_tokens=1024))
        p = new_planner(d, f"sqlite:///{tmp_path / f'r{jobs}.db'}", out_dir=tmp_path / f"runs{jobs}", jobs=jobs)
        p.open()
        assert p.run().ran == 4
        trials = p.study.get_trials()
        assert all(t.state == S.COMPLETE for t in trials), [t.user_attrs.get("reason") for t in trials]
        runs = [t.user_attrs["runs"][0] for t in trials]
        assert {r["threads"] for r in runs} == {1}
        if jobs == 2:  # runs overlapped
            assert max(r["concurrent"] for r in runs) >= 2
        paths[jobs] = path_of(p)
    assert paths[1] == paths[2]


def test_an_interrupt_kills_the_runs_of_every_thread(tmp_path):
    """Ctrl-C reaches the main thread only: the planner sets its cancel event, and each thread's
    watch kills its child's process group and stops that thread."""
    import sys

    from golfplan.planner.runner import Job, SubprocessRunner

    from .test_runner import gone

    exe = tmp_path / "fake_python"
    exe.write_text(f"#!{sys.executable}\nimport time\ntime.sleep(60)\n")
    exe.chmod(0o755)
    cancel, pids, raised = threading.Event(), [], []
    runner = SubprocessRunner(python=str(exe), poll_s=0.05, on_start=pids.append, cancel=cancel)

    def one(i):
        try:
            runner(Job("s", i, "x", {}, {"config": {}}, 1, str(tmp_path / f"r{i}"), timeout_s=60))
        except KeyboardInterrupt:
            raised.append(i)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    t0 = time.time()
    while len(pids) < 2 and time.time() - t0 < 20:
        time.sleep(0.05)
    cancel.set()
    for t in threads:
        t.join(20)
    assert sorted(raised) == [0, 1] and len(pids) == 2 and all(gone(p) for p in pids)
