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
from golfplan.core.model import MLP
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


def check(plugins, tmp_path=None, files=(), profile="cpu", sets=()):
    spec = load_spec(profile, plugins=plugins, sets=list(sets), plugin_paths=[str(f) for f in files])
    return run_checks(spec, Registry(plugin_paths=spec.plugin_paths))


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
    report = check("", profile="8xh100", sets=["model_dim=768"])
    assert statuses(report)["budget"] == "fail" and "over the artifact limit" in report.reason
    assert report.estimate["artifact_bytes"] > 16_000_000


def test_baseline_fits_the_budget(dataset):
    report = check("", profile="8xh100")
    assert report.ok and report.estimate["params"] == 17_059_912


def test_cli_json_and_exit_codes(tmp_path, dataset):
    f = write(tmp_path, "branchy", BRANCHY)
    p = subprocess.run([sys.executable, "-m", "golfplan", "check", "--plugin-path", str(f), "--plugins", "branchy",
                        "--json"], capture_output=True, text=True)
    assert p.returncode == 1, p.stderr
    out = json.loads(p.stdout)
    assert out["ok"] is False and [c["name"] for c in out["checks"]] == ["static", "trace", "declarations"]
    ok = subprocess.run([sys.executable, "-m", "golfplan", "check", "--plugins", "tidal"], capture_output=True, text=True)
    assert ok.returncode == 0 and "all 5 checks passed" in ok.stdout, ok.stdout + ok.stderr


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
    from golfplan.core.trainer import train
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
    from golfplan.core.trainer import train
    from tests.conftest import tiny_config

    techniques = Registry().instantiate({"weight_sharing": {}, "mirror_training": {}})
    result = train(tiny_config(compile="on", iterations=12), techniques, log=lambda m: None)
    assert result.compiled and result.status == "complete", result.reason
