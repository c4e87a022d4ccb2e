"""The record's optimizer and schedule plugins: polar_express, muon_eqr, muon_wd, muon_momentum, adamw,
grad_clip, frontier_lr, ema, swa. Each test checks what the technique claims, through the core's
real training step where the claim is about what a step does."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from golfplan.core.errors import PluginError
from golfplan.core.hooks import apply_configure, build_model, resolve
from golfplan.core.train.optim import Muon, build_optimizers, zeropower_via_newtonschulz5
from golfplan.core.state import Clock
from golfplan.core.train.step import Step
from golfplan.core.technique import Technique, hookimpl
from golfplan.plugins.adamw import AdamW
from golfplan.plugins.ema import EMA
from golfplan.plugins.frontier_lr import FrontierLR, frontier_lr
from golfplan.plugins.grad_clip import GradClip
from golfplan.plugins.lr import LR
from golfplan.plugins.muon_eqr import MuonEqR, row_normalize
from golfplan.plugins.muon_momentum import MuonMomentum
from golfplan.plugins.muon_wd import MuonWD
from golfplan.plugins.polar_express import PE_COEFFS, PolarExpress, polar_express
from golfplan.plugins.swa import SWA
from golfplan.plugins.tidal import Tidal
from golfplan.plugins.wd_ramp import WdRamp
from golfplan.registry import combination_problems
from tests.conftest import run_tiny, tiny_config


def make_step(techniques, seed: int = 0, **overrides) -> Step:
    """The core's training step on the tiny config (configured by ``techniques``), random-token batches."""
    hooks = resolve(techniques)
    config = apply_configure(hooks, tiny_config(**overrides))
    torch.manual_seed(seed)
    model = build_model(hooks, config)
    model.train()
    optimizers, muon = build_optimizers(model, config, hooks)
    gen = torch.Generator().manual_seed(seed + 1)

    def next_batch():
        x = torch.randint(0, config.vocab_size, (2, config.train_seq_len), generator=gen)
        return x, torch.roll(x, -1, dims=1)

    return Step(model, model, optimizers, muon, hooks, config, next_batch)


def weights(model) -> dict[str, torch.Tensor]:
    return {k: p.detach().clone() for k, p in model.named_parameters()}


def clock(step: Step, k: int) -> Clock:
    return Clock(step=k, iterations=step.config.iterations)


def matrix_names(step: Step) -> set[str]:
    ids = {id(p) for p in step.matrix_params}
    return {k for k, p in step.base.named_parameters() if id(p) in ids}


# ---- polar_express ------------------------------------------------------------------


def ortho_error(X: torch.Tensor) -> float:
    """RMS of ||X Xᵀ - I|| over the smaller side: 0 for an exactly orthogonal (semi-)matrix."""
    X = X.float()
    if X.size(0) > X.size(1):
        X = X.T
    gram = X @ X.T
    return float((gram - torch.eye(gram.size(0))).norm() / gram.size(0) ** 0.5)


# the record's Muon matrices at d=512: q/out (512x512), k/v (256x512), MLP up (2048x512) and down (512x2048)
RECORD_SHAPES = [(512, 512), (256, 512), (2048, 512), (512, 2048)]


@pytest.mark.parametrize("steps", [5, 7])
def test_polar_express_orthogonalises_better_than_the_baseline_at_the_same_step_count(steps):
    g = torch.Generator().manual_seed(0)
    for shape in RECORD_SHAPES:
        G = torch.randn(*shape, generator=g)
        X = polar_express(G, steps)  # once: bf16 matmuls are slow on a CPU without native bf16
        base, pe = ortho_error(zeropower_via_newtonschulz5(G, steps)), ortho_error(X)
        # measured: at 5 steps 0.19-0.21 vs 0.28-0.32; at 7 steps 0.10-0.12 vs 0.34-0.35
        assert pe < 0.8 * base, (shape, steps, pe, base)
        assert X.shape == G.shape


def test_polar_express_repeats_its_last_tuple_beyond_five_steps():
    G = torch.randn(64, 128, generator=torch.Generator().manual_seed(1))
    X = polar_express(G, 5)
    a, b, c = PE_COEFFS[-1]
    for _ in range(2):
        A = X @ X.T
        X = a * X + (b * A + c * (A @ A)) @ X
    assert torch.equal(X, polar_express(G, 7))
    assert not torch.equal(polar_express(G, 5), polar_express(G, 7))


def test_polar_express_refuses_fewer_steps_than_its_schedule():
    hooks = resolve([PolarExpress()])
    with pytest.raises(PluginError, match="muon_backend_steps=3"):
        apply_configure(hooks, tiny_config(muon_backend_steps=3))
    assert apply_configure(hooks, tiny_config()).muon_backend_steps == 5


def test_muon_applies_the_polar_express_update():
    step = make_step([PolarExpress()])
    _, muon = step.optimizers, step.muon
    p = step.matrix_params[0]
    G = torch.randn(p.shape, generator=torch.Generator().manual_seed(2))
    p0 = p.detach().clone()
    for q in step.base.parameters():
        q.grad = None
    p.grad = G.clone()
    muon.step()
    group = muon.param_groups[0]
    m, lr = group["momentum"], group["lr"]
    expected = polar_express(G.add(G, alpha=m), group["backend_steps"])
    expected *= max(1, p.size(0) / p.size(1)) ** 0.5
    assert torch.allclose(p.detach(), p0 - lr * expected.float(), atol=1e-6)
    baseline = zeropower_via_newtonschulz5(G.add(G, alpha=m), group["backend_steps"]).float()
    assert not torch.allclose(expected.float(), baseline, atol=1e-3)


# ---- muon_eqr -------------------------------------------------------------------------


def test_muon_eqr_gives_every_row_unit_norm_and_keeps_its_direction():
    G = torch.randn(6, 10, generator=torch.Generator().manual_seed(3))
    G *= torch.tensor([1e-3, 0.1, 1.0, 10.0, 1e3, 0.0])[:, None]  # rows of very different scale, one zero
    f = MuonEqR().muon_precondition(config=tiny_config())
    out = f(G)
    norms = out.norm(dim=1)
    assert torch.allclose(norms[:5], torch.ones(5), atol=1e-6)
    assert torch.equal(out[5], torch.zeros(10))  # the 1e-7 floor is a clamp: a zero row stays zero
    assert torch.allclose(out[:5] * G[:5].norm(dim=1, keepdim=True), G[:5], rtol=1e-5)
    assert f(G.bfloat16()).dtype == torch.bfloat16


def test_muon_eqr_update_is_the_orthogonalised_row_normalised_nesterov_update():
    step = make_step([MuonEqR()])
    muon = step.muon
    assert isinstance(muon, Muon) and muon.precondition == [row_normalize]
    p = step.matrix_params[1]
    G = torch.randn(p.shape, generator=torch.Generator().manual_seed(4))
    G *= torch.logspace(-2, 2, p.size(0))[:, None]  # unequal rows, so the normalisation matters
    p0 = p.detach().clone()
    for q in step.base.parameters():
        q.grad = None
    p.grad = G.clone()
    muon.step()
    group = muon.param_groups[0]
    m, lr, steps = group["momentum"], group["lr"], group["backend_steps"]
    nesterov = G.add(G, alpha=m)  # first step: buf = g, update = g + m*buf
    expected = zeropower_via_newtonschulz5(row_normalize(nesterov), steps) * max(1, p.size(0) / p.size(1)) ** 0.5
    assert torch.allclose(p.detach(), p0 - lr * expected.float(), atol=1e-6)
    plain = zeropower_via_newtonschulz5(nesterov, steps) * max(1, p.size(0) / p.size(1)) ** 0.5
    assert (expected.float() - plain.float()).abs().max() > 1e-2


# ---- muon_wd --------------------------------------------------------------------------


def test_muon_wd_decays_the_matrices_by_lr_times_wd_before_the_update():
    assert apply_configure(resolve([MuonWD()]), tiny_config()).weight_decay == 0.095
    plain, decayed = make_step([]), make_step([MuonWD()])
    w0 = weights(plain.base)
    assert all(torch.equal(w0[k], v) for k, v in weights(decayed.base).items())
    plain(clock(plain, 0))
    decayed(clock(decayed, 0))
    lr = decayed.muon.param_groups[0]["lr"]
    assert lr == pytest.approx(plain.config.matrix_lr)  # step 0: the schedule's multiplier is 1
    w_plain, w_decay = weights(plain.base), weights(decayed.base)
    matrices = matrix_names(decayed)
    assert matrices
    for k in w0:
        update = w_plain[k] - w0[k]  # the same gradient and optimizer update in both runs
        if k in matrices:
            assert torch.allclose(w_decay[k], w0[k] * (1 - lr * 0.095) + update, atol=1e-7), k
            if w0[k].abs().max() > 1e-3:  # (output projections start at zero: nothing to decay)
                assert not torch.allclose(w_decay[k], w_plain[k], atol=1e-7), k
        else:
            assert torch.equal(w_decay[k], w_plain[k]), k  # embeddings and scalars are not decayed here


def test_muon_wd_fills_the_wd_schedule_slot():
    problems = combination_problems([MuonWD, WdRamp])
    assert any("wd_schedule" in p and "muon_wd" in p and "wd_ramp" in p for p in problems)
    assert MuonWD(wd=0.05).wd_schedule(clock=Clock(step=3, iterations=10), config=tiny_config(weight_decay=0.05)) == 0.05


# ---- muon_momentum --------------------------------------------------------------------


def test_muon_momentum_sets_the_warmup_fields():
    hooks = resolve([MuonMomentum()])
    record = apply_configure(hooks, tiny_config(iterations=4945))
    assert (record.muon_momentum_warmup_start, record.muon_momentum, record.muon_momentum_warmup_steps) == \
        (0.92, 0.97, 1500)  # a run as long as the record's: its 1500 steps, exactly
    short = apply_configure(hooks, tiny_config(iterations=40))
    assert short.muon_momentum_warmup_steps == 12  # the cpu profile: the same 30 % of its 40 steps
    with pytest.raises(PluginError, match="must not exceed"):
        MuonMomentum(start=0.95, end=0.93)
    assert combination_problems([MuonMomentum, LR])  # both set muon_momentum


@pytest.mark.parametrize("iterations", [30, 4945])
def test_muon_momentum_reaches_the_optimizer_through_the_step(iterations):
    step = make_step([MuonMomentum()], iterations=iterations)
    warm = 1500 / 4945 * iterations  # 9.1 steps of 30, 1500 of 4945
    for k in [0, 1, 3, 9, 20] + ([1499, 1500, 2000] if iterations > 30 else []):
        step(clock(step, k))
        expected = 0.92 + 0.05 * min(k / warm, 1.0)
        assert step.muon.param_groups[0]["momentum"] == pytest.approx(expected, abs=1e-12), k


def test_muon_momentum_on_a_wallclock_capped_run_follows_the_wallclock_share():
    # iterations is only an upper bound there: the warmup ends at 30 % of the cap, whatever the pace
    step = make_step([MuonMomentum()], iterations=20_000, max_wallclock_seconds=600.0)
    for k, elapsed, expected in [(0, 0.0, 0.92), (1, 1.0, 0.92 + 0.05 * (1 / 600) / (1500 / 4945)),
                                 (2, 91.0, 0.92 + 0.05 * (91 / 600) / (1500 / 4945)), (3, 300.0, 0.97)]:
        step(Clock(step=k, iterations=20_000, elapsed_s=elapsed, wallclock_s=600.0))
        assert step.muon.param_groups[0]["momentum"] == pytest.approx(expected, abs=1e-12), k


# ---- adamw ----------------------------------------------------------------------------


def test_adamw_builds_one_adamw_per_role_with_its_lr_betas_and_decay():
    step = make_step([AdamW()])
    by_role = {opt.param_groups[0]["role"]: opt for opt in step.optimizers}
    assert set(by_role) == {"embed", "matrix", "scalar"}  # tied embeddings: no head
    assert isinstance(by_role["matrix"], Muon)
    expect = {"embed": (0.03, 0.085), "scalar": (0.02, 0.02)}
    for role, (lr, wd) in expect.items():
        opt = by_role[role]
        assert type(opt) is torch.optim.AdamW
        group = opt.param_groups[0]
        assert (group["lr"], group["base_lr"], group["weight_decay"]) == (lr, lr, wd)
        assert group["betas"] == (0.9, 0.99) and group["eps"] == 1e-8
    untied = make_step([AdamW(head_wd=0.05)], tie_embeddings=False)
    roles = {opt.param_groups[0]["role"]: opt.param_groups[0] for opt in untied.optimizers}
    assert (roles["head"]["lr"], roles["head"]["weight_decay"]) == (untied.config.head_lr, 0.05)
    assert roles["embed"]["lr"] == untied.config.embed_lr  # untied: the config's embed_lr, as the record


def test_adamw_decay_shrinks_a_parameter_with_zero_gradient_by_lr_times_wd():
    step = make_step([AdamW()])
    for opt in step.optimizers:
        if isinstance(opt, torch.optim.AdamW):
            group = opt.param_groups[0]
            before = [p.detach().clone() for p in group["params"]]
            for p in group["params"]:
                p.grad = torch.zeros_like(p)
            opt.step()
            factor = 1 - group["lr"] * group["weight_decay"]
            assert factor < 1
            for p, b in zip(group["params"], before):
                assert torch.allclose(p.detach(), b * factor, atol=1e-8, rtol=1e-6)


# ---- grad_clip ------------------------------------------------------------------------


class GradNormProbe(Technique):
    """Records the global gradient norm the optimizers stepped with (grads are cleared after on_step)."""

    name = "grad_norm_probe"
    summary = "test probe"

    def __init__(self, **values):
        super().__init__(**values)
        self.norms: list[float] = []

    @hookimpl
    def on_step(self, model, optimizers, clock):
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        self.norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))


def test_grad_clip_caps_the_gradient_norm_of_a_step():
    assert apply_configure(resolve([GradClip()]), tiny_config()).grad_clip_norm == 0.3
    free, clipped = GradNormProbe(), GradNormProbe()
    unclipped_step, clipped_step = make_step([free]), make_step([GradClip(), clipped])
    for k in range(3):
        unclipped_step(clock(unclipped_step, k))
        clipped_step(clock(clipped_step, k))
    assert min(free.norms) > 0.3  # without it the gradients are larger than the cap ...
    assert max(clipped.norms) <= 0.3 * (1 + 1e-5)  # ... with it the optimizers see at most 0.3
    assert clipped.norms[0] == pytest.approx(0.3, rel=1e-5)


# ---- frontier_lr ----------------------------------------------------------------------


def test_frontier_lr_is_flat_then_linear_then_floored():
    f = frontier_lr
    assert f(0.0) == 1.0 and f(0.1) == 1.0 and f(0.15) == pytest.approx(1.0)
    assert f(0.2) == pytest.approx(0.8 / 0.85)
    assert f(0.575) == pytest.approx(0.5)
    assert f(0.9) == pytest.approx(0.1 / 0.85)
    assert f(0.915) == pytest.approx(0.1)
    assert f(0.95) == 0.1 and f(1.0) == 0.1
    grid = [f(i / 1000) for i in range(1001)]
    assert all(a >= b for a, b in zip(grid, grid[1:]))
    assert min(grid) == 0.1
    assert f(0.5, warmdown_frac=0.75, min_lr=0.0) == pytest.approx(0.5 / 0.75)  # the code's defaults
    assert f(0.99, min_lr=0.0) == pytest.approx(0.01 / 0.85)


def test_frontier_lr_follows_wallclock_progress():
    t = FrontierLR()
    cfg = tiny_config()
    # the record: 599.5 s of training (600 s cap - 0.5 s reserve); at 299.75 s, step 2,470 of 20,000
    mid = Clock(step=2470, iterations=20_000, elapsed_s=299.75, wallclock_s=599.5)
    assert t.lr_schedule(clock=mid, config=cfg) == pytest.approx(0.5 / 0.85)
    end = Clock(step=4945, iterations=20_000, elapsed_s=599.5, wallclock_s=599.5)
    assert t.lr_schedule(clock=end, config=cfg) == pytest.approx(0.1)
    steps_only = Clock(step=30, iterations=40)
    assert t.lr_schedule(clock=steps_only, config=cfg) == pytest.approx(0.25 / 0.85)
    assert any("lr_schedule" in p for p in combination_problems([FrontierLR, Tidal]))
    assert apply_configure(resolve([t]), cfg) is cfg  # sets nothing: the reserve is the calibrator's


# ---- ema ------------------------------------------------------------------------------


def test_ema_half_life_is_the_records_decay_at_its_horizon():
    from golfplan.core.train.horizon import decay_per_step

    h = EMA().p.half_life  # 0.9965 per step over the record's 4,945 steps
    assert decay_per_step(h, 4945) == pytest.approx(0.9965, abs=1e-12)
    assert decay_per_step(h, 40) == pytest.approx(0.6483, abs=1e-4)  # the cpu profile's 40 steps


@pytest.mark.parametrize("half_life", [0.1, 0.04])
def test_ema_equals_the_closed_form_after_n_steps(half_life):
    from golfplan.core.train.horizon import decay_per_step

    ema = EMA(half_life=half_life)
    step = make_step([ema])
    decay = decay_per_step(half_life, step.config.iterations)
    history = [weights(step.base)]  # w_0
    n = 6
    for k in range(n):
        step(clock(step, k))
        history.append(weights(step.base))  # w_k
    assert ema.steps == n and sorted(ema.names) == sorted(history[0])  # the tiny model has no persistent buffer
    for i, name in enumerate(ema.names):
        w = [h[name].double() for h in history]
        closed = decay ** n * w[0] + sum((1 - decay) * decay ** (n - k) * w[k] for k in range(1, n + 1))
        assert ema.shadow[i].dtype == torch.float32
        assert torch.allclose(ema.shadow[i].double(), closed, rtol=1e-5, atol=1e-7), name
    # the model holds the shadow once training ends, not its last weights
    last = history[-1]
    with torch.no_grad():
        ema.on_train_end(model=step.base, optimizers=step.optimizers, clock=clock(step, n))
    params = dict(step.base.named_parameters())
    for name, avg in zip(ema.names, ema.shadow):
        assert torch.equal(params[name].detach(), avg.to(params[name].dtype)), name
    assert any(not torch.equal(p.detach(), last[name]) for name, p in params.items())


class EvalProbe(Technique):
    """Records, at the pre-export evaluation, the weights the model holds."""

    name = "eval_probe"
    summary = "test probe"

    def __init__(self, **values):
        super().__init__(**values)
        self.seen: dict[str, torch.Tensor] | None = None

    @hookimpl
    def evaluate(self, model, final):
        if not final:
            self.seen = {k: p.detach().clone() for k, p in model.named_parameters()}
        # returns None: the default evaluation runs


def test_a_run_with_ema_completes_and_evaluates_the_averaged_weights(dataset):
    ema, probe = EMA(), EvalProbe()
    result = run_tiny(techniques=[ema, probe], iterations=12)
    assert result.status == "complete", result.reason
    assert ema.steps == 12
    assert probe.seen is not None
    assert all(torch.equal(probe.seen[name], avg) for name, avg in zip(ema.names, ema.shadow))


# ---- swa ------------------------------------------------------------------------------


def test_swa_averages_the_snapshots_taken_at_the_stated_steps():
    swa = SWA(every=2 / 12, below=0.8)  # every 2 of the run's 12 steps
    # 12 steps, linear warmdown over the last 8: the multiplier of step k (0-based) is min(1, (12 - k) / 8)
    step = make_step([swa], iterations=12, warmdown_iters=8)
    after: dict[int, dict[str, torch.Tensor]] = {}
    scales = []
    for k in range(12):
        step(clock(step, k))
        after[k + 1] = weights(step.base)
        scales.append(step.optimizers[0].param_groups[0]["lr"] / step.optimizers[0].param_groups[0]["base_lr"])
    assert scales[5] == pytest.approx(7 / 8) and scales[7] == pytest.approx(5 / 8)
    assert swa.taken == [8, 10, 12]  # even steps whose multiplier was below 0.8 (step 6's was 0.875)
    last = after[12]
    with torch.no_grad():
        swa.on_train_end(model=step.base, optimizers=step.optimizers, clock=clock(step, 12))
    for name, p in step.base.named_parameters():
        mean = sum(after[s][name].double() for s in (8, 10, 12)) / 3
        assert torch.allclose(p.detach().double(), mean, atol=1e-6), name
    assert any(not torch.equal(p.detach(), last[n]) for n, p in step.base.named_parameters())


def test_swa_leaves_the_weights_alone_with_fewer_than_two_snapshots():
    swa = SWA(every=0.5)  # at steps 6 (multiplier 0.875: not below 0.5) and 12
    step = make_step([swa], iterations=12, warmdown_iters=8)
    for k in range(12):
        step(clock(step, k))
    last = weights(step.base)
    with torch.no_grad():
        swa.on_train_end(model=step.base, optimizers=step.optimizers, clock=clock(step, 12))
    assert swa.taken == [12]
    assert all(torch.equal(p.detach(), last[n]) for n, p in step.base.named_parameters())


def averaged_share_of_the_last(fraction: float, clocks) -> float:
    """Run EMA on a one-weight model that is 0 until the last ``fraction`` of ``clocks`` and 1 after:
    the share of the average those last steps carry."""
    model = torch.nn.Linear(1, 1, bias=False)
    ema = EMA(half_life=0.05)
    with torch.no_grad():
        model.weight.zero_()
        ema.after_backward(model=model, clock=clocks[0])
        n = len(clocks)
        for k, c in enumerate(clocks):
            if k >= n - round(fraction * n):
                model.weight.fill_(1.0)
            ema.on_step(model=model, optimizers=[], clock=c)
    return float(ema.shadow[0])


@pytest.mark.parametrize("steps", [40, 4000])
def test_ema_gives_the_last_half_life_of_the_run_half_the_average_on_any_horizon(steps):
    step_capped = [Clock(step=k, iterations=steps) for k in range(steps)]
    assert averaged_share_of_the_last(0.05, step_capped) == pytest.approx(0.5, abs=1e-5)
    # capped by time at 0.15 s a step (iterations only an upper bound): the pace gives the horizon
    timed = [Clock(step=k, iterations=100_000, elapsed_s=0.15 * k, wallclock_s=0.15 * steps) for k in range(steps)]
    assert averaged_share_of_the_last(0.05, timed) == pytest.approx(0.5, abs=1e-5)


@pytest.mark.parametrize("iterations,expected", [
    (7379, list(range(5900, 7351, 50))),  # the source's run: its 30 snapshots, every 50 steps from step 5900
    (40, list(range(34, 41))),  # the cpu profile: every step (a period under one step) in the same last share
])
def test_swa_snapshots_at_the_sources_shares_of_the_run(iterations, expected):
    swa, model = SWA(), torch.nn.Linear(1, 1, bias=False)
    warmdown = round(3000 / 7379 * iterations)  # the source's warmdown (3000 of its 7,379 steps), as a share
    for k in range(iterations):
        opt = SimpleNamespace(param_groups=[{"lr": min(1.0, (iterations - k) / warmdown), "base_lr": 1.0}])
        with torch.no_grad():
            swa.on_step(model=model, optimizers=[opt], clock=Clock(step=k, iterations=iterations))
    assert swa.taken == expected


def test_ema_and_swa_exclude_each_other():
    problems = combination_problems([EMA, SWA])
    assert any("ema" in p and "swa" in p and "weight_averaging" in p for p in problems)
