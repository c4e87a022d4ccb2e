"""The weight-edit plugins: controlled_burn, weight_perturbation, mutation_decay, synaptic_scaling, metamorphosis."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from golfplan.core.hooks import build_model, resolve
from golfplan.core.model.gpt import GPT
from golfplan.core.train.optim import split_params
from golfplan.core.state import Clock
from golfplan.plugins.controlled_burn import ControlledBurn
from golfplan.plugins.metamorphosis import Metamorphosis, dropout_rate
from golfplan.plugins.weight_noise import MutationDecay, WeightPerturbation
from golfplan.plugins.synaptic_scaling import SynapticScaling
from tests.conftest import tiny_config


def random_model(seed: int = 0) -> GPT:
    """A tiny GPT whose every matrix (zero-initialised projections included) holds distinct random values."""
    torch.manual_seed(seed)
    model = GPT(tiny_config())
    with torch.no_grad():
        for w in split_params(model)["matrix"]:
            w.normal_(0.0, 0.05)
    return model


def snapshot(model: GPT) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def step(tech, model: GPT, clock: Clock) -> None:
    with torch.no_grad():
        tech.on_step(model=model, optimizers=[], clock=clock)


def matrix_names(model: GPT) -> list[str]:
    ids = {id(p) for p in split_params(model)["matrix"]}
    return [n for n, p in model.named_parameters() if id(p) in ids]


# ---- controlled burn ---------------------------------------------------------------


def test_controlled_burn_zeroes_the_smallest_fraction_of_each_matrix_at_its_steps():
    model = random_model()
    burn = ControlledBurn()
    assert (burn.p.fraction, burn.p.every) == (0.05, 50 / 240)  # the seed's every 50 of its 240 steps
    names = matrix_names(model)
    assert len(names) == 4 * 6  # c_q, c_k, c_v, proj, fc, mlp.proj per block
    before = snapshot(model)
    step(burn, model, Clock(step=49, iterations=240))  # the 50th step of 240
    after = snapshot(model)
    for name in names:
        w0, w1 = before[name], after[name]
        k = round(0.05 * w0.numel())
        zeroed = (w1 == 0) & (w0 != 0)
        assert int(zeroed.sum()) == k, name
        assert torch.equal(w1[~zeroed], w0[~zeroed])  # nothing else moves
        assert w0[zeroed].abs().max() <= w0[~zeroed].abs().min()  # the smallest ones
    for name in set(before) - set(names):  # embedding, scales, mixes, skip weights untouched
        assert torch.equal(before[name], after[name]), name


@pytest.mark.parametrize("s", [0, 1, 25, 48])
def test_controlled_burn_does_nothing_before_its_first_burn(s):
    model = random_model()
    before = snapshot(model)
    step(ControlledBurn(), model, Clock(step=s, iterations=240))
    assert all(torch.equal(before[k], v) for k, v in snapshot(model).items())


def burn_steps(tech, monkeypatch, clocks) -> list[int]:
    """The steps (counted from 1) after which ``tech`` burned, over a run of ``clocks``."""
    import golfplan.plugins.controlled_burn as mod

    fired: list[int] = []
    monkeypatch.setattr(mod, "burn_", lambda w, fraction: fired.append(clock.step + 1))
    model = random_model()
    for clock in clocks:
        step(tech, model, clock)
    return sorted(set(fired))


@pytest.mark.parametrize("iterations,expected", [
    (240, [50, 100, 150, 200]),  # the seed's run: every 50 steps, exactly
    (40, [9, 17, 25, 34]),  # the cpu profile: the first steps that reach 5/24, 10/24, 15/24, 20/24 of the run
    (4800, [1000, 2000, 3000, 4000]),  # a long run: still four burns, at the same shares
])
def test_controlled_burn_burns_at_the_same_shares_of_the_run_on_any_horizon(monkeypatch, iterations, expected):
    clocks = [Clock(step=s, iterations=iterations) for s in range(iterations)]
    assert burn_steps(ControlledBurn(), monkeypatch, clocks) == expected


def test_controlled_burn_on_a_wallclock_capped_run_burns_where_a_step_capped_one_does(monkeypatch):
    # 240 steps in 600 s (the seed's run: 2.5 s a step), iterations only an upper bound
    clocks = [Clock(step=s, iterations=20_000, elapsed_s=2.5 * s, wallclock_s=600.0) for s in range(240)]
    assert burn_steps(ControlledBurn(), monkeypatch, clocks) == [50, 100, 150, 200]
    # a slower machine, 120 steps in the same 600 s: the same shares of its wallclock
    clocks = [Clock(step=s, iterations=20_000, elapsed_s=5.0 * s, wallclock_s=600.0) for s in range(120)]
    assert burn_steps(ControlledBurn(), monkeypatch, clocks) == [25, 50, 75, 100]


def test_controlled_burn_fraction_and_every_params():
    model = random_model()
    burn = ControlledBurn(fraction=0.2, every=0.1)
    step(burn, model, Clock(step=9, iterations=100))
    w = model.blocks[2].mlp.fc.weight
    assert int((w == 0).sum()) == round(0.2 * w.numel())
    step(burn, model, Clock(step=14, iterations=100))
    assert int((w == 0).sum()) == round(0.2 * w.numel())


# ---- weight perturbation and mutation decay ------------------------------------------


def noise_stats(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor], names: list[str]) -> tuple[float, float]:
    delta = torch.cat([(after[n] - before[n]).flatten().double() for n in names])
    return delta.mean().item(), delta.std().item()


def test_weight_perturbation_adds_noise_of_the_stated_scale_every_n_steps():
    model = random_model()
    names = matrix_names(model)
    pert = WeightPerturbation(scale=1e-2)
    assert (WeightPerturbation().p.scale, WeightPerturbation().p.every) == (1e-4, 100 / 240)  # the seed's 100 of 240
    before = snapshot(model)
    step(pert, model, Clock(step=98, iterations=240))
    assert all(torch.equal(before[k], v) for k, v in snapshot(model).items())  # not a perturbation step
    step(pert, model, Clock(step=99, iterations=240))
    after = snapshot(model)
    mean, std = noise_stats(before, after, names)
    assert std == pytest.approx(1e-2, rel=0.03)
    assert abs(mean) < 3e-4
    for n in names:  # every matrix gets noise of that scale
        assert (after[n] - before[n]).std().item() == pytest.approx(1e-2, rel=0.2), n
    for n in set(before) - set(names):
        assert torch.equal(before[n], after[n]), n
    # the same seed and step draw the same noise; another step draws other noise
    twin = random_model()
    step(WeightPerturbation(scale=1e-2), twin, Clock(step=99, iterations=240))
    assert all(torch.equal(after[k], v) for k, v in snapshot(twin).items())
    other = random_model()
    step(WeightPerturbation(scale=1e-2), other, Clock(step=199, iterations=240))
    assert not torch.equal(snapshot(other)[names[0]], after[names[0]])


@pytest.mark.parametrize("iterations,expected", [(240, [100, 200]), (40, [17, 34]), (2400, [1000, 2000])])
def test_weight_perturbation_strikes_twice_a_run_on_any_horizon(monkeypatch, iterations, expected):
    import golfplan.plugins.weight_noise as mod

    struck: list[int] = []
    monkeypatch.setattr(mod, "add_noise_", lambda params, std, seed: struck.append(clock.step + 1))
    pert, model = WeightPerturbation(), random_model()
    for s in range(iterations):
        clock = Clock(step=s, iterations=iterations)
        step(pert, model, clock)
    assert struck == expected


@pytest.mark.parametrize("progress,expected", [(0.0, 1e-3), (0.1, 5e-4), (0.3, 1.25e-4), (1.0, 1e-3 / 1024)])
def test_mutation_decay_noise_decays_exponentially(progress, expected):
    model = random_model()
    names = matrix_names(model)
    mut = MutationDecay()
    assert (mut.p.initial, mut.p.half_life) == (1e-3, 0.1)
    before = snapshot(model)
    step(mut, model, Clock(step=int(progress * 1000), iterations=1000))
    mean, std = noise_stats(before, snapshot(model), names)
    assert std == pytest.approx(expected, rel=0.03)
    assert abs(mean) < 0.05 * expected


def test_mutation_decay_adds_noise_every_step():
    model = random_model()
    mut = MutationDecay(initial=1e-2, half_life=0.5)
    w = model.blocks[0].attn.c_q.weight
    for s in range(5):
        prev = w.detach().clone()
        step(mut, model, Clock(step=s, iterations=10))
        assert (w - prev).std().item() == pytest.approx(1e-2 * 0.5 ** (s / 10 / 0.5), rel=0.1)


# ---- synaptic scaling --------------------------------------------------------------


def test_synaptic_scaling_restores_each_matrix_initial_norm():
    cfg = tiny_config()
    scaling = SynapticScaling()
    torch.manual_seed(0)
    model = build_model(resolve([scaling]), cfg)  # on_model_built records the norms
    names = matrix_names(model)
    params = dict(model.named_parameters())
    init = {n: params[n].detach().norm().item() for n in names}
    nonzero = [n for n in names if init[n] > 0]
    assert sorted(scaling.norms) == sorted(nonzero)
    assert set(names) - set(nonzero) == {n for n in names if n.endswith("proj.weight")}  # zero-initialised
    with torch.no_grad():  # what an optimizer step might do: grow, shrink and rotate the weights
        for i, n in enumerate(names):
            params[n].mul_(0.5 + i / 10).add_(torch.randn_like(params[n]), alpha=0.01)
    moved = snapshot(model)
    step(scaling, model, Clock(step=3, iterations=10))
    for n in nonzero:
        w = params[n].detach()
        assert w.norm().item() == pytest.approx(init[n], rel=1e-5), n
        cos = torch.nn.functional.cosine_similarity(w.flatten(), moved[n].flatten(), dim=0)
        assert cos.item() == pytest.approx(1.0, abs=1e-6)  # direction kept
    for n in set(moved) - set(nonzero):  # zero-init projections and non-matrix params are left alone
        assert torch.equal(params[n].detach(), moved[n]), n


# ---- metamorphosis -----------------------------------------------------------------


@pytest.mark.parametrize("progress,rate", [(0.0, 0.1), (0.25, 0.05), (0.5, 0.0), (0.75, 0.0), (1.0, 0.0)])
def test_metamorphosis_rate_schedule(progress, rate):
    assert (Metamorphosis().p.rate, Metamorphosis().p.end) == (0.1, 0.5)
    assert dropout_rate(torch.tensor(progress), 0.1, 0.5).item() == pytest.approx(rate, abs=1e-7)


def test_metamorphosis_branch_dropout():
    fn = Metamorphosis().on_branch(config=None)
    y = torch.randn(8, 128, 64) + 3.0
    ctx = SimpleNamespace(progress=torch.tensor(0.0))
    out = fn(y, ctx)
    dropped = out == 0
    assert dropped.float().mean().item() == pytest.approx(0.1, abs=0.005)
    assert torch.allclose(out[~dropped], y[~dropped] / 0.9)  # inverted dropout keeps the expectation
    ctx.progress = torch.tensor(0.25)
    assert (fn(y, ctx) == 0).float().mean().item() == pytest.approx(0.05, abs=0.004)
    for p in (0.5, 0.8):
        ctx.progress = torch.tensor(p)
        assert torch.equal(fn(y, ctx), y)  # rate 0: the branch output is unchanged


def test_metamorphosis_applies_to_branches_in_training_only():
    cfg = tiny_config()
    torch.manual_seed(0)
    model = build_model(resolve([Metamorphosis(rate=0.5)]), cfg)
    model.load_state_dict(random_model().state_dict())
    with torch.no_grad():
        model.tok_emb.weight.normal_(0.0, 1.0)  # logits far from uniform, so the branches matter
    x = torch.randint(0, cfg.vocab_size, (2, cfg.train_seq_len))
    with torch.no_grad():
        model.eval()
        plain = model(x, x)
        model.train()
        model.progress.fill_(1.0)  # past the end: rate 0, training loss equals the plain loss
        assert model(x, x).item() == pytest.approx(plain.item(), rel=1e-6)
        model.progress.fill_(0.0)
        assert model(x, x).item() != pytest.approx(plain.item(), rel=1e-3)
