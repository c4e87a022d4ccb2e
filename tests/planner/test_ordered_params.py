"""Params that must be ordered: declared on the technique, checked on every instance, listed, and sampled
so that only valid combinations are proposed."""

from __future__ import annotations

import optuna
import pytest

from golfplan.core.errors import PluginError
from golfplan.core.technique import Float, Int, Technique
from golfplan.planner.space import SearchSpace, ordered_highs, sampling_order
from golfplan.registry import Registry

optuna.logging.set_verbosity(optuna.logging.WARNING)


class Band(Technique):
    name = "band"
    summary = "a band [lo, hi] with a strictly larger top and a count above a floor"
    params = {"hi": Float(0.8, 0.0, 1.0, at_least="lo"), "lo": Float(0.2, 0.0, 1.0),
              "top": Float(0.9, 0.0, 1.0, above="hi"), "n": Int(4, 1, 8, above="k"), "k": Int(2, 1, 8)}


def test_declared_orders_are_listed_lower_first_whatever_the_declaration_order():
    assert Band.ordered_params() == [("lo", "hi"), ("k", "n"), ("hi", "top")]
    assert sampling_order(Band) == ["lo", "k", "hi", "n", "top"]
    info = Band.info()
    assert info["params"]["hi"]["at_least"] == "lo" and info["params"]["top"]["above"] == "hi"
    assert {"lower": "lo", "higher": "hi", "strict": False} in info["ordered"]
    assert Band.params["hi"].describe() == "0.8 [0.0, 1.0] >= lo"
    assert Band.params["n"].describe() == "4 [1, 8] > k"


@pytest.mark.parametrize("values,message", [
    ({"lo": 0.9, "hi": 0.5}, "lo=0.9 must not exceed hi=0.5"),
    ({"k": 4, "n": 4}, "k=4 must be below n=4"),
    ({"hi": 0.95, "top": 0.95}, "hi=0.95 must be below top=0.95"),
])
def test_an_instance_out_of_order_is_a_plugin_error(values, message):
    with pytest.raises(PluginError, match=f"plugin 'band': {message}"):
        Band(**values)
    Band(lo=0.5, hi=0.5, k=3, n=4, top=0.96)  # equal is fine for at_least; above needs more


def test_the_builtin_plugins_reject_their_invalid_combinations_with_a_clear_error():
    reg = Registry()
    with pytest.raises(PluginError, match="boost_min=3.17 must not exceed boost_max=1.9"):
        reg.get("thermal_vent")(boost_min=3.17, boost_max=1.9)
    with pytest.raises(PluginError, match="end_heads=16 must be below start_heads=16"):
        reg.get("head_pruning")(end_heads=16)


@pytest.mark.parametrize("params,message", [
    ({"a": Float(0.5, 0.0, 1.0, at_least="b")}, "which is not another param of it"),
    ({"a": Float(0.5, 0.0, 1.0, at_least="b"), "b": Int(1, 0, 3)}, "both must be int or both float"),
    ({"a": Float(0.5, 0.0, 1.0, at_least="b"), "b": Float(0.5, 0.0, 1.0, at_least="a")}, "ordered in a circle"),
    ({"a": Int(1, 0, 3, above="b"), "b": Int(5, 5, 9)}, "no value of 'a' up to 3 can exceed 'b' >= 5"),
])
def test_a_bad_declaration_is_a_plugin_error(params, message):
    cls = type("Bad", (Technique,), {"name": "bad", "summary": "x", "params": params})
    with pytest.raises(PluginError, match=message):
        cls()


def test_at_least_and_above_together_are_refused():
    with pytest.raises(ValueError, match="at_least or above"):
        Float(0.5, 0.0, 1.0, at_least="a", above="b")


def test_the_search_space_proposes_only_valid_combinations():
    reg = Registry()
    reg.add(Band, "test")
    space = SearchSpace(reg, {"band": {}, "thermal_vent": {}, "head_pruning": {}})
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=1, multivariate=True, group=True,
                                                                   n_startup_trials=10))
    seen = {"band": 0, "thermal_vent": 0, "head_pruning": 0}
    for i in range(60):
        t = study.ask()
        plugins = space.sample(t)
        for name, params in plugins.items():
            reg.get(name)(**params)  # raises if out of order
            seen[name] += 1
        study.tell(t, (i * 7919) % 13 / 13.0)  # values unrelated to the params: TPE samples everywhere
    assert min(seen.values()) >= 10, seen


def test_a_given_higher_value_bounds_the_lower_one():
    assert ordered_highs(Band, {"top": 0.5}) == {"hi": pytest.approx(0.5), "lo": pytest.approx(0.5), "k": 7}
    assert ordered_highs(Band, {"top": 0.5})["hi"] < 0.5  # strictly below a strict order's higher value
    reg = Registry()
    space = SearchSpace(reg, {"thermal_vent": {"boost_max": 1.5}})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(30):
        t = study.ask()
        plugins = space.sample(t)
        if "thermal_vent" in plugins:
            assert 1.0 <= plugins["thermal_vent"]["boost_min"] <= 1.5 and plugins["thermal_vent"]["boost_max"] == 1.5
        study.tell(t, 0.0)


def test_plugins_show_lists_the_order(tmp_path):
    from .test_cli import run

    out = run(["plugins", "show", "thermal_vent"], tmp_path)
    assert out.returncode == 0 and "boost_max = 3.0 [1.0, 10.0] >= boost_min" in out.stdout


def test_fixing_one_param_of_an_order_leaves_the_other_to_follow_it(make_planner):
    from .conftest import Sim, make_def

    assert Band.completed({"lo": 0.9}) == {"hi": 0.9, "lo": 0.9, "top": pytest.approx(0.9), "n": 4, "k": 2}
    assert Band.completed({"lo": 0.9})["top"] > 0.9
    assert Band.completed({"n": 2}) == {"hi": 0.8, "lo": 0.2, "top": 0.9, "n": 2, "k": 1}
    sim = Sim()
    p = make_planner(make_def(mode="tune", plugins={"thermal_vent": {"boost_min": 5.0}}, trials=8), sim)
    assert p.run().stopped == "done"
    all_on = p.study.get_trials()[1]
    assert all_on.user_attrs["plugins"]["thermal_vent"] == {"layers": 2, "boost_min": 5.0, "boost_max": 5.0}
    assert all(t.user_attrs["status"] == "complete" for t in p.study.get_trials())
    assert all(j.plugins["thermal_vent"]["boost_max"] >= 5.0 for j in sim.calls if "thermal_vent" in j.plugins)
