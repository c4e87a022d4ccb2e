"""The search space: slot groups, conditional params, conflicts/requires, forbidden subsets."""

from __future__ import annotations

import textwrap

import optuna
import pytest

from golfplan.planner.space import Group, SearchSpace
from golfplan.registry import Registry

optuna.logging.set_verbosity(optuna.logging.WARNING)

RULES = '''
from golfplan.core.technique import Float, Technique, hookimpl


class Needy(Technique):
    name = "needy"
    summary = "requires tidal"
    requires = ("tidal",)
    params = {"x": Float(0.5, 0.0, 1.0)}


class Grumpy(Technique):
    name = "grumpy"
    summary = "conflicts with parallel"
    conflicts = ("parallel",)
'''


@pytest.fixture(scope="module")
def reg(tmp_path_factory):
    d = tmp_path_factory.mktemp("rules")
    (d / "rules.py").write_text(textwrap.dedent(RULES))
    return Registry(plugin_paths=[str(d / "rules.py")])


def samples(space, n=200, seed=0):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(n):
        t = study.ask()
        out.append((space.sample(t), dict(t.params)))
        study.tell(t, 0.0)
    return out


def test_slot_mates_are_one_categorical_and_never_together(reg):
    space = SearchSpace(reg, {"tidal": {}, "cosine": {}, "parallel": {}})
    names = {g.name: g for g in space.groups}
    assert set(names) == {"slot:lr_schedule", "parallel"}
    assert [Group.label(c) for c in names["slot:lr_schedule"].combos] == ["none", "tidal", "cosine"]
    seen = set()
    for plugins, _ in samples(space):
        assert not {"tidal", "cosine"} <= set(plugins)
        seen.add(frozenset(plugins))
    assert len(seen) == 6  # 3 schedule choices x parallel on/off: every legal combination shows up


def test_multi_slot_plugin_links_slots_into_legal_combinations(reg):
    space = SearchSpace(reg, {"tidal": {}, "wd_ramp": {}, "predator_prey": {}})
    (g,) = space.groups
    labels = {Group.label(c) for c in g.combos}
    assert labels == {"none", "tidal", "wd_ramp", "predator_prey", "tidal+wd_ramp"}


def test_params_are_conditional_and_fixed_params_are_not_searched(reg):
    space = SearchSpace(reg, {"tidal": {}, "gqa": {"kv_heads": 1}})
    for plugins, params in samples(space, 60):
        assert ("tidal.warmup_frac" in params) == ("tidal" in plugins)
        assert "gqa.kv_heads" not in params
        if "tidal" in plugins:
            assert 0.05 <= plugins["tidal"]["warmup_frac"] <= 0.7
        if "gqa" in plugins:
            assert plugins["gqa"] == {"kv_heads": 1}


def test_requires_and_conflicts_are_never_violated(reg):
    space = SearchSpace(reg, {"needy": {}, "tidal": {}, "grumpy": {}, "parallel": {}})
    assert [g.name for g in space.groups][-1] == "needy"  # decided after what it requires
    got = samples(space, 300)
    for plugins, _ in got:
        assert "needy" not in plugins or "tidal" in plugins
        assert not {"grumpy", "parallel"} <= set(plugins)
    assert any("needy" in p for p, _ in got) and any("grumpy" in p for p, _ in got)


def test_forbidden_subsets_are_never_proposed(reg):
    space = SearchSpace(reg, {"tidal": {}, "parallel": {}, "gqa": {}})
    space.forbid(["tidal", "parallel"])
    space.forbid(["gqa"])
    got = samples(space, 200)
    for plugins, params in got:
        assert not {"tidal", "parallel"} <= set(plugins) and "gqa" not in plugins
        assert "gqa" not in params  # a decision with one option left is not asked at all
    assert {frozenset(p) for p, _ in got} == {frozenset(), frozenset({"tidal"}), frozenset({"parallel"})}


def test_a_restricted_categorical_gets_its_own_name(reg):
    space = SearchSpace(reg, {"tidal": {}, "cosine": {}, "breathing": {}})
    space.forbid(["cosine"])
    _, params = samples(space, 1)[0]
    assert list(params)[0] == "slot:lr_schedule[none|tidal|breathing]"


def test_fixed_plugins_are_in_every_trial_and_replaced_by_slot_mates(reg):
    space = SearchSpace(reg, {"tidal": {}}, always={"softcap": {}}, fixed={"cosine": {}, "parallel": {}})
    for plugins, params in samples(space, 40):
        assert "parallel" in plugins and "softcap" in plugins and "softcap.value" in params
        assert ("cosine" in plugins) != ("tidal" in plugins)


def test_encode_then_sample_gives_back_the_configuration(reg):
    space = SearchSpace(reg, {"tidal": {}, "cosine": {}, "parallel": {}, "gqa": {}},
                        domains={"gqa": {"kv_heads": [1, 2, 4]}})
    chosen = {"tidal": {"warmup_frac": 0.3}, "gqa": {"kv_heads": 4}}
    study = optuna.create_study()
    study.enqueue_trial(space.encode(chosen))
    t = study.ask()
    assert space.sample(t) == chosen
    assert space.all_on() == {"tidal": {"warmup_frac": 0.382}, "parallel": {}, "gqa": {"kv_heads": 2}}
