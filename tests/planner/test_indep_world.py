"""The independent simulated world (benchmarks/indep_world.py): deterministic, its optimum really
the best, shifted optima inside the declared ranges, the in-sample world true to the log, the
crash rate as set, refusals for what the registry refuses."""

from __future__ import annotations

import itertools
import math
import random
from types import SimpleNamespace

import pytest

from golfplan.core.modules import import_file
from golfplan.registry import Registry, clash

from tests.planner.conftest import REPO

indep_world = import_file(REPO / "benchmarks" / "indep_world.py", "golfplan_benchmarks", "benchmark")

# a small world whose on/off sets can all be enumerated (two slot groups, ordered params, an int)
SMALL = ["tidal", "breathing", "cosine_2cycle", "canopy", "thermal_vent", "silu2", "gelu2", "parallel",
         "head_pruning", "unet", "softcap", "token_dropout", "z_loss", "logit_penalty", "sandwich_norm"]


@pytest.fixture(scope="module")
def registry():
    return Registry()


def _random_config(rng: random.Random, registry: Registry, names: list[str]) -> dict:
    chosen: list = []
    for n in rng.sample(names, rng.randint(0, len(names))):
        cls = registry.get(n)
        if not any(clash(cls, c) for c in chosen):
            chosen.append(cls)
    config = {}
    for cls in chosen:
        for _ in range(20):
            params = {}
            for k, p in cls.params.items():
                if p.kind == "float":
                    params[k] = (math.exp(rng.uniform(math.log(p.low), math.log(p.high))) if p.log
                                 else rng.uniform(p.low, p.high))
                elif p.kind == "int":
                    params[k] = rng.randint(p.low, p.high)
                else:
                    params[k] = rng.choice([False, True] if p.kind == "bool" else list(p.choices))
            try:
                cls(**params)
                config[cls.name] = params
                break
            except Exception:
                continue
    return config


def test_deterministic(registry):
    a, b = indep_world.make_world(3, registry=registry), indep_world.make_world(3, registry=registry)
    config = {"tidal": {"warmup_frac": 0.2}, "parallel": {}, "softcap": {"value": 22.0}}
    assert a.true_bpb(config) == b.true_bpb(config)
    job = SimpleNamespace(plugins=config, seed=7)
    assert a(job) == b(job) and a.trained == b.trained == 1
    assert a(SimpleNamespace(plugins=config, seed=8))["val_bpb"] != a(job)["val_bpb"]  # seeds differ
    assert indep_world.make_world(4, registry=registry).true_bpb(config) != a.true_bpb(config)
    # a candidate list keeps each kept technique's draws
    sub = indep_world.make_world(3, candidates=["tidal", "parallel"], registry=registry)
    assert sub.techs["tidal"].curves["warmup_frac"].opt == a.techs["tidal"].curves["warmup_frac"].opt


def test_optimum_exact_on_a_small_world(registry):
    for seed in range(3):
        w = indep_world.make_world(seed, candidates=SMALL, registry=registry)
        value, config = w.optimum()
        assert value == pytest.approx(w.true_bpb(config), abs=1e-12)
        classes = [registry.get(n) for n in SMALL]
        brute = math.inf
        for k in range(len(SMALL) + 1):
            for combo in itertools.combinations(classes, k):
                if any(clash(x, y) for x, y in itertools.combinations(combo, 2)):
                    continue
                brute = min(brute, w.true_bpb({c.name: w.techs[c.name].optimum() for c in combo}))
        assert value == pytest.approx(brute, abs=1e-12)


def test_optimum_beats_baseline_and_random_configs(registry):
    rng = random.Random(0)
    w = indep_world.make_world(1, registry=registry)
    value, config = w.optimum()
    assert value < w.baseline - 0.05 and value <= w.true_bpb({n: {} for n in config})
    names = sorted(w.techs)
    for _ in range(300):
        assert w.true_bpb(_random_config(rng, registry, names)) >= value - 1e-12
    # nor does moving one param of the optimum, anywhere in its range, help
    for n, params in config.items():
        for k in params:
            other = _random_config(random.Random(f"{n}{k}"), registry, [n]).get(n)
            if other:
                assert w.true_bpb({**config, n: {**params, k: other[k]}}) >= value - 1e-12


def test_shifted_optima_inside_ranges_and_moved(registry):
    moved = total = 0
    for seed in range(4):
        w = indep_world.make_world(seed, registry=registry)
        assert sum(t.flipped for t in w.techs.values()) >= 1
        for n, t in w.techs.items():
            cls = registry.get(n)
            cls(**t.optimum())  # validates every range, type and order
            for k, c in t.curves.items():
                if c.kind in ("float", "int"):
                    total += 1
                    moved += abs(c.unit(c.opt) - c.unit(c.default)) >= indep_world.MIN_SHIFT
                    assert c.cliff is None or not (c.ruins(c.opt) or c.ruins(c.default))
    assert moved == total > 50


def test_in_sample_world_reproduces_the_log(registry):
    w = indep_world.make_world(2, shifted=False, registry=registry)
    for n, logged in indep_world.LOGGED.items():
        if n in w.techs:
            assert w.true_bpb({n: {}}) == pytest.approx(indep_world.BASELINE_BPB + logged, abs=1e-12)
            assert w.techs[n].optimum() == registry.get(n).completed({})
    assert not any(t.flipped for t in w.techs.values())
    value, config = w.optimum()
    assert value == pytest.approx(w.defaults_optimum()[0], abs=1e-12)


def test_crash_rate_noise_and_refusals(registry):
    w = indep_world.make_world(5, candidates=["tidal", "parallel", "breathing"], crash_rate=0.05, registry=registry)
    runs = [w(SimpleNamespace(plugins={"tidal": {}, "parallel": {}}, seed=s)) for s in range(2000)]
    crashed = [r for r in runs if r["status"] == "failed"]
    assert all(r["failure"] == "crash" for r in crashed) and 0.035 < len(crashed) / len(runs) < 0.065
    bpbs = [r["val_bpb"] for r in runs if r["status"] == "complete"]
    truth = w.true_bpb({"tidal": {}, "parallel": {}})
    mad = sorted(abs(b - truth) for b in bpbs)[len(bpbs) // 2]
    assert 0.0003 < mad < 0.0015  # the median deviation of a t3 of scale 0.0006-0.0009
    refused = w(SimpleNamespace(plugins={"tidal": {}, "breathing": {}}, seed=0))
    assert refused["status"] == "refused" and "lr_schedule" in refused["reason"]
    assert w(SimpleNamespace(plugins={"tidal": {"warmup_frac": 5.0}}, seed=0))["status"] == "refused"
    assert w.trained == 2000


def test_diverging_regions_fail_as_nan(registry):
    w = indep_world.make_world(2, registry=registry)
    n, k, c = next((n, k, c) for n, t in sorted(w.techs.items()) for k, c in t.curves.items() if c.cliff)
    u = sum(c.cliff) / 2
    bad = c.value(u)
    if not c.ruins(bad):  # an int strip may hold no integer
        pytest.skip("the strip holds no value of this int param")
    out = w(SimpleNamespace(plugins={n: {k: bad}}, seed=0))
    assert out["status"] == "failed" and out["failure"] == "nan" and math.isinf(w.true_bpb({n: {k: bad}}))
