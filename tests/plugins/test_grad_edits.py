"""The gradient-edit plugins: canopy, mycorrhizal, thermal_vent."""

from __future__ import annotations

import pytest
import torch

from golfplan.core.errors import PluginError
from golfplan.core.model.gpt import GPT
from golfplan.core.state import Clock
from golfplan.plugins.canopy import Canopy
from golfplan.plugins.mycorrhizal import Mycorrhizal
from golfplan.plugins.thermal_vent import ThermalVent
from tests.conftest import tiny_config


def model_with_grads(num_layers: int = 4, seed: int = 0) -> GPT:
    """A tiny GPT whose every parameter has a distinct random gradient."""
    torch.manual_seed(seed)
    model = GPT(tiny_config(num_layers=num_layers))
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    return model


def grads(model: GPT) -> dict[str, torch.Tensor]:
    return {k: p.grad.clone() for k, p in model.named_parameters()}


def block_of(name: str) -> int | None:
    return int(name.split(".")[1]) if name.startswith("blocks.") else None


# ---- canopy ------------------------------------------------------------------------


def test_canopy_scales_each_layers_update_by_its_depth_factor():
    model = model_with_grads(num_layers=4)
    start = {k: p.detach().clone() for k, p in model.named_parameters()}
    canopy = Canopy()
    assert (canopy.p.bottom, canopy.p.top) == (0.3, 1.0)
    canopy.after_backward(model=model, clock=Clock(step=7, iterations=10))
    with torch.no_grad():  # an optimizer step: every parameter moves by its gradient
        for p in model.parameters():
            p.sub_(p.grad)
        canopy.on_step(model=model, optimizers=[], clock=Clock(step=7, iterations=10))
    expected = {0: 0.3, 1: 0.3 + 0.7 / 3, 2: 0.3 + 1.4 / 3, 3: 1.0}
    for name, p in model.named_parameters():
        i = block_of(name)
        factor = 1.0 if i is None else expected[i]  # embedding and skip weights move fully
        assert torch.allclose(p - start[name], -factor * p.grad, rtol=1e-5, atol=1e-6), name


def test_canopy_params_and_many_layers():
    canopy = Canopy(bottom=0.5, top=1.5)
    assert canopy.factors(9) == pytest.approx([0.5 + i / 8 for i in range(9)])
    assert Canopy().factors(1) == [1.0]


def test_canopy_changes_training_unlike_gradient_scaling(dataset):
    from tests.conftest import run_tiny

    base = run_tiny(iterations=8)
    lit = run_tiny(plugins={"canopy": {"bottom": 0.1}}, iterations=8)
    assert lit.status == "complete" and abs(lit.last_train_loss - base.last_train_loss) > 1e-3


# ---- mycorrhizal -------------------------------------------------------------------


def param_names_in_block(model: GPT, i: int) -> list[str]:
    return [n for n, _ in model.blocks[i].named_parameters()]


def test_mycorrhizal_blends_layers_three_apart():
    model = model_with_grads(num_layers=4)
    before = grads(model)
    myco = Mycorrhizal()
    assert (myco.p.blend, myco.p.distance) == (0.1, 3)
    myco.after_backward(model=model, clock=Clock())
    after = grads(model)
    for n in param_names_in_block(model, 0):
        g0, g3 = before[f"blocks.0.{n}"], before[f"blocks.3.{n}"]
        assert torch.allclose(after[f"blocks.0.{n}"], 0.9 * g0 + 0.1 * g3, rtol=1e-5, atol=1e-6), n
        assert torch.allclose(after[f"blocks.3.{n}"], 0.9 * g3 + 0.1 * g0, rtol=1e-5, atol=1e-6), n
    for name, g in after.items():  # layers 1 and 2 have no partner 3 away; non-block params untouched
        if block_of(name) not in (0, 3):
            assert torch.equal(g, before[name]), name


def test_mycorrhizal_middle_layer_takes_the_mean_of_both_partners():
    model = model_with_grads(num_layers=7)
    before = grads(model)
    Mycorrhizal(blend=0.3).after_backward(model=model, clock=Clock())
    after = grads(model)
    for n in param_names_in_block(model, 3):
        g = {i: before[f"blocks.{i}.{n}"] for i in range(7)}
        expect = {0: 0.7 * g[0] + 0.3 * g[3], 3: 0.7 * g[3] + 0.3 * (g[0] + g[6]) / 2, 6: 0.7 * g[6] + 0.3 * g[3],
                  1: 0.7 * g[1] + 0.3 * g[4], 4: 0.7 * g[4] + 0.3 * g[1], 2: 0.7 * g[2] + 0.3 * g[5]}
        for i, e in expect.items():
            assert torch.allclose(after[f"blocks.{i}.{n}"], e, rtol=1e-5, atol=1e-6), (i, n)


# ---- thermal vent ------------------------------------------------------------------


def boosted_layers(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor], num_layers: int) -> dict[int, float]:
    """{layer: factor} for the layers whose grads all changed by one common factor; asserts the rest are unchanged."""
    out: dict[int, float] = {}
    for i in range(num_layers):
        names = [n for n in before if block_of(n) == i]
        if all(torch.equal(before[n], after[n]) for n in names):
            continue
        ratios = [(after[n] / before[n]).flatten() for n in names]
        factor = ratios[0][0].item()
        assert all(torch.allclose(r, torch.full_like(r, factor), rtol=1e-5) for r in ratios), i
        out[i] = factor
    for n in before:
        if block_of(n) is None:
            assert torch.equal(before[n], after[n]), n
    return out


def test_thermal_vent_boosts_exactly_two_layers_by_two_to_three():
    vent = ThermalVent()
    assert (vent.p.layers, vent.p.boost_min, vent.p.boost_max) == (2, 2.0, 3.0)
    chosen = set()
    for s in range(20):
        model = model_with_grads(num_layers=9, seed=s)
        before = grads(model)
        vent.after_backward(model=model, clock=Clock(step=s, iterations=20, seed=1337))
        boosts = boosted_layers(before, grads(model), 9)
        assert len(boosts) == 2, boosts
        assert all(2.0 <= f <= 3.0 for f in boosts.values()), boosts
        chosen.add(tuple(sorted(boosts)))
    assert len(chosen) > 5  # the layers are drawn afresh each step


def test_thermal_vent_is_deterministic_per_seed_and_step():
    def run(step: int, seed: int) -> dict[int, float]:
        model = model_with_grads(num_layers=9)
        before = grads(model)
        ThermalVent().after_backward(model=model, clock=Clock(step=step, iterations=10, seed=seed))
        return boosted_layers(before, grads(model), 9)

    assert run(3, 1) == run(3, 1)  # same layers, same factors
    assert run(3, 1) != run(4, 1)  # another step draws anew
    assert run(3, 1) != run(3, 2)  # another run seed draws anew


def test_thermal_vent_params():
    model = model_with_grads(num_layers=4)
    before = grads(model)
    ThermalVent(layers=3, boost_min=5.0, boost_max=5.0).after_backward(model=model, clock=Clock(step=1))
    boosts = boosted_layers(before, grads(model), 4)
    assert len(boosts) == 3 and all(f == pytest.approx(5.0) for f in boosts.values())
    with pytest.raises(PluginError, match="boost_min"):
        ThermalVent(boost_min=3.0, boost_max=2.0)
