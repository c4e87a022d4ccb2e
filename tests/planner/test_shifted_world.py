"""The planner benchmark's diagnostics (benchmarks/planner_efficiency.py, benchmarks/shifted_world.py):
``--noise-scale 0`` makes every run land on its world's noise-free BPB, and the value floors of a
held-out world fall from its defaults' distance to zero as its costliest params are set at their best."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from golfplan.core.modules import import_file
from golfplan.registry import Registry

from tests.planner.conftest import REPO

efficiency = import_file(REPO / "benchmarks" / "planner_efficiency.py", "golfplan_benchmarks", "benchmark")
import seed_sim  # noqa: E402 (the benchmark put benchmarks/ on the path)
import shifted_world  # noqa: E402


@pytest.fixture(scope="module")
def registry():
    return Registry()


@pytest.mark.parametrize("kind", ["shifted", "indep", "insample"])
def test_without_noise_every_run_lands_on_the_world_s_truth(registry, kind, monkeypatch):
    # the optimum (seconds to find) is not what is tested here
    monkeypatch.setattr(shifted_world.ShiftedWorld, "optimum", lambda self: (0.0, {}))
    monkeypatch.setattr(seed_sim, "optimum", lambda **kw: (0.0, {}))
    plugins = seed_sim.canonical({"cosine": {}, "softcap": {"value": 30.0}, "parallel": {}}, registry)
    noisy, exact = efficiency.make_world(kind, 2, registry), efficiency.make_world(kind, 2, registry, noise_scale=0.0)
    got = {"noisy": [], "exact": []}
    for seed in range(12):
        for label, world in (("noisy", noisy), ("exact", exact)):
            out = world.runner(SimpleNamespace(plugins=plugins, seed=seed, overrides={}))
            if out["status"] == "complete":
                got[label].append(out["val_bpb"] - world.true_bpb(plugins))
    assert got["exact"] and all(abs(d) < 1e-12 for d in got["exact"])
    assert max(abs(d) for d in got["noisy"]) > 1e-4  # the same world with its noise


def test_value_floors_fall_to_zero_as_the_costliest_params_are_set_at_their_best(registry):
    world = shifted_world.ShiftedWorld(0, registry)
    off, floors = shifted_world.value_floors(world, [0, 1, 3, 5, 10, 40])
    assert off >= 5
    values = [floors[n] for n in (0, 1, 3, 5, 10, 40)]
    assert values[0] > 0.01 and values == sorted(values, reverse=True)
    assert abs(values[-1]) < 1e-9  # every param at its best: the optimum itself
    best, conf = world.optimum()
    at_defaults = {n: registry.get(n)().values if n in world.bowls else p for n, p in conf.items()}
    assert values[0] == pytest.approx(world.true_bpb(at_defaults) - best)
