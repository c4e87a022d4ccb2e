"""The subprocess runner's classification of how a run ended, with a stand-in trial process.

The stand-in replaces ``python -m golfplan run`` (it receives the same arguments) and behaves as
``FAKE_MODE`` says: the planner side (time limit, process-group kill, log following, reading
result.json and stderr) is what is under test here; real runs are in test_cli.py.
"""

from __future__ import annotations

import sys
import time

import pytest

from golfplan.planner.runner import Job, RunOutcome, SubprocessRunner, call_runner, failure_kind, load_runner

FAKE = r'''
import json, os, signal, subprocess, sys, time
args = sys.argv[1:]
run_dir = os.path.join(args[args.index("--out") + 1], args[args.index("--name") + 1])
os.makedirs(run_dir, exist_ok=True)
mode = os.environ["FAKE_MODE"]
def result(**kw):
    base = {"status": "complete", "reason": "", "val_bpb": 2.4, "val_loss": 1.7, "steps": 12, "ms_per_step": 50.0,
            "artifact_bytes": 1234, "train_time_s": 0.6, "val_history": []}
    base.update(kw)
    open(os.path.join(run_dir, "result.json"), "w").write(json.dumps(base))
if mode == "complete":
    result(); sys.exit(0)
if mode == "nan":
    result(status="failed", reason="loss became NaN/inf by step 3", val_bpb=None); sys.exit(1)
if mode == "nolearn":
    result(status="failed", reason="train loss did not fall below its starting value (first 6.9, last 6.9)",
           val_bpb=None); sys.exit(1)
if mode == "crash":
    sys.stderr.write("Traceback (most recent call last):\n  File x\nRuntimeError: boom in block 3\n"); sys.exit(1)
if mode == "crash_after_json":
    result(val_bpb=None)
    sys.stderr.write("Traceback (most recent call last):\nValueError: bad export\n"); sys.exit(1)
if mode == "oom":
    sys.stderr.write("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\n"); sys.exit(1)
if mode == "sigkill":
    os.kill(os.getpid(), signal.SIGKILL)
if mode == "hang":
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    open(os.path.join(run_dir, "grandchild.pid"), "w").write(str(child.pid))
    time.sleep(120)
if mode == "prune":
    with open(os.path.join(run_dir, "train.log"), "w") as f:
        f.write("step:0/100 val_loss:6.9 val_bpb:3.9 train_time:0ms\n")
        f.write("step:10/100 val_loss:6.0 val_bpb:3.3 train_time:100ms\n"); f.flush()
        time.sleep(1.0)
        f.write("step:20/100 val_loss:5.5 val_bpb:3.1 train_time:200ms\n"); f.flush()
    time.sleep(120)
if mode == "final":
    with open(os.path.join(run_dir, "train.log"), "w") as f:
        f.write("step:40/400 val_loss:4.8 val_bpb:2.63 train_time:20433ms\n")
        f.write("stopping_early: wallclock_cap train_time:20433ms step:40/400\n"); f.flush()
    time.sleep(1.5)
    result(); sys.exit(0)
'''


@pytest.fixture
def fake(tmp_path):
    exe = tmp_path / "fake_python"
    exe.write_text(f"#!{sys.executable}\n" + FAKE)
    exe.chmod(0o755)
    return str(exe)


def job(tmp_path, **kw):
    kw.setdefault("timeout_s", 30)
    return Job(study="s", trial=0, label="x", plugins={}, spec={"profile": "cpu", "plugins": {}}, seed=1,
               run_dir=str(tmp_path / "runs" / "s" / "0000-x-s1"), **kw)


@pytest.mark.parametrize("mode,status,failure,reason", [
    ("complete", "complete", "", ""),
    ("nan", "failed", "nan", "NaN"),
    ("nolearn", "failed", "no_learning", "did not fall"),
    ("crash", "failed", "crash", "RuntimeError: boom in block 3"),
    ("crash_after_json", "failed", "crash", "ValueError: bad export"),
    ("oom", "failed", "oom", "CUDA out of memory"),
    ("sigkill", "failed", "oom", "SIGKILL"),
])
def test_how_a_run_ended(fake, tmp_path, monkeypatch, mode, status, failure, reason):
    monkeypatch.setenv("FAKE_MODE", mode)
    out = SubprocessRunner(python=fake)(job(tmp_path))
    assert (out.status, out.failure) == (status, failure)
    assert reason in out.reason
    assert (out.val_bpb == 2.4) == (status == "complete")
    trial_yaml = tmp_path / "runs" / "s" / "0000-x-s1" / "trial.yaml"
    assert trial_yaml.exists()  # the config the run was given


def test_a_hang_is_killed_at_the_hard_limit_with_its_whole_process_group(fake, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_MODE", "hang")
    t0 = time.time()
    out = SubprocessRunner(python=fake)(job(tmp_path, timeout_s=1.5))
    assert out.status == "failed" and out.failure == "timeout" and "hard limit" in out.reason
    assert time.time() - t0 < 12
    pid = int((tmp_path / "runs" / "s" / "0000-x-s1" / "grandchild.pid").read_text())
    time.sleep(0.2)
    assert gone(pid)


def gone(pid: int) -> bool:
    """No such process, or a zombie waiting for a reaper (it no longer runs)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_the_pruner_stops_a_run_at_a_periodic_validation(fake, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_MODE", "prune")
    seen = []

    def report(step, bpb):
        seen.append((step, bpb))
        return step >= 20

    out = SubprocessRunner(python=fake, poll_s=0.05)(job(tmp_path, report=report))
    assert seen == [(10, 3.3), (20, 3.1)]  # step 0 (the untrained eval) is not reported
    assert out.status == "pruned" and "step 20" in out.reason and out.val_bpb is None


def test_the_final_validation_is_not_a_periodic_one_and_is_never_pruned(fake, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_MODE", "final")
    seen = []
    out = SubprocessRunner(python=fake, poll_s=0.05)(job(tmp_path, report=lambda s, b: seen.append(s) or True))
    assert seen == [] and out.status == "complete"


def test_a_custom_runner_result_is_normalised():
    out = call_runner(lambda j: {"status": "complete", "val_bpb": float("nan")}, Job("s", 0, "x", {}, {}, 7, "d"))
    assert out.status == "failed" and out.failure == "nan" and out.seed == 7
    out = call_runner(lambda j: {"status": "failed", "reason": "CUDA out of memory"}, Job("s", 0, "x", {}, {}, 7, "d"))
    assert out.failure == "oom"
    assert failure_kind("val_bpb 3.2 is no better than an untrained model's 3.1") == "no_learning"
    with pytest.raises(Exception, match="status"):
        RunOutcome.from_mapping({"status": "great"})


def test_load_runner_from_a_file_or_a_module(tmp_path):
    f = tmp_path / "myrunner.py"
    f.write_text("def run(job):\n    return {'status': 'complete', 'val_bpb': 1.0}\n")
    assert load_runner(f"{f}:run")(None)["val_bpb"] == 1.0
    assert load_runner("golfplan.planner.runner:failure_kind")("nan") == "nan"
    with pytest.raises(Exception, match="module:function"):
        load_runner("nocolon")
    with pytest.raises(Exception, match="not a callable"):
        load_runner(f"{f}:missing")
