"""One training step for the trainer and the check: a per-step hook sees the same calls, in the same
order, with the same arguments in both; gradient clipping, Muon's momentum warmup and weight decay
run in both."""

from __future__ import annotations

import torch

from golfplan.check import trace_techniques
from golfplan.core.technique import Technique, hookimpl
from golfplan.core.train.trainer import train
from tests.conftest import tiny_config

CALLS: list[tuple] = []


class Recorder(Technique):
    """Records every per-step hook call: hook, step, argument types, and what the optimizer holds."""

    name = "recorder"
    summary = "records the per-step hook calls of a step"

    @hookimpl
    def lr_schedule(self, clock, config):
        CALLS.append(("lr_schedule", clock.step, type(config).__name__))
        return 1.0

    @hookimpl
    def after_backward(self, model, clock):
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        CALLS.append(("after_backward", clock.step, type(model).__name__, bool(grads)))

    @hookimpl
    def wd_schedule(self, clock, config):
        CALLS.append(("wd_schedule", clock.step, type(config).__name__))
        return 0.01

    @hookimpl
    def on_step(self, model, optimizers, clock):
        muon = next(o for o in optimizers if type(o).__name__ == "Muon")
        CALLS.append(("on_step", clock.step, type(model).__name__, len(optimizers),
                      round(muon.param_groups[0]["momentum"], 6), torch.is_grad_enabled()))


def calls_by_step(calls):
    out: dict[int, list[tuple]] = {}
    for c in calls:
        out.setdefault(c[1], []).append(c[:1] + c[2:])
    return out


def expected_momentum(config, step):
    frac = min(step / config.muon_momentum_warmup_steps, 1.0)
    return round((1 - frac) * config.muon_momentum_warmup_start + frac * config.muon_momentum, 6)


def test_the_check_trace_and_the_trainer_run_the_same_step(dataset, monkeypatch):
    clips: list[str] = []
    real_clip = torch.nn.utils.clip_grad_norm_

    def counting_clip(params, max_norm, *a, **kw):
        clips.append("clip")
        return real_clip(params, max_norm, *a, **kw)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", counting_clip)
    config = tiny_config(grad_clip_norm=0.5, iterations=20, muon_momentum_warmup_steps=10)

    CALLS.clear()
    trace_techniques(config, [Recorder()])
    traced, trace_clips = calls_by_step(CALLS), len(clips)

    CALLS.clear()
    clips.clear()
    result = train(config, [Recorder()], log=lambda m: None)
    assert result.status == "complete", result.reason
    trained, train_clips = calls_by_step(CALLS), len(clips)

    # the trace runs the trainer's step at progress 0.25 ... 1.0 (steps 5, 10, 15, 20 of 20)
    assert sorted(traced) == [5, 10, 15, 20]
    assert trace_clips == len(traced) and train_clips == config.iterations
    for step, seq in traced.items():
        if step in trained:
            assert seq == trained[step], f"step {step}: trace {seq} != trainer {trained[step]}"
        names = [c[0] for c in seq]
        assert names == ["lr_schedule", "after_backward", "wd_schedule", "on_step"]
        assert seq[-1][3] == expected_momentum(config, step)  # momentum warmup ran in the trace's step
    for step, seq in trained.items():
        assert [c[0] for c in seq] == ["lr_schedule", "after_backward", "wd_schedule", "on_step"]
        assert seq[1][2] is True  # gradients exist when after_backward runs
        assert seq[-1][3] == expected_momentum(config, step) and seq[-1][4] is False  # on_step under no_grad
