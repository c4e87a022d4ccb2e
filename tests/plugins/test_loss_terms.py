"""The loss-term plugins: z_loss, logit_penalty, label_smoothing, token_dropout, embed_mixup, head_diversity."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from golfplan.core.hooks import build_model, forward_fns, resolve
from golfplan.core.model.gpt import GPT, CausalSelfAttention
from golfplan.core.state import ForwardContext
from golfplan.plugins.embed_mixup import EmbedMixup
from golfplan.plugins.head_diversity import HeadDiversity, head_similarity
from golfplan.plugins.label_smoothing import LabelSmoothing
from golfplan.plugins.logit_penalty import LogitPenalty
from golfplan.plugins.token_dropout import TokenDropout
from golfplan.plugins.z_loss import ZLoss
from tests.conftest import tiny_config


def logits_fixture(n: int = 64, vocab: int = 50, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 30.0 * torch.tanh(4.0 * torch.randn(n, vocab, generator=g) / 30.0)


# ---- z-loss and logit penalty ------------------------------------------------------


def test_z_loss_is_coef_times_mean_squared_log_partition():
    logits = logits_fixture()
    ctx = SimpleNamespace(logits=logits)
    log_z = logits.double().exp().sum(dim=-1).log()
    term = ZLoss().on_loss(config=None)
    assert ZLoss().p.coef == 1e-4
    assert term(ctx).item() == pytest.approx(1e-4 * (log_z ** 2).mean().item(), rel=1e-5)
    assert ZLoss(coef=3e-3).on_loss(config=None)(ctx).item() == pytest.approx(3e-3 * (log_z ** 2).mean().item(), rel=1e-5)


def test_z_loss_reads_bf16_logits_in_fp32():
    logits = logits_fixture()
    ctx = SimpleNamespace(logits=logits.bfloat16())
    out = ZLoss().on_loss(config=None)(ctx)
    assert out.dtype == torch.float32
    expected = 1e-4 * torch.logsumexp(logits.bfloat16().float(), -1).square().mean()
    assert out.item() == pytest.approx(expected.item(), rel=1e-6)


def test_logit_penalty_is_coef_times_mean_squared_logit():
    logits = logits_fixture()
    ctx = SimpleNamespace(logits=logits)
    expected = 1e-5 * sum(float(v) ** 2 for v in logits.flatten()) / logits.numel()
    assert LogitPenalty().p.coef == 1e-5
    assert LogitPenalty().on_loss(config=None)(ctx).item() == pytest.approx(expected, rel=1e-5)
    assert LogitPenalty(coef=1e-3).on_loss(config=None)(ctx).item() == pytest.approx(100 * expected, rel=1e-5)


def test_loss_terms_are_added_to_the_training_loss_only():
    cfg = tiny_config()
    torch.manual_seed(0)
    model = build_model(resolve([ZLoss(coef=1e-2), LogitPenalty(coef=1e-3)]), cfg)
    x = torch.randint(0, cfg.vocab_size, (2, cfg.train_seq_len))
    y = torch.randint(0, cfg.vocab_size, (2, cfg.train_seq_len))
    with torch.no_grad():
        model.train()
        loss = model(x, y)
        model.eval()
        plain = model(x, y)
        ctx = ForwardContext(model, model.progress, x, y, training=True)
        logits = model.logits(model.hidden(x, ctx))
    expected = plain + 1e-2 * torch.logsumexp(logits, -1).square().mean() + 1e-3 * logits.square().mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert plain.item() == pytest.approx(F.cross_entropy(logits, y.reshape(-1)).item(), rel=1e-6)


# ---- label smoothing ---------------------------------------------------------------


def test_label_smoothing_equals_torch_per_token():
    logits = logits_fixture(n=32, vocab=40)
    targets = torch.randint(0, 40, (32,), generator=torch.Generator().manual_seed(1))
    fn = LabelSmoothing().token_loss(config=None)
    out = fn(logits, targets)
    assert out.shape == (32,)
    for t in range(32):
        ref = F.cross_entropy(logits[t:t + 1], targets[t:t + 1], label_smoothing=0.1)
        assert out[t].item() == pytest.approx(ref.item(), rel=1e-6)
    # the formula: (1 - eps)·nll + eps·mean over the vocabulary of -log p
    logp = logits.log_softmax(-1)
    manual = 0.9 * -logp.gather(1, targets[:, None]).squeeze(1) + 0.1 * -logp.mean(-1)
    assert torch.allclose(out, manual, rtol=1e-5, atol=1e-6)
    assert torch.allclose(LabelSmoothing(smoothing=0.0).token_loss(config=None)(logits, targets),
                          F.cross_entropy(logits, targets, reduction="none"), rtol=1e-6, atol=1e-7)


def test_label_smoothing_fills_the_token_loss_slot():
    assert LabelSmoothing.slots() == ("token_loss",)
    fns = forward_fns(resolve([LabelSmoothing(smoothing=0.2)]), tiny_config())
    logits = logits_fixture(n=8, vocab=16)
    targets = torch.arange(8)
    assert torch.allclose(fns.token_loss(logits, targets),
                          F.cross_entropy(logits, targets, reduction="none", label_smoothing=0.2), rtol=1e-6, atol=1e-7)


# ---- token dropout -----------------------------------------------------------------


def test_token_dropout_drops_about_the_stated_fraction():
    fn = TokenDropout().reduce_loss(config=None)
    assert TokenDropout().p.rate == 0.05
    n = 200_000
    ones = torch.ones(n)
    dropped = []
    for seed in range(5):
        torch.manual_seed(seed)
        idx_loss = torch.arange(n, dtype=torch.float32)
        out = fn(idx_loss, None)
        torch.manual_seed(seed)
        keep = torch.rand(n) >= 0.05
        dropped.append(1.0 - keep.float().mean().item())
        assert out.item() == pytest.approx(idx_loss[keep].mean().item(), rel=1e-6)
    assert sum(dropped) / len(dropped) == pytest.approx(0.05, abs=0.002)
    assert fn(ones, None).item() == pytest.approx(1.0)


def test_token_dropout_reduced_loss_is_the_masked_mean():
    loss = torch.rand(4096, generator=torch.Generator().manual_seed(0)) * 5
    fn = TokenDropout(rate=0.3).reduce_loss(config=None)
    torch.manual_seed(11)
    out = fn(loss, None)
    torch.manual_seed(11)
    keep = torch.rand(loss.shape) >= 0.3
    assert 0.25 < 1 - keep.float().mean().item() < 0.35
    assert out.item() == pytest.approx((loss * keep).sum().item() / keep.sum().item(), rel=1e-6)
    assert out.item() != pytest.approx(loss.mean().item(), rel=1e-4)
    assert TokenDropout(rate=0.0).reduce_loss(config=None)(loss, None).item() == pytest.approx(loss.mean().item(), rel=1e-6)
    assert TokenDropout.slots() == ("reduce_loss",)


# ---- embedding mixup ---------------------------------------------------------------


def partner_of(out: torch.Tensor, h: torch.Tensor, w: float) -> list[int]:
    """For each row i of ``out``, the j with out[i] == (1-w)·h[i] + w·h[j] (exactly one must match)."""
    partners = []
    for i in range(h.size(0)):
        matches = [j for j in range(h.size(0)) if torch.allclose(out[i], (1 - w) * h[i] + w * h[j], atol=1e-6)]
        assert len(matches) == 1, (i, matches)
        partners.append(matches[0])
    return partners


@pytest.mark.parametrize("weight", [0.1, 0.3])
def test_embed_mixup_is_the_convex_combination_with_a_random_partner(weight):
    b, t, d = 5, 7, 16
    h = F.rms_norm(torch.randn(b, t, d, generator=torch.Generator().manual_seed(0)), (d,))
    fn = EmbedMixup(weight=weight).on_embed(config=None)
    seen = set()
    for seed in range(12):
        torch.manual_seed(seed)
        out = fn(h, None)
        assert out.shape == h.shape
        p = partner_of(out, h, weight)
        assert all(j != i for i, j in enumerate(p))
        assert sorted(p) == list(range(b))  # every sequence is someone's partner once
        seen.add(tuple(p))
    assert len(seen) > 1  # the partners are random


def test_embed_mixup_default_and_single_sequence():
    assert EmbedMixup().p.weight == 0.1
    h = torch.randn(1, 4, 8)
    assert torch.equal(EmbedMixup().on_embed(config=None)(h, None), h)


# ---- head diversity ----------------------------------------------------------------


def set_heads(attn: CausalSelfAttention, head_rows: list[torch.Tensor]) -> None:
    with torch.no_grad():
        attn.c_q.weight.copy_(torch.cat(head_rows, dim=0))


def test_head_similarity_zero_for_orthogonal_heads_one_for_identical():
    cfg = tiny_config()
    attn = CausalSelfAttention(cfg)
    h, hd, dim = attn.num_heads, attn.head_dim, cfg.model_dim
    eye = torch.eye(dim)
    set_heads(attn, [2.0 * eye[i * hd:(i + 1) * hd] for i in range(h)])  # disjoint rows: orthogonal slices
    assert head_similarity(attn.c_q.weight, h).item() == pytest.approx(0.0, abs=1e-7)
    same = torch.randn(hd, dim)
    set_heads(attn, [same * (k + 1) for k in range(h)])  # same direction, different scales
    assert head_similarity(attn.c_q.weight, h).item() == pytest.approx(1.0, rel=1e-5)
    set_heads(attn, [same if k % 2 else -same for k in range(h)])  # anti-aligned heads are penalised too
    assert head_similarity(attn.c_q.weight, h).item() == pytest.approx(1.0, rel=1e-5)
    # two identical pairs, the pairs orthogonal: 4 of the 12 ordered pairs have cos 1
    a, b = eye[:hd], eye[hd:2 * hd]
    set_heads(attn, [a, a, b, b])
    assert head_similarity(attn.c_q.weight, h).item() == pytest.approx(4 / 12, rel=1e-6)


def test_head_diversity_term_over_the_model():
    cfg = tiny_config()
    model = GPT(cfg)
    term = HeadDiversity().on_loss(config=None)
    assert HeadDiversity().p.coef == 1e-4
    dim, hd = cfg.model_dim, cfg.head_dim
    eye = torch.eye(dim)
    for block in model.blocks:
        set_heads(block.attn, [eye[i * hd:(i + 1) * hd] for i in range(cfg.num_heads)])
    ctx = SimpleNamespace(model=model)
    assert term(ctx).item() == pytest.approx(0.0, abs=1e-10)
    set_heads(model.blocks[0].attn, [eye[:hd]] * cfg.num_heads)  # one of 4 layers has identical heads
    assert term(ctx).item() == pytest.approx(1e-4 * 1.0 / cfg.num_layers, rel=1e-5)
    assert HeadDiversity(coef=1e-3).on_loss(config=None)(ctx).item() == pytest.approx(1e-3 / cfg.num_layers, rel=1e-5)


def test_head_diversity_gradient_makes_heads_more_diverse():
    torch.manual_seed(0)
    model = GPT(tiny_config())
    ctx = SimpleNamespace(model=model)
    term = HeadDiversity(coef=1e-2).on_loss(config=None)
    before = term(ctx)
    assert before.item() > 0  # random heads are not exactly orthogonal
    before.backward()
    with torch.no_grad():
        for block in model.blocks:
            w = block.attn.c_q.weight
            assert w.grad.abs().sum() > 0
            w -= 0.5 * w.grad / w.grad.norm() * w.norm() * 0.01
    assert term(ctx).item() < before.item()
