"""Data-parallel training under torchrun (gloo on the CPU) follows the single-process run."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# torchrun's processes: one at a time under pytest-xdist (tests/conftest.py)
pytestmark = pytest.mark.xdist_group("alone")

TINY = ["--profile", "cpu", "--no-check", "--json", "--set", "num_layers=2", "--set", "model_dim=64",
        "--set", "train_seq_len=64", "--set", "train_batch_tokens=1024", "--set", "val_batch_size=1024",
        "--set", "val_max_tokens=2048", "--set", "iterations=6", "--set", "max_wallclock_seconds=0",
        "--set", "warmup_steps=2", "--set", "val_loss_every=2", "--set", "progress_bar=false"]


def run(tmp_path, name, launcher, extra=()):
    p = subprocess.run([*launcher, "-m", "golfplan", "run", *TINY, *extra, "--out", str(tmp_path), "--name", name],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads((tmp_path / name / "result.json").read_text())


def test_two_processes_follow_one_process_with_the_same_global_batch(dataset, tmp_path):
    one = run(tmp_path, "one", [sys.executable])
    # `golfplan run --nproc 2` relaunches itself as `torchrun --nproc_per_node=2 -m golfplan run ...`
    two = run(tmp_path, "two", [sys.executable], extra=["--nproc", "2"])
    assert one["world_size"] == 1 and two["world_size"] == 2
    curve1 = [h["val_loss"] for h in one["val_history"]]
    curve2 = [h["val_loss"] for h in two["val_history"]]
    assert len(curve1) == len(curve2) == 4  # steps 0, 2, 4, 6
    assert curve1[0] == curve2[0]
    for a, b in zip(curve1, curve2):  # summation order differs across ranks: float tolerance only
        assert abs(a - b) < 2e-3, (curve1, curve2)
    assert abs(one["val_bpb"] - two["val_bpb"]) < 2e-3


def test_a_failed_verdict_under_torchrun_is_one_summary_and_exit_1_not_a_launcher_traceback(dataset, tmp_path):
    big = ["--set", "matrix_lr=1e12", "--set", "scalar_lr=1e12", "--set", "embed_lr=1e12"]
    p = subprocess.run([sys.executable, "-m", "golfplan", "run", *TINY, *big, "--nproc", "2", "--out", str(tmp_path),
                        "--name", "nan"], capture_output=True, text=True, timeout=600)
    assert p.returncode == 1, p.stderr[-3000:]
    assert json.loads(p.stdout)["status"] == "failed"
    assert "Traceback" not in p.stderr and "ChildFailedError" not in p.stderr, p.stderr[-3000:]
