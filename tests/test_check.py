"""``golfplan check``: each check fails for a real reason, with user-written test plugins."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from golfplan.core.config import load_spec
from golfplan.check import run_checks
from golfplan.registry import Registry
from tests.conftest import golfplan_in_process

BRANCHY = '''
from golfplan.core.technique import Float, Technique, hookimpl


class Branchy(Technique):
    name = "branchy"
    summary = "a loss term with a data-dependent Python branch, wrongly declared compile-safe"
    compile_safe = True
    params = {"coef": Float(1e-4, 0.0, 1.0)}

    @hookimpl
    def on_loss(self, config):
        coef = self.p.coef

        def term(ctx):
            if ctx.logits.abs().mean() > 1.0:  # branches on a tensor value: a graph break
                return coef * ctx.logits.square().mean()
            return coef * ctx.logits.abs().mean()

        return term
'''

SWAPPER = '''
from golfplan.core.model.gpt import MLP
from golfplan.core.technique import Technique, hookimpl


class Swapper(Technique):
    name = "swapper"
    summary = "replaces the first block's MLP at half-time, wrongly declared compile-safe"
    compile_safe = True

    @hookimpl
    def on_step(self, model, optimizers, clock):
        if clock.progress >= 0.5 and not isinstance(getattr(model.blocks[0], "_swapped", None), bool):
            model.blocks[0].mlp = MLP(model.config)
            model.blocks[0]._swapped = True
'''

ZEROER = '''
from golfplan.core.technique import Technique, hookimpl


class Zeroer(Technique):
    name = "zeroer"
    summary = "the seed's N5/N6 bug: a loss that is always zero"

    @hookimpl
    def reduce_loss(self, config):
        return lambda token_loss, ctx: token_loss.mean() * 0.0
'''


def write(tmp_path, name, source):
    f = tmp_path / f"{name}.py"
    f.write_text(textwrap.dedent(source))
    return f


def check(plugins, tmp_path=None, files=(), profile="cpu", sets=(), smoke=True):
    spec = load_spec(profile, plugins=plugins, sets=list(sets), plugin_paths=[str(f) for f in files])
    return run_checks(spec, Registry(plugin_paths=spec.plugin_paths), smoke=smoke)


def statuses(report):
    return {r.name: r.status for r in report.results}


def test_all_pass_for_the_main_combination(dataset):
    report = check("tidal,parallel,gqa")
    assert report.ok, report.reason
    assert [r.name for r in report.results] == ["static", "trace", "declarations", "smoke", "budget"]
    assert report.estimate["params"] > 0 and report.estimate["artifact_bytes"] < 16_000_000


@pytest.mark.parametrize("plugins,sets,needle", [
    ("tidle", [], "unknown plugin 'tidle'; did you mean 'tidal'"),
    ("tidal,cosine", [], "both fill the 'lr_schedule' slot"),
    ("tidal", ["tidal.warmup_frac=0.99"], "out of range"),
    ("gqa", ["num_heads=4", "gqa.kv_heads=3"], "does not divide num_heads"),
    ("", ["encoder_layers=7"], "encoder_layers 7 exceeds num_layers 4"),
])
def test_static_failures(plugins, sets, needle):
    report = check(plugins, sets=sets)
    assert statuses(report) == {"static": "fail"}
    assert needle in report.reason


def test_data_dependent_branch_declared_safe_is_caught(tmp_path, dataset):
    report = check("branchy", files=[write(tmp_path, "branchy", BRANCHY)])
    assert statuses(report) == {"static": "pass", "trace": "fail", "declarations": "fail"}
    trace = report.results[1]
    assert trace.plugin == "branchy" and "does not trace" in trace.message
    assert "declares compile_safe = True" in report.results[2].message and "wrong" in report.results[2].message


def test_module_swap_mid_run_is_caught(tmp_path, dataset):
    report = check("swapper,tidal", files=[write(tmp_path, "swapper", SWAPPER)])
    assert statuses(report)["trace"] == "fail"
    assert "progress 0.5" in report.results[1].message and report.results[1].plugin == "swapper"
    assert report.results[2].status == "fail"


def test_zero_loss_fails_the_smoke_train(tmp_path, dataset):
    report = check("zeroer", files=[write(tmp_path, "zeroer", ZEROER)])
    assert statuses(report) == {"static": "pass", "trace": "pass", "declarations": "pass", "smoke": "fail"}
    assert "exactly zero" in report.reason


def test_over_the_artifact_limit_fails_the_budget(dataset):
    report = check("", profile="8xh100", sets=["model_dim=768"], smoke=False)  # the budget is what is judged here
    assert statuses(report)["budget"] == "fail" and "over the artifact limit" in report.reason
    assert report.estimate["artifact_bytes"] > 16_000_000


def test_baseline_fits_the_budget(dataset):
    report = check("", profile="8xh100", smoke=False)  # the budget is what is judged here
    assert report.ok and report.estimate["params"] == 17_059_912


def test_cli_json_and_exit_codes(tmp_path, dataset):
    f = write(tmp_path, "branchy", BRANCHY)
    p = golfplan_in_process("check", "--plugin-path", str(f), "--plugins", "branchy", "--json")
    assert p.returncode == 1, p.stderr
    out = json.loads(p.stdout)
    assert out["ok"] is False and [c["name"] for c in out["checks"]] == ["static", "trace", "declarations"]
    ok = golfplan_in_process("check", "--plugins", "tidal")
    assert ok.returncode == 0 and "all 5 checks passed" in ok.stdout, ok.stdout + ok.stderr


# ---- time limits and out-of-memory ------------------------------------------------------------

# Hangs until its release file exists: a test's thread left behind at the limit ends when the test does.
HANGER = """
import os
import time

from golfplan.core.technique import Technique, hookimpl

RELEASE = {release!r}


def wait():
    while not os.path.exists(RELEASE):
        time.sleep(0.05)


class FaultHang(Technique):
    name = "fault_hang"
    summary = "never returns from its {hook} hook"

    @hookimpl
    def {hook}({args}):
        wait()
"""


def hanger(tmp_path, hook="configure", args="self, config"):
    return write(tmp_path, "fault_hang", HANGER.format(release=str(tmp_path / "release"), hook=hook, args=args))


def test_a_stage_that_hangs_fails_as_a_timeout_at_its_limit_naming_the_plugin_and_its_line(tmp_path):
    f = hanger(tmp_path)
    spec = load_spec("cpu", plugins="fault_hang,tidal", plugin_paths=[str(f)])
    try:
        report = run_checks(spec, Registry(plugin_paths=spec.plugin_paths), timeout_s=0.5)
    finally:
        (tmp_path / "release").touch()
    assert statuses(report) == {"static": "fail"} and report.failure == "timeout"
    r = report.results[0]
    assert r.failure == "timeout" and r.plugin == "fault_hang" and 0.5 <= r.seconds < 30
    assert "plugin 'fault_hang' still running after the stage's limit of 0.5s" in r.message
    assert "last line: fault_hang.py:" in r.message and "in wait: time.sleep(0.05)" in r.message
    assert report.to_dict()["failure"] == "timeout" and report.to_dict()["checks"][0]["failure"] == "timeout"


def test_the_stage_limit_comes_from_the_profile_the_environment_or_the_flag(monkeypatch):
    from golfplan.check.stages import TIMEOUT_ENV, stage_limit_s
    from golfplan.core.errors import ConfigError

    monkeypatch.delenv(TIMEOUT_ENV, raising=False)
    assert stage_limit_s(load_spec("cpu")) == 300.0 and stage_limit_s(load_spec("8xh100")) == 600.0
    assert stage_limit_s(load_spec("cpu"), 2.5) == 2.5
    monkeypatch.setenv(TIMEOUT_ENV, "42")
    assert stage_limit_s(load_spec("8xh100")) == 42.0 and stage_limit_s(load_spec("cpu"), 7) == 7.0
    monkeypatch.setenv(TIMEOUT_ENV, "soon")
    with pytest.raises(ConfigError, match="GOLFPLAN_CHECK_TIMEOUT"):
        stage_limit_s(load_spec("cpu"))
    # a planner command's flag reaches every check it starts (its runs and children inherit the environment)
    from golfplan.cli import build_parser

    args = build_parser().parse_args(["study", "--plugins", "tidal", "--check-timeout", "7"])
    assert args.check_timeout == 7.0 and stage_limit_s(load_spec("cpu")) == 7.0


def test_golfplan_check_with_a_hanging_plugin_refuses_it_and_exits(tmp_path):
    """As the real process (the one subprocess test of `golfplan check`): the check ends with exit 1
    though the stage's thread still hangs."""
    f = hanger(tmp_path)
    p = subprocess.run([sys.executable, "-m", "golfplan", "check", "--plugin-path", str(f), "--plugins",
                        "fault_hang,tidal", "--check-timeout", "2"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "FAIL static" in p.stdout and "Traceback" not in p.stdout + p.stderr
    last = p.stdout.strip().splitlines()[-1]
    assert last.startswith("check failed in") and "static: timed out: plugin 'fault_hang' still running" in last, last
    assert "last line: fault_hang.py:" in last


OOM = """
import torch

from golfplan.core.technique import Technique, hookimpl


class FaultOom(Technique):
    name = "fault_oom"
    summary = "asks torch's CPU allocator for 4 PiB in its training step"

    @hookimpl
    def on_step(self, model, optimizers, clock):
        torch.empty(2**50)
"""


def test_the_cpu_allocator_failing_is_an_oom_in_the_run_and_in_a_dead_childs_last_line(tmp_path, dataset):
    from golfplan.core.result import exception_kind
    from golfplan.core.train.trainer import train
    from golfplan.planner.procs import exit_of
    from tests.conftest import tiny_config

    techniques = Registry(plugin_paths=[str(write(tmp_path, "fault_oom", OOM))]).instantiate({"fault_oom": {}})
    with pytest.raises(RuntimeError, match="DefaultCPUAllocator: can't allocate memory") as e:
        train(tiny_config(iterations=2), techniques, run_dir=tmp_path / "run", log=lambda m: None)
    assert exception_kind(e.value) == "oom" and exception_kind(RuntimeError("no")) == "crash"
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert (result["status"], result["failure"]) == ("failed", "oom"), result
    assert "DefaultCPUAllocator: can't allocate memory" in result["reason"]
    # a process that died of it: the planner reads the kind from its last error line
    stderr = tmp_path / "stderr.log"
    stderr.write_text(f"Traceback (most recent call last):\n  ...\nRuntimeError: {e.value}\n")
    ex = exit_of(1, stderr, "", 60.0)
    assert ex.kind == "oom" and "DefaultCPUAllocator" in ex.reason


U_WAVE_SAFE = ["weight_sharing", "attention_recycling", "mirror_training", "head_pruning"]
U_WAVE_UNSAFE = ["layer_dropout", "progressive_growing"]


@pytest.mark.parametrize("name", U_WAVE_UNSAFE)
def test_u_wave_unsafe_techniques_are_refused_with_their_reason(name, dataset):
    report = check(name)
    assert statuses(report) == {"static": "fail"}
    assert f"refused: plugin '{name}' is not compile-safe" in report.reason and "--allow-eager" in report.reason
    eager = check(name, sets=["allow_eager=true"])
    assert eager.ok and eager.eager, eager.reason
    assert "does not trace, as declared" in eager.results[1].message


@pytest.mark.parametrize("name", U_WAVE_SAFE)
def test_u_wave_techniques_the_checks_pass_really_train_under_torch_compile(name, dataset):
    from golfplan.core.hooks import apply_configure, resolve
    from golfplan.core.train.trainer import train
    from golfplan.core.config import shrink
    from tests.conftest import tiny_config

    assert check(name).ok
    techniques = Registry().instantiate({name: {}})
    config = shrink(apply_configure(resolve(techniques), tiny_config()), steps=14)
    # a real torch.compile(fullgraph=True) of the training forward + backward (AOTAutograd), for every step
    config = config.replace(compile="on", compile_backend="aot_eager")
    result = train(config, techniques, log=lambda m: None, configure=False)
    assert result.compiled and result.status == "complete", result.reason


@pytest.mark.slow
def test_a_passing_u_wave_technique_trains_under_inductor(dataset):
    from golfplan.core.train.trainer import train
    from tests.conftest import tiny_config

    techniques = Registry().instantiate({"weight_sharing": {}, "mirror_training": {}})
    result = train(tiny_config(compile="on", iterations=12), techniques, log=lambda m: None)
    assert result.compiled and result.status == "complete", result.reason
