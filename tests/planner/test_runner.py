"""The subprocess runner's classification of how a run ended, with a stand-in trial process.

The stand-in replaces ``python -m golfplan run`` (it receives the same arguments) and behaves as
``FAKE_MODE`` says: the planner side (time limit, process-group kill, following events.jsonl,
reading result.json, check.json and stderr) is what is under test here; real runs are in test_cli.py.
"""

from __future__ import annotations

import json
import sys
import time

import pytest

from golfplan.planner.runner import Job, RunOutcome, SubprocessRunner, call_runner, hard_limit_s, load_runner

FAKE = r'''
import json, os, signal, subprocess, sys, time
args = sys.argv[1:]
run_dir = os.path.join(args[args.index("--out") + 1], args[args.index("--name") + 1])
os.makedirs(run_dir, exist_ok=True)
open(os.path.join(run_dir, "argv.json"), "w").write(json.dumps(args))
mode = os.environ["FAKE_MODE"]
def result(**kw):
    base = {"status": "complete", "reason": "", "failure": "", "val_bpb": 2.4, "val_loss": 1.7, "steps": 12,
            "ms_per_step": 50.0, "artifact_bytes": 1234, "train_time_s": 0.6, "threads": 2, "capped_by": "steps",
            "val_history": []}
    base.update(kw)
    open(os.path.join(run_dir, "result.json"), "w").write(json.dumps(base))
def check(ok=True, reason=""):
    if "--check-json" in args:
        report = {"ok": ok, "reason": reason, "eager": False, "estimate": {},
                  "checks": [{"name": "static", "status": "pass" if ok else "fail", "seconds": 0.1,
                              "message": reason, "plugin": None}]}
        open(args[args.index("--check-json") + 1], "w").write(json.dumps(report))
def event(f, **kw):
    f.write(json.dumps(kw) + "\n"); f.flush()
if mode == "check_crash":
    sys.stderr.write("Traceback (most recent call last):\nRuntimeError: plugin exploded in configure\n"); sys.exit(1)
if mode == "check_oom":
    sys.stderr.write("Traceback (most recent call last):\nMemoryError\n"); sys.exit(1)
if mode == "check_hang":
    time.sleep(120)
if mode == "check_fail":
    check(False, "static: plugin 'x': boost_min=3.0 must not exceed boost_max=2.0"); sys.exit(1)
if mode == "usage":
    sys.stderr.write("error: plugin 'x': boost_min=3.0 must not exceed boost_max=2.0\n"); sys.exit(2)
check()
if mode == "complete":
    result(); sys.exit(0)
if mode == "nan":
    result(status="failed", failure="nan", reason="loss became NaN/inf by step 3", val_bpb=None); sys.exit(1)
if mode == "nolearn":
    result(status="failed", failure="no_learning", reason="train loss did not fall below its starting value",
           val_bpb=None); sys.exit(1)
if mode == "timelimit":
    result(status="failed", failure="timeout", reason="timed out: still training after 300s", val_bpb=None)
    sys.exit(1)
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
    with open(os.path.join(run_dir, "events.jsonl"), "w") as f:
        event(f, event="val", step=0, val_loss=6.9, val_bpb=3.9, final=False)
        event(f, event="val", step=10, val_loss=6.0, val_bpb=3.3, final=False)
        time.sleep(1.0)
        f.write('{"event": "val", "step": 20, "val_loss": 5.5, ')  # half a line: read once it is whole
        f.flush(); time.sleep(0.5)
        f.write('"val_bpb": 3.1, "final": false}\n'); f.flush()
    time.sleep(120)
if mode == "final":
    with open(os.path.join(run_dir, "events.jsonl"), "w") as f:
        event(f, event="val", step=40, val_loss=4.8, val_bpb=2.63, final=True)
        event(f, event="stop", step=40, capped_by="wallclock")
    time.sleep(1.5)
    result(); sys.exit(0)
'''


@pytest.fixture
def fake(tmp_path):
    exe = tmp_path / "fake_python"
    exe.write_text(f"#!{sys.executable}\n" + FAKE)
    exe.chmod(0o755)
    return str(exe)


SPEC = {"resolved_spec": 1, "profile": "cpu", "plugins": {}, "plugin_path": [], "explicit": ["seed"],
        "config": {"seed": 1, "max_wallclock_seconds": 0.0, "time_limit_seconds": 300.0}}


def job(tmp_path, **kw):
    kw.setdefault("timeout_s", 30)
    return Job(study="s", trial=0, label="x", plugins={}, spec=SPEC, seed=1,
               run_dir=str(tmp_path / "runs" / "s" / "0000-x-s1"), **kw)


def run_dir(tmp_path):
    return tmp_path / "runs" / "s" / "0000-x-s1"


@pytest.mark.parametrize("mode,status,failure,reason", [
    ("complete", "complete", "", ""),
    ("nan", "failed", "nan", "NaN"),
    ("nolearn", "failed", "no_learning", "did not fall"),
    ("timelimit", "failed", "timeout", "still training"),
    ("crash", "failed", "crash", "RuntimeError: boom in block 3"),
    ("crash_after_json", "failed", "crash", "ValueError: bad export"),
    ("oom", "failed", "oom", "CUDA out of memory"),
    ("sigkill", "failed", "oom", "SIGKILL"),
    ("usage", "refused", "refused", "boost_min=3.0 must not exceed boost_max=2.0"),
])
def test_how_a_run_ended(fake, tmp_path, monkeypatch, mode, status, failure, reason):
    monkeypatch.setenv("FAKE_MODE", mode)
    out = SubprocessRunner(python=fake)(job(tmp_path))
    assert (out.status, out.failure) == (status, failure)
    assert reason in out.reason
    assert (out.val_bpb == 2.4) == (status == "complete")
    assert json.loads((run_dir(tmp_path) / "spec.json").read_text()) == SPEC  # the spec the run was given
    argv = json.loads((run_dir(tmp_path) / "argv.json").read_text())
    assert argv[argv.index("--spec") + 1].endswith("spec.json") and "--no-check" in argv
    assert out.check is None and out.concurrent >= 1
    if status == "complete":
        assert (out.threads, out.capped_by) == (2, "steps")


@pytest.mark.parametrize("mode,failure,reason", [
    ("check_fail", "refused", "boost_min=3.0 must not exceed"),
    ("check_crash", "crash", "preflight crash (exit 1): RuntimeError: plugin exploded in configure"),
    ("check_oom", "oom", "preflight out of memory: MemoryError"),
    ("check_hang", "timeout", "preflight timed out: killed after the hard limit of 2s"),
])
def test_a_check_in_the_run_that_fails_crashes_hangs_or_runs_out_of_memory_refuses_the_run(
        fake, tmp_path, monkeypatch, mode, failure, reason):
    monkeypatch.setenv("FAKE_MODE", mode)
    out = SubprocessRunner(python=fake, poll_s=0.05)(job(tmp_path, check=True, timeout_s=2))
    assert (out.status, out.failure) == ("refused", failure)
    assert reason in out.reason and out.val_bpb is None
    argv = json.loads((run_dir(tmp_path) / "argv.json").read_text())
    assert argv[argv.index("--check-json") + 1] == str(run_dir(tmp_path) / "check.json") and "--no-check" not in argv


def test_a_passed_check_in_the_run_comes_back_with_the_result(fake, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_MODE", "complete")
    out = SubprocessRunner(python=fake)(job(tmp_path, check=True))
    assert out.status == "complete" and out.check["ok"] is True and out.check["checks"][0]["name"] == "static"


def test_the_hard_limit_is_never_unlimited():
    assert hard_limit_s({"max_wallclock_seconds": 600.0, "time_limit_seconds": 0.0}) == 1500.0
    assert hard_limit_s({"max_wallclock_seconds": 0.0, "time_limit_seconds": 300.0}) == 600.0
    assert hard_limit_s({"max_wallclock_seconds": 0.0, "time_limit_seconds": 0.0}) == 2 * 3600.0 + 300.0
    assert hard_limit_s({"max_wallclock_seconds": 600.0}, override=50.0) == 50.0
    assert Job("s", 0, "x", {}, SPEC, 1, "d").limit_s == 600.0


def test_a_hang_is_killed_at_the_hard_limit_with_its_whole_process_group(fake, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_MODE", "hang")
    t0 = time.time()
    out = SubprocessRunner(python=fake)(job(tmp_path, timeout_s=1.5))
    assert out.status == "failed" and out.failure == "timeout" and "hard limit" in out.reason
    assert time.time() - t0 < 12
    pid = int((run_dir(tmp_path) / "grandchild.pid").read_text())
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


def test_a_validation_marked_final_is_never_reported_to_the_pruner(fake, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_MODE", "final")
    seen = []
    out = SubprocessRunner(python=fake, poll_s=0.05)(job(tmp_path, report=lambda s, b: seen.append(s) or True))
    assert seen == [] and out.status == "complete"


def test_a_custom_runner_result_is_normalised():
    out = call_runner(lambda j: {"status": "complete", "val_bpb": float("nan")}, Job("s", 0, "x", {}, {}, 7, "d"))
    assert out.status == "failed" and out.failure == "nan" and out.seed == 7
    # the kind is what the runner says; without one a failed run is a crash, whatever its reason reads
    out = call_runner(lambda j: {"status": "failed", "reason": "CUDA out of memory"}, Job("s", 0, "x", {}, {}, 7, "d"))
    assert out.failure == "crash"
    out = call_runner(lambda j: {"status": "failed", "failure": "oom", "reason": "x"}, Job("s", 0, "x", {}, {}, 7, "d"))
    assert out.failure == "oom"
    out = call_runner(lambda j: {"status": "refused", "reason": "bad combo"}, Job("s", 0, "x", {}, {}, 7, "d"))
    assert (out.status, out.failure) == ("refused", "refused")
    with pytest.raises(Exception, match="status"):
        RunOutcome.from_mapping({"status": "great"})


def test_load_runner_from_a_file_or_a_module(tmp_path):
    f = tmp_path / "myrunner.py"
    f.write_text("def run(job):\n    return {'status': 'complete', 'val_bpb': 1.0}\n")
    assert load_runner(f"{f}:run")(None)["val_bpb"] == 1.0
    assert load_runner("golfplan.planner.runner:hard_limit_s")({"max_wallclock_seconds": 10.0}) == 320.0
    with pytest.raises(Exception, match="module:function"):
        load_runner("nocolon")
    with pytest.raises(Exception, match="not a callable"):
        load_runner(f"{f}:missing")
