"""The default planner strategy (golfplan.planner.strategy) on simulated runners: no training."""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import textwrap

import optuna
import pytest

from golfplan.core.errors import GolfplanError
from golfplan.planner.definition import canonical_plugins
from golfplan.planner.report import collect
from golfplan.planner.records import Chosen
from golfplan.planner.stats import expected_improvement
from golfplan.planner.strategy import StackTuneStrategy
from golfplan.planner.tuning import RACE_Z, spread
from golfplan.registry import Registry, combination_problems

from .conftest import make_def

REG = Registry()


class World:
    """val_bpb = 2.5 + sum of each plugin's effect(params, plugins on) + N(0, noise), seeded by the job's
    seed and configuration (a rerun with the same seed repeats its value); ``calls`` keeps every job."""

    def __init__(self, effects, noise=0.001, salt=0, registry=REG):
        self.effects, self.noise, self.salt, self.registry = effects, noise, salt, registry
        self.calls = []

    def true(self, plugins):
        full = canonical_plugins(self.registry, plugins)
        return 2.5 + sum(self.effects.get(n, lambda p, on: 0.0)(p, set(full)) for n, p in full.items())

    def __call__(self, job):
        self.calls.append(job)
        key = json.dumps(job.plugins, sort_keys=True)
        rng = random.Random(int(hashlib.sha1(f"{self.salt}|{job.seed}|{key}".encode()).hexdigest()[:12], 16))
        bpb = self.true(job.plugins) + rng.gauss(0.0, self.noise)
        return {"status": "complete", "val_bpb": bpb, "steps": 100, "artifact_bytes": 1_000_000}


def run(d, world, max_runs, storage=None, registry=REG):
    st = StackTuneStrategy(d, storage=storage or optuna.storages.InMemoryStorage(), runner=world, registry=registry,
                           max_runs=max_runs, say=lambda m: None)
    return st, st.run()


def bowl(best, low, high, depth, miss=0.0, steep=0.02):
    """An effect worth ``depth`` at ``best``, rising by ``steep`` x (distance / the param's range)² (``miss``:
    an extra cost for any value but ``best``)."""
    def f(v):
        return depth + steep * ((v - best) / (high - low)) ** 2 + (miss if abs(v - best) > 1e-9 else 0.0)
    return f


def kept_races_won_on_fresh_seeds(decisions):
    for race in (x for x in decisions if x.phase == "race" and x.kept):
        assert race.delta < -min(RACE_Z.values()) * race.se  # a replacement won on fresh repeats
        yield race


def test_the_tune_phase_never_ends_worse_than_the_stack_it_started_from():
    # every default is the best value; moving a param costs 0.0003 and up, less than the noise, so many
    # proposals beat the stack on their single run by luck: the stack must stay unless beaten on repeats
    f_tidal, f_cap = bowl(0.382, 0.05, 0.7, -0.02, 0.0003), bowl(15.0, 5, 50, -0.01, 0.0003)
    f_rope = bowl(5000.0, 1000, 20000, -0.005, 0.0003)
    effects = {"tidal": lambda p, on: f_tidal(p["warmup_frac"]), "softcap": lambda p, on: f_cap(p["value"]),
               "rope_base": lambda p, on: f_rope(p["base"]),
               "lr": lambda p, on: -0.008 + 0.0003 * (abs(p["matrix_lr"] - 0.11) > 1e-9)
               + (p["muon_momentum"] - 0.95) ** 2}
    lucky_proposals = 0
    for seed in range(4):
        world = World(effects, noise=0.001, salt=seed)
        d = make_def(f"tune{seed}", mode="ablate", plugins={"tidal": {}, "softcap": {}, "rope_base": {}, "lr": {}},
                     fixed={"cosine": {}}, seed=seed)
        _, res = run(d, world, max_runs=36)
        assert set(res.stack) == {"tidal", "softcap", "rope_base", "lr"}
        assert world.true(res.plugins) <= world.true(res.stack) + 1e-12
        tune = [x for x in res.decisions if x.phase in ("sweep", "refine")]
        assert len(tune) >= 8  # the tune phase did run: every param swept
        lucky_proposals += sum(1 for x in tune if x.delta is not None and x.delta < 0)
        list(kept_races_won_on_fresh_seeds(res.decisions))
    assert lucky_proposals > 0  # the trap was there: single runs that looked better than the stack


def test_a_stack_that_the_tune_phase_can_improve_is_improved_on_repeats():
    f_cap = bowl(24.0, 5, 50, -0.01, steep=0.12)  # the default 15 is 0.0048 worse than the best, 24
    effects = {"softcap": lambda p, on: f_cap(p["value"])}
    world = World(effects, noise=0.0005)
    d = make_def("improve", mode="ablate", plugins={"softcap": {}}, fixed={"cosine": {}}, seed=1)
    _, res = run(d, world, max_runs=30)
    assert res.stack["softcap"] == {}  # stacked at its default
    assert world.true(res.plugins) < world.true(res.stack) - 0.002
    assert list(kept_races_won_on_fresh_seeds(res.decisions))


def test_a_technique_whose_default_hurts_joins_the_stack_at_a_value_that_helps():
    # softcap's default (15) costs +0.006 where its best value (40) gains 0.012; z_loss hurts at every value;
    # tidal and parallel help at their defaults. A plan that only switches defaults on drops softcap.
    f_cap = bowl(40.0, 5, 50, -0.012, steep=0.06)
    effects = {"softcap": lambda p, on: f_cap(p["value"]), "tidal": const(-0.02), "parallel": const(-0.015),
               "z_loss": lambda p, on: 0.004 + 0.1 * p["coef"]}
    assert f_cap(15.0) > 0.005 and f_cap(40.0) < -0.01
    for seed in range(3):
        order = list(effects)
        random.Random(seed).shuffle(order)
        world = World(effects, noise=0.001, salt=seed)
        d = make_def(f"hurt{seed}", mode="ablate", plugins={n: {} for n in order}, fixed={"cosine": {}}, seed=seed)
        _, res = run(d, world, max_runs=30)
        first = next(x for x in res.decisions if x.change == "+softcap")
        assert first.delta > 0 and not first.kept  # it lost at its default
        assert "softcap" in res.plugins, (seed, [(x.phase, x.change, x.delta, x.kept) for x in res.decisions])
        assert f_cap(res.plugins["softcap"]["value"]) < -0.004  # at a value that helps
        assert world.true(res.plugins) < world.true({n: p for n, p in res.plugins.items() if n != "softcap"}) - 0.004
        assert {"tidal", "parallel"} <= set(res.plugins) and "z_loss" not in res.plugins


def test_it_spends_its_budget_while_anything_is_undecided_and_says_why_it_stopped():
    f_cap, f_tidal = bowl(40.0, 5, 50, -0.012, steep=0.06), bowl(0.6, 0.05, 0.7, -0.02, steep=0.05)
    f_rope = bowl(15000.0, 1000, 20000, -0.006, steep=0.03)
    effects = {"softcap": lambda p, on: f_cap(p["value"]), "tidal": lambda p, on: f_tidal(p["warmup_frac"]),
               "rope_base": lambda p, on: f_rope(p["base"]), "parallel": const(-0.015)}
    world = World(effects, noise=0.001)
    d = make_def("spend", mode="ablate", plugins={n: {} for n in effects}, fixed={"cosine": {}})
    _, res = run(d, world, max_runs=16)
    assert res.runs == 16 and res.stopped == "runs"  # values were still undecided: the budget is spent
    flat = {"tidal": const(-0.02), "parallel": const(-0.015)}  # nothing to tune, nothing close
    world = World(flat, noise=0.001)
    d = make_def("flat", mode="ablate", plugins={"tidal": {}, "parallel": {}, "gqa": {}}, fixed={"cosine": {}})
    _, res = run(d, world, max_runs=200)
    assert res.runs < 200 and res.stopped.startswith("done: nothing left expected to gain")
    assert "close call" in res.stopped and "params swept" in res.stopped


def test_a_probe_runs_each_point_once_and_never_the_defaults_it_lost_at():
    # sandwich_norm has one bool: a probe has one point to try (mlp=True), and after it none; it hurts at both
    effects = {"tidal": const(-0.02), "sandwich_norm": lambda p, on: 0.004 if p["mlp"] else 0.006}
    world = World(effects, noise=0.0005)
    d = make_def("probe_once", mode="ablate", plugins={"tidal": {}, "sandwich_norm": {}}, fixed={"cosine": {}})
    _, res = run(d, world, max_runs=40)
    probes = [x.change for x in res.decisions if x.phase == "probe"]
    assert probes == ["sandwich_norm(mlp=True)"], probes
    assert "sandwich_norm" not in res.plugins


def test_values_are_spread_over_the_range_away_from_those_tried():
    assert spread([0.5], 2) == pytest.approx([1 / 6, 5 / 6])
    assert spread([0.1], 2) == pytest.approx([0.7, 0.4])
    assert spread([], 1) == [0.5]


PLUGIN_FILE = '''
from golfplan.core.technique import Technique


class Alpha(Technique):
    name = "t_alpha"
    summary = "a test plugin that conflicts with parallel"
    conflicts = ("parallel",)


class Beta(Technique):
    name = "t_beta"
    summary = "a test plugin that requires gqa"
    requires = ("gqa",)
'''


def test_every_run_respects_slots_conflicts_and_requirements(tmp_path):
    f = tmp_path / "test_plugins.py"
    f.write_text(textwrap.dedent(PLUGIN_FILE))
    reg = Registry(plugin_paths=[str(f)])
    helpful = ["tidal", "breathing", "whale_dive", "silu2", "gelu2", "parallel", "sandwich_norm", "t_alpha", "t_beta"]
    effects = {n: const(-0.004 * (i + 1)) for i, n in enumerate(helpful)}
    effects["gqa"] = lambda p, on: 0.001
    world = World(effects, registry=reg)
    d = make_def("rules", mode="ablate", plugins={n: {} for n in helpful + ["gqa"]}, fixed={"cosine": {}},
                 plugin_path=[str(f)])
    _, res = run(d, world, max_runs=40, registry=reg)
    assert world.calls
    for job in world.calls:
        assert combination_problems(reg.classes(job.plugins)) == [], job.plugins
    assert any("t_beta" in j.plugins for j in world.calls)  # tried, with its requirement
    assert any("t_alpha" in j.plugins for j in world.calls) and any("parallel" in j.plugins for j in world.calls)
    chosen = set(res.plugins)
    assert combination_problems(reg.classes(chosen)) == []
    # the best of each slot: whale_dive (lr_schedule), gelu2 (activation); t_alpha beats parallel; sandwich_norm
    # (block) is free once parallel is out; t_beta is worth its gqa
    assert chosen == {"whale_dive", "gelu2", "sandwich_norm", "t_alpha", "t_beta", "gqa"}


@pytest.mark.parametrize("max_runs", [1, 6, 15, 30])
def test_it_stops_at_its_run_budget(max_runs):
    names = ["tidal", "parallel", "gqa", "z_loss", "silu2", "gelu2", "softcap", "rope_base", "untied", "lr"]
    effects = {n: const((-1) ** i * 0.003 * (i + 1)) for i, n in enumerate(names)}
    world = World(effects)
    d = make_def(f"cap{max_runs}", mode="ablate", plugins={n: {} for n in names}, fixed={"cosine": {}})
    _, res = run(d, world, max_runs=max_runs)
    assert len(world.calls) == res.runs <= max_runs
    if max_runs < 12:  # fewer than a run per candidate: cut off in the stacking
        assert res.stopped == "runs" and len(world.calls) == max_runs
    assert world.true(res.plugins) <= world.true({"cosine": {}})


def const(value):
    return lambda p, on: value


def seed_like_world():
    """Clear effects with the seed log's kinds of interaction: silu2 helps only with parallel, qk_gain helps
    only without a U-Net split, parallel is worth less on tidal, breathing nothing with parallel; z_loss and
    label_smoothing hurt."""
    eff = const
    return {
        "tidal": eff(-0.02), "parallel": lambda p, on: -0.025 + (0.008 if "tidal" in on else 0.0),
        "silu2": lambda p, on: -0.0035 if "parallel" in on else 0.0005, "gelu2": eff(0.003),
        "unet": eff(-0.013), "qk_gain": lambda p, on: 0.003 if "unet" in on else -0.003,
        "softcap": eff(-0.011), "gqa": eff(-0.004), "head_diversity": eff(-0.0025),
        "z_loss": eff(0.017), "label_smoothing": eff(0.05),
        "breathing": lambda p, on: 0.003 if "parallel" in on else -0.015,
    }


def brute_force(world, names):
    best = None
    for k in range(len(names) + 1):
        for combo in itertools.combinations(names, k):
            conf = {n: {} for n in combo}
            if combination_problems(REG.classes(list(conf) + ([] if any(
                    "lr_schedule" in REG.get(n).slots() for n in combo) else ["cosine"]))):
                continue
            if not any("lr_schedule" in REG.get(n).slots() for n in combo):
                conf["cosine"] = {}
            v = world.true(conf)
            if best is None or v < best[0]:
                best = (v, set(conf))
    return best


def test_it_finds_the_clear_optimum_of_a_world_with_interactions():
    effects = seed_like_world()
    names = list(effects)
    optimum, best_set = brute_force(World(effects), names)
    assert best_set == {"tidal", "parallel", "silu2", "unet", "softcap", "gqa", "head_diversity"}
    for seed in range(3):
        order = names[:]
        random.Random(seed).shuffle(order)
        world = World(effects, noise=0.0008, salt=seed)
        d = make_def(f"clear{seed}", mode="ablate", plugins={n: {} for n in order}, fixed={"cosine": {}}, seed=seed)
        st, res = run(d, world, max_runs=40)  # 12 tests, then re-tests among the sweeps of the stack's params
        assert set(res.plugins) == best_set, (seed, [(x.change, x.delta, x.kept) for x in res.decisions])
        assert world.true(res.plugins) - optimum < 1e-9
        rows, base = collect(st.planner.study)  # one ordinary study: rows, a baseline, verdicts
        assert base is not None and base.plugins == {"cosine": {}} and len(rows) >= len(names)
        assert Chosen.of(st.planner.study).key == st.planner.key_of(res.plugins)  # the report's best


class Killed(GolfplanError):
    """Stands for the planner being killed mid-run (a GolfplanError is not caught as a failed run)."""


def test_a_plan_killed_midway_resumes_where_it_was_and_ends_as_an_uninterrupted_one():
    effects = seed_like_world()
    names = list(effects)
    d = make_def("resume", mode="ablate", plugins={n: {} for n in names}, fixed={"cosine": {}})
    storage = optuna.storages.InMemoryStorage()  # one storage, two sessions: the second resumes the first
    first = World(effects)

    def dies_at_the_21st_run(job):
        if len(first.calls) == 20:
            raise Killed("killed")
        return first(job)

    with pytest.raises(Killed):
        run(d, dies_at_the_21st_run, max_runs=34, storage=storage)
    again = World(effects)
    _, resumed = run(d, again, max_runs=34, storage=storage)
    whole = World(effects)
    _, fresh = run(d, whole, max_runs=34)
    assert len(first.calls) == 20 and len(again.calls) == fresh.runs - 20  # nothing finished ran twice
    assert [j.plugins for j in first.calls + again.calls] == [j.plugins for j in whole.calls]
    assert resumed.plugins == fresh.plugins and resumed.runs == fresh.runs
    assert [(x.change, x.kept) for x in resumed.decisions] == [(x.change, x.kept) for x in fresh.decisions]


def test_expected_improvement():
    assert expected_improvement(-0.01, 0.0) == pytest.approx(0.01)
    assert expected_improvement(0.01, 0.0) == 0.0
    assert expected_improvement(0.0, 0.001) == pytest.approx(0.001 / (2 * 3.141592653589793) ** 0.5)
    assert expected_improvement(0.002, 0.001) < expected_improvement(0.0, 0.001) < expected_improvement(-0.002, 0.001)


def test_screening_runs_each_candidate_once_and_settles_close_calls_by_retests():
    # narrow effects (under a noise sd): screening gives each candidate one run, however much budget is left;
    # the close calls among them are re-tested afterwards, on the stack as it is by then
    narrow = const(-0.001)
    effects = {"tidal": const(-0.02), "parallel": narrow, "rope_base": narrow, "gqa": narrow, "qk_gain": narrow,
               "softcap": const(0.01)}
    world = World(effects, noise=0.001)
    d = make_def("screen", mode="ablate", plugins={n: {} for n in effects}, fixed={"cosine": {}})
    log = []
    st = StackTuneStrategy(d, storage=optuna.storages.InMemoryStorage(), runner=world, registry=REG, max_runs=None,
                           say=lambda m: log.append((m, st.used)))
    st.run()
    screened = [used for m, used in log if m.startswith("  stack +")]
    assert screened == list(range(2, 2 + len(effects)))  # the baseline, then one run a candidate
    assert any(x.phase == "retest" for x in st.decisions)
