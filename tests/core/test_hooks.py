"""Hook resolution: markers only, misspelt hooks fail loudly, configure conflicts, the clock."""

from __future__ import annotations

import pytest

from golfplan.core.config import Config
from golfplan.core.errors import ConfigError, PluginError
from golfplan.core.hooks import apply_configure, linear_warmdown, resolve
from golfplan.core.state import Clock
from golfplan.core.technique import Float, Int, Technique, hookimpl


class Misspelt(Technique):
    name = "misspelt"
    summary = "implements a hook that does not exist"

    @hookimpl
    def lr_schedul(self, clock, config):
        return 1.0


class SetsKV(Technique):
    name = "sets_kv"
    summary = "sets num_kv_heads"
    params = {"kv": Int(2, 1, 8)}

    @hookimpl
    def configure(self, config):
        return {"num_kv_heads": self.p.kv}


class AlsoSetsKV(SetsKV):
    name = "also_sets_kv"


class Half(Technique):
    name = "half"
    summary = "a constant schedule declared with a subset of the hook's arguments"
    params = {"value": Float(0.5, 0.0, 1.0)}

    @hookimpl
    def lr_schedule(self, clock):
        return self.p.value


def test_misspelt_hook_fails_loudly():
    with pytest.raises(PluginError, match="unknown hook 'lr_schedul'; did you mean 'lr_schedule'"):
        resolve([Misspelt()])


def test_configure_conflicts_name_both_sides():
    assert apply_configure(resolve([SetsKV(kv=1)]), Config()).num_kv_heads == 1
    assert apply_configure(resolve([SetsKV(kv=2), AlsoSetsKV(kv=2)]), Config()).num_kv_heads == 2
    with pytest.raises(PluginError, match="'also_sets_kv' and 'sets_kv' both set num_kv_heads"):
        apply_configure(resolve([SetsKV(kv=1), AlsoSetsKV(kv=2)]), Config())
    with pytest.raises(ConfigError, match="set to 4 in the config and to 1 by plugin 'sets_kv'"):
        apply_configure(resolve([SetsKV(kv=1)]), Config(num_kv_heads=4), explicit={"num_kv_heads"})


def test_params_are_validated():
    with pytest.raises(PluginError, match=r"param 'kv'=9 is out of range \[1, 8\]"):
        SetsKV(kv=9)
    with pytest.raises(PluginError, match="has no param 'kvv'; did you mean 'kv'"):
        SetsKV(kvv=1)


def test_resolved_schedule_is_a_plain_callable():
    h = resolve([Half(value=0.25)])
    assert h.lr_schedule(clock=Clock(), config=Config()) == 0.25
    default = resolve([])
    assert default.lr_schedule(clock=Clock(step=0, iterations=100), config=Config(max_wallclock_seconds=0)) == 1.0


def test_progress_is_the_max_of_steps_and_wallclock():
    # the seed's NF15: ITERATIONS=3000 with a 600 s cap left the schedule at 8 %
    assert Clock(step=240, iterations=3000, elapsed_s=600, wallclock_s=600).progress == 1.0
    assert Clock(step=240, iterations=3000, elapsed_s=300, wallclock_s=600).progress == 0.5
    assert Clock(step=50, iterations=100, elapsed_s=10, wallclock_s=600).progress == 0.5
    assert Clock(step=50, iterations=100, elapsed_s=10, wallclock_s=0).progress == 0.5


def test_default_schedule_is_the_wallclock_warmdown():
    c = Config(warmdown_iters=100, max_wallclock_seconds=600, iterations=20000)
    # 1 s/step: the warmdown covers the last 100 s of the cap
    assert linear_warmdown(Clock(step=400, elapsed_s=400), c) == 1.0
    assert linear_warmdown(Clock(step=550, elapsed_s=550), c) == pytest.approx(0.5)
    assert linear_warmdown(Clock(step=600, elapsed_s=600), c) == 0.0
    no_cap = Config(warmdown_iters=100, max_wallclock_seconds=0, iterations=1000)
    assert linear_warmdown(Clock(step=950), no_cap) == pytest.approx(0.5)
