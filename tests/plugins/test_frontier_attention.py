"""The frontier's attention and initialisation techniques: xsa, partial_rope, ln_scale, sparse_attn_gate,
ortho_init, value_embed (each checked for what it claims), their combination, and the core's
document-masked ``attend`` on the CPU."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from golfplan.check import trace_techniques
from golfplan.core.config import Config, shrink
from golfplan.core.hooks import apply_configure, build_model, resolve
from golfplan.core.model.attention import DocAttention, document_mask
from golfplan.core.model.gpt import GPT, AttentionTap, CausalSelfAttention
from golfplan.core.train.optim import Muon, build_optimizers
from golfplan.core.state import ForwardContext
from golfplan.core.technique import Technique
from golfplan.plugins.ln_scale import LNScale
from golfplan.plugins.ortho_init import OrthoInit
from golfplan.plugins.partial_rope import PartialRope, rope_dims_for
from golfplan.plugins.sparse_attn_gate import SparseAttnGate, SparseAttnGateTap
from golfplan.plugins.value_embed import ValueEmbed, ValueEmbedding
from golfplan.plugins.xsa import XSA, XSATap, first_xsa_layer
from tests.conftest import run_tiny, tiny_config


def built(*techniques: Technique, **overrides) -> tuple[GPT, Config, object]:
    """The model, config and hooks a run with ``techniques`` builds from the tiny config (4 layers, width 64,
    4 heads of 16, 2 KV heads)."""
    hooks = resolve(list(techniques))
    config = apply_configure(hooks, tiny_config(**overrides))
    config.validate()
    torch.manual_seed(0)
    return build_model(hooks, config), config, hooks


class Recorder(AttentionTap):
    """Appended last to an attention's taps: keeps what attention used (q, k, v, its input x) and its output y."""

    def qkv(self, q, k, v, x, ctx):
        self.q, self.k, self.v, self.x = q, k, v, x
        return q, k, v

    def out(self, y, q, k, v, x, ctx):
        self.y = y
        return y


def record(model: GPT) -> list[Recorder]:
    recorders = []
    for block in model.blocks:
        recorders.append(Recorder())
        block.attn.taps.append(recorders[-1])
    return recorders


def randomise_output_projections(model: GPT, seed: int = 1) -> None:
    """Non-zero attention/MLP output projections, so each block changes the stream (zero at init)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for block in model.blocks:
            for lin in (block.attn.proj, block.mlp.proj):
                lin.weight.copy_(torch.randn(lin.weight.shape, generator=gen) * 0.1)


def batch(config: Config, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, config.vocab_size, (2, 32), generator=gen)
    return x, torch.roll(x, -1, dims=1)


def values_of(attn: CausalSelfAttention, x: torch.Tensor) -> torch.Tensor:
    """The attention's own value projection of its input x, shaped as attention uses v."""
    b, t, _ = x.shape
    return attn.c_v(x).reshape(b, t, attn.num_kv_heads, attn.head_dim).transpose(1, 2)


# ---- xsa ---------------------------------------------------------------------------------------


def test_xsa_output_is_orthogonal_to_its_kv_groups_value_and_loses_only_that_component():
    torch.manual_seed(0)
    y, v = torch.randn(2, 8, 10, 16), torch.randn(2, 2, 10, 16)  # 8 heads, 2 KV heads: heads 0-3 share KV head 0
    out = XSATap().out(y, None, None, v, None, None)
    for h in range(8):
        v_hat = F.normalize(v[:, h // 4], dim=-1)
        assert (out[:, h] * v_hat).sum(-1).abs().max() < 1e-5  # no component along its own value
        assert (y[:, h] * v_hat).sum(-1).abs().min() > 1e-3  # (there was one to remove)
        removed = y[:, h] - out[:, h]
        assert torch.allclose(removed, (y[:, h] * v_hat).sum(-1, keepdim=True) * v_hat, atol=1e-5)
        other = F.normalize(v[:, 1 - h // 4], dim=-1)  # the other group's value direction is not removed
        assert (out[:, h] * other).sum(-1).abs().max() > 1e-2


def test_xsa_acts_on_the_chosen_last_layers_and_leaves_the_others_untouched():
    assert first_xsa_layer(1.0, 11) == 0 and first_xsa_layer(3 / 11, 11) == 8 and first_xsa_layer(4 / 11, 11) == 7
    base, config, _ = built()
    model, _, _ = built(XSA(layers=0.5))  # 4 layers: XSA on layers 2 and 3
    assert [len(b.attn.taps) for b in model.blocks] == [0, 0, 1, 1]
    model.load_state_dict(base.state_dict())
    for m in (base, model):
        randomise_output_projections(m)
    seen_base, seen = record(base), record(model)
    x, y = batch(config)
    with torch.no_grad():
        base.eval(), model.eval()
        base(x, y), model(x, y)
    for i in (0, 1):  # before the first XSA layer nothing changes
        assert torch.equal(seen[i].y, seen_base[i].y)
    for i in (2, 3):
        v_hat = F.normalize(seen[i].v, dim=-1).repeat_interleave(config.num_heads // config.num_kv_heads, dim=1)
        assert (seen[i].y * v_hat).sum(-1).abs().max() < 1e-5
        assert (seen_base[i].y * v_hat).sum(-1).abs().max() > 1e-2
    # layer 2 reads the same stream in both models: its output is the baseline's, less the self-value part
    y_base, v_hat = seen_base[2].y, F.normalize(seen_base[2].v, dim=-1).repeat_interleave(2, dim=1)
    assert torch.allclose(seen[2].y, y_base - (y_base * v_hat).sum(-1, keepdim=True) * v_hat, atol=1e-5)


# ---- partial_rope --------------------------------------------------------------------------------


def test_partial_rope_dims_scale_with_the_head_and_shrink_keeps_the_share():
    assert rope_dims_for(0.25, 64) == 16 and rope_dims_for(0.25, 16) == 4 and rope_dims_for(0.1, 8) == 2
    record_config = apply_configure(resolve([PartialRope()]), Config())  # 8 heads of 64: the record's 16 of 64
    assert record_config.rope_dims == 16
    small = shrink(record_config)  # the check's config: 8 heads of 8 dims
    assert small.head_dim == 8 and small.rope_dims == 2
    _, config, _ = built(PartialRope())
    assert config.head_dim == 16 and config.rope_dims == 4


def test_partial_rope_rotates_only_the_first_dims_of_q_and_k():
    model, config, _ = built(PartialRope())
    attn = model.blocks[0].attn
    assert attn.rope_dims == 4
    seen = record(model)[0]
    x, y = batch(config)
    with torch.no_grad():
        model.eval()
        model(x, y)
        b, t, _ = seen.x.shape
        q = F.rms_norm(attn.c_q(seen.x).reshape(b, t, attn.num_heads, attn.head_dim).transpose(1, 2), (attn.head_dim,))
        q = q * attn.q_gain[None, :, None, None]
        k = F.rms_norm(attn.c_k(seen.x).reshape(b, t, attn.num_kv_heads, attn.head_dim).transpose(1, 2),
                       (attn.head_dim,))
    for pre, post in ((q, seen.q), (k, seen.k)):
        assert torch.equal(post[..., 4:], pre[..., 4:])  # the unrotated 12 of 16 dims pass through
        assert torch.allclose(post[:, :, 0], pre[:, :, 0], atol=1e-6)  # position 0: angle 0
        assert (post[:, :, 1:, :4] - pre[:, :, 1:, :4]).abs().max() > 1e-2  # later positions rotate
        # exactly RoPE over the first 4 dims: pairs (0, 2) and (1, 3), frequencies base^(-2i/4)
        pos = torch.arange(t, dtype=torch.float32)[:, None]
        angle = pos * (1.0 / config.rope_base ** (torch.arange(0, 4, 2, dtype=torch.float32) / 4))
        x1, x2 = pre[..., :2], pre[..., 2:4]
        rotated = torch.cat((x1 * angle.cos() + x2 * angle.sin(), -x1 * angle.sin() + x2 * angle.cos()), dim=-1)
        assert torch.allclose(post[..., :4], rotated, atol=1e-5)


# ---- ln_scale ------------------------------------------------------------------------------------


def test_ln_scale_sets_each_blocks_input_norms_to_one_over_sqrt_layer_plus_one():
    model, _, _ = built(LNScale())
    for i, block in enumerate(model.blocks):
        assert block.attn_norm.scale == block.mlp_norm.scale == pytest.approx(1 / math.sqrt(i + 1))
        assert block.attn_post.__class__.__name__ == "Identity"
    from golfplan.plugins.layer_dropout import LayerDropout
    from golfplan.plugins.parallel import Parallel
    wrapped, _, _ = built(LayerDropout(), LNScale())  # through a wrap_block wrapper
    expected = [1, 1 / math.sqrt(2), 1 / math.sqrt(3), 0.5]
    assert [b.block.attn_norm.scale for b in wrapped.blocks] == pytest.approx(expected)
    par, _, _ = built(Parallel(), LNScale())  # a parallel block's one norm feeds both branches
    assert par.blocks[3].attn_norm.scale == pytest.approx(0.5) and not hasattr(par.blocks[3], "mlp_norm")


def test_ln_scale_block_output_reads_scaled_norms():
    model, config, _ = built(LNScale())
    randomise_output_projections(model)
    block, f = model.blocks[3], 0.5
    gen = torch.Generator().manual_seed(3)
    x, x0 = torch.randn(2, 16, config.model_dim, generator=gen), torch.randn(2, 16, config.model_dim, generator=gen)
    ctx = ForwardContext(model, model.progress, torch.zeros(2, 16, dtype=torch.long), None, training=False)
    with torch.no_grad():
        out = block(x, x0, ctx)

        def by_hand(f: float) -> torch.Tensor:
            h = block.mix(x, x0)
            h = h + block.attn_scale * block.attn(F.rms_norm(h, (h.size(-1),)) * f)
            return h + block.mlp_scale * block.mlp(F.rms_norm(h, (h.size(-1),)) * f)

        expected, unscaled = by_hand(f), by_hand(1.0)
    assert torch.allclose(out, expected, atol=1e-5)
    assert (out - unscaled).abs().max() > 1e-3


# ---- sparse_attn_gate ----------------------------------------------------------------------------


def test_sparse_attn_gate_halves_every_head_at_init_as_the_record():
    base, config, _ = built()
    model, _, _ = built(SparseAttnGate())
    model.load_state_dict(base.state_dict(), strict=False)  # the same weights; the gates stay at zero
    gates = [b.attn.taps[0] for b in model.blocks]
    assert all(isinstance(g, SparseAttnGateTap) and not g.sparse_attn_gate.weight.any() for g in gates)
    assert tuple(gates[0].sparse_attn_gate.weight.shape) == (config.num_heads, 12)
    seen_base, seen = record(base), record(model)
    x, y = batch(config)
    with torch.no_grad():
        base.eval(), model.eval()
        base(x, y), model(x, y)
        assert torch.equal(gates[0].gate(seen[0].x), torch.full((2, 32, config.num_heads), 0.5))
    # the output projections are zero at init, so every layer sees the same stream: each head is halved
    for i in range(config.num_layers):
        assert torch.allclose(seen[i].y, 0.5 * seen_base[i].y, atol=1e-6)


def test_sparse_attn_gate_scales_each_head_by_its_own_gate_from_the_first_window_dims():
    tap = SparseAttnGateTap(num_heads=4, window=12, scale=0.5)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        tap.sparse_attn_gate.weight.copy_(torch.randn(4, 12, generator=gen))
    x, y = torch.randn(2, 7, 64, generator=gen), torch.randn(2, 4, 7, 16, generator=gen)
    out = tap.out(y, None, None, None, x, None)
    for h in range(4):
        g = torch.sigmoid(0.5 * x[..., :12] @ tap.sparse_attn_gate.weight[h])  # (batch, seq)
        assert torch.allclose(out[:, h], g[..., None] * y[:, h], atol=1e-6)
    x2 = x.clone()
    x2[..., 12:] += 5.0  # dims past the window do not reach the gate
    assert torch.equal(tap.out(y, None, None, None, x2, None), out)


def test_sparse_attn_gate_weights_go_to_the_scalar_adam_not_muon():
    model, config, hooks = built(SparseAttnGate())
    optimizers, muon = build_optimizers(model, config, hooks)
    gate_ids = {id(b.attn.taps[0].sparse_attn_gate.weight) for b in model.blocks}
    assert len(gate_ids) == config.num_layers
    by_role = {g["role"]: {id(p) for p in g["params"]} for opt in optimizers for g in opt.param_groups}
    assert gate_ids <= by_role["scalar"] and not gate_ids & by_role["matrix"]
    assert isinstance(muon, Muon) and not gate_ids & {id(p) for g in muon.param_groups for p in g["params"]}


# ---- ortho_init ----------------------------------------------------------------------------------


def test_ortho_init_makes_q_k_v_and_mlp_up_orthogonal_and_keeps_the_projections_zero():
    model, _, _ = built(OrthoInit(), model_dim=128)  # 4 heads of 32, kv_dim 64, MLP 256 x 128
    for block in model.blocks:
        for w in (block.attn.c_q.weight, block.attn.c_k.weight, block.attn.c_v.weight, block.mlp.fc.weight):
            w = w.detach()
            gram = w @ w.T if w.size(0) <= w.size(1) else w.T @ w  # rows (wide) or columns (tall) orthonormal
            assert torch.allclose(gram, torch.eye(gram.size(0)), atol=1e-5), tuple(w.shape)
        assert not block.attn.proj.weight.any() and not block.mlp.proj.weight.any()


def test_ortho_init_leaves_matrices_under_64_and_everything_else_as_built():
    base, _, _ = built()
    model, _, _ = built(OrthoInit())  # width 64: q (64x64) and fc (128x64) qualify, k and v (32x64) do not
    for b0, b in zip(base.blocks, model.blocks):
        assert torch.equal(b.attn.c_k.weight, b0.attn.c_k.weight) and torch.equal(b.attn.c_v.weight, b0.attn.c_v.weight)
        assert not torch.equal(b.attn.c_q.weight, b0.attn.c_q.weight)
        assert torch.equal(b.attn.q_gain, b0.attn.q_gain) and torch.equal(b.resid_mix, b0.resid_mix)
    assert torch.equal(model.tok_emb.weight, base.tok_emb.weight)


# ---- value_embed ---------------------------------------------------------------------------------


def test_value_embed_with_a_zero_projection_leaves_the_model_unchanged_at_init():
    base, config, _ = built()
    model, _, _ = built(ValueEmbed(proj_init="zero"))
    model.load_state_dict(base.state_dict(), strict=False)
    x, y = batch(config)
    with torch.no_grad():
        base.eval(), model.eval()
        assert torch.equal(model(x, y), base(x, y))
        assert torch.equal(model.token_losses(x, y), base.token_losses(x, y))


def test_value_embed_default_init_is_the_records_small_orthogonal_projection():
    model, config, _ = built(ValueEmbed())
    ve = model.embeds[0]
    assert isinstance(ve, ValueEmbedding) and tuple(ve.ve_table.weight.shape) == (config.vocab_size, 128)
    w = ve.ve_proj.weight.detach()  # kv_dim 32 x 128: orthogonal rows, gain 1/sqrt(2 * 4 layers)
    assert tuple(w.shape) == (32, 128) and torch.allclose(w @ w.T, torch.eye(32) / 8, atol=1e-5)
    assert ve.ve_scale.item() == pytest.approx(0.1)
    assert [len(b.attn.taps) for b in model.blocks] == [0, 0, 0, 1]  # 0.18 of 4 layers: the last one


def test_value_embed_changes_v_only_in_the_chosen_layers_after_a_step_and_has_no_params_elsewhere():
    model, config, hooks = built(ValueEmbed(layers=0.5, proj_init="zero"))  # layers 2 and 3 of 4
    tap_params = [n for n, _ in model.named_parameters() if ".taps." in n]
    assert tap_params == ["blocks.2.attn.taps.0.ve_layer_scale", "blocks.3.attn.taps.0.ve_layer_scale"]
    optimizers, _ = build_optimizers(model, config, hooks)
    role = {id(p): g["role"] for opt in optimizers for g in opt.param_groups for p in g["params"]}
    ve = model.embeds[0]
    assert role[id(ve.ve_table.weight)] == "embed" and role[id(ve.ve_proj.weight)] == "matrix"
    assert role[id(ve.ve_scale)] == "scalar" and role[id(model.blocks[2].attn.taps[0].ve_layer_scale)] == "scalar"
    randomise_output_projections(model)  # as after a few steps (at init the zero out-projections pass no gradient to v)
    x, y = batch(config)
    model.train()
    model(x, y).backward()
    assert ve.ve_proj.weight.grad.abs().sum() > 0  # the zero projection learns from the table's lookups
    for opt in optimizers:
        opt.step()
    assert ve.ve_proj.weight.any()
    seen = record(model)
    with torch.no_grad():
        model.eval()
        model(x, y)
        for i, block in enumerate(model.blocks):
            own = values_of(block.attn, seen[i].x)
            if i < 2:
                assert torch.equal(seen[i].v, own), i
            else:
                assert (seen[i].v - own).abs().max() > 1e-6, i


# ---- together ------------------------------------------------------------------------------------

FRONTIER = (XSA, PartialRope, SparseAttnGate, LNScale, OrthoInit, ValueEmbed)


def test_the_frontier_attention_stack_builds_and_trains_together(dataset):
    from golfplan.registry import combination_problems

    assert not combination_problems(list(FRONTIER))
    techniques = [cls() for cls in FRONTIER]
    model, _, _ = built(*techniques)
    assert model.blocks[1].attn_norm.scale == pytest.approx(1 / math.sqrt(2)) and model.blocks[0].attn.rope_dims == 4
    # (the taps commute: XSA and the gate are per-head linear maps of y, VE acts on v before both)
    taps = [sorted(type(t).__name__ for t in b.attn.taps) for b in model.blocks]
    assert taps[3] == ["SparseAttnGateTap", "ValueEmbedTap", "XSATap"]
    assert taps[0] == taps[1] == taps[2] == ["SparseAttnGateTap", "XSATap"]
    result = run_tiny(techniques=[t.fresh() for t in techniques], iterations=15)
    assert result.status == "complete", result.reason
    assert result.last_train_loss < result.first_train_loss


@pytest.mark.slow  # 6 CPU-s of fullgraph tracing (20-60 s on the shared 2-core machine)
def test_the_frontier_attention_stack_traces_together():
    techniques = [cls() for cls in FRONTIER]
    assert all(t.compile_safe for t in techniques)
    config = shrink(apply_configure(resolve(techniques), tiny_config()), steps=15)
    trace_techniques(config, techniques)  # together they trace with fullgraph=True, through progress 0 ... 1


# ---- the core's document attention on the CPU (more in test_frontier_stack.py, doc_packing) ----------------------------------------------------


def test_attend_on_the_cpu_keeps_documents_apart_with_the_masked_sdpa():
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(1, 4, 12, 8, generator=gen)
    k, v = torch.randn(1, 2, 12, 8, generator=gen), torch.randn(1, 2, 12, 8, generator=gen)
    segments = torch.tensor([[0] * 5 + [1] * 7])
    out = DocAttention(segments, None, max_len=12)(q, k, v)
    assert torch.equal(out, F.scaled_dot_product_attention(q, k, v, attn_mask=document_mask(segments), enable_gqa=True))
    for lo, hi in ((0, 5), (5, 12)):  # each document alone, causal: the same outputs
        alone = F.scaled_dot_product_attention(q[:, :, lo:hi], k[:, :, lo:hi], v[:, :, lo:hi], is_causal=True,
                                               enable_gqa=True)
        assert torch.allclose(out[:, :, lo:hi], alone, atol=1e-6)
