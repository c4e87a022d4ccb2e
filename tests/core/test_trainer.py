"""End-to-end training on the tiny config: the run directory, and runs that say they are broken."""

from __future__ import annotations

import json

import pytest
import torch

from golfplan.core.errors import PluginError
from golfplan.core.technique import Technique, hookimpl
from golfplan.core.train.trainer import train
from tests.conftest import run_tiny, tiny_config


class ZeroLoss(Technique):
    name = "zero_loss"
    summary = "the seed's N5/N6 patch bug: a loss that is always zero"

    @hookimpl
    def reduce_loss(self, config):
        return lambda token_loss, ctx: token_loss.mean() * 0.0


class NaNLoss(Technique):
    name = "nan_loss"
    summary = "adds NaN to the loss"

    @hookimpl
    def on_loss(self, config):
        return lambda ctx: ctx.progress * float("nan")


class Unsafe(Technique):
    name = "unsafe"
    summary = "declares itself compile-unsafe"
    compile_safe = False
    unsafe_reason = "branches on a random draw"


def test_run_writes_log_artifact_and_result(dataset, tmp_path):
    result = train(tiny_config(), [], run_dir=tmp_path / "run", log=lambda m: None)
    assert result.status == "complete", result.reason
    assert result.val_bpb < result.untrained_val_bpb
    assert result.steps == 30 and result.ms_per_step > 0
    assert result.artifact_bytes == result.model_bytes + result.code_bytes
    log = (tmp_path / "run" / "train.log").read_text()
    for needle in ("# versions:", '"torch"', "# plugins: (none: the baseline)", "# config:", "num_layers: 4",
                   "step:30/30 val_loss:", "final_int8_zlib_roundtrip val_loss:"):
        assert needle in log
    assert (tmp_path / "run" / "final_model.int8_zlib.ptz").stat().st_size == result.model_bytes
    saved = json.loads((tmp_path / "run" / "result.json").read_text())
    assert saved["status"] == "complete" and saved["val_bpb"] == pytest.approx(result.val_bpb)


def test_zero_loss_is_a_failed_run_not_a_number(dataset):
    result = run_tiny(techniques=[ZeroLoss()])
    assert result.status == "failed"
    assert "exactly zero" in result.reason and result.val_bpb is None


def test_nan_loss_is_a_failed_run(dataset):
    result = run_tiny(techniques=[NaNLoss()], iterations=12)
    assert result.status == "failed" and "NaN" in result.reason and result.val_bpb is None


def test_no_learning_is_a_failed_run(dataset):
    result = run_tiny(iterations=14, matrix_lr=0.0, scalar_lr=0.0, tied_embed_lr=0.0)
    assert result.status == "failed" and "did not fall" in result.reason


def test_compile_unsafe_plugins_need_allow_eager(dataset):
    with pytest.raises(PluginError, match="unsafe: branches on a random draw.*--allow-eager"):
        run_tiny(techniques=[Unsafe()])
    assert run_tiny(techniques=[Unsafe()], allow_eager=True, iterations=8).status == "complete"


def test_wallclock_cap_finishes_the_schedule(dataset, monkeypatch):
    """The seed's NF15/NF16: a wallclock-capped run's schedule still reaches its end. The clock is a
    fake one that advances 0.05 s each time the trainer reads it, so the test does not depend on
    how fast or how busy the machine is."""
    import itertools
    import time as real_time

    import golfplan.core.train.trainer as trainer

    ticks = itertools.count()
    fake = type("FakeTime", (), {"perf_counter": staticmethod(lambda: 0.05 * next(ticks)),
                                 "time": staticmethod(real_time.time)})
    monkeypatch.setattr(trainer, "time", fake)
    seen = []

    class Spy(Technique):
        name = "spy"
        summary = "records the progress the schedule sees"

        @hookimpl
        def lr_schedule(self, clock, config):
            seen.append(clock.progress)
            return 1.0 - clock.progress

    result = run_tiny(techniques=[Spy()], iterations=100000, max_wallclock_seconds=1.5)
    assert result.capped_by == "wallclock" and 1 < result.steps < 100000
    assert seen[-1] > 0.8  # capped by time, yet the schedule reached its end
    assert result.status == "complete" or result.failure == "no_learning", result.reason


def test_seeded_runs_repeat(dataset):
    a, b = run_tiny(iterations=5), run_tiny(iterations=5)
    assert a.last_train_loss == b.last_train_loss
    c = run_tiny(iterations=5, seed=7)
    assert c.last_train_loss != a.last_train_loss
    torch.manual_seed(0)
