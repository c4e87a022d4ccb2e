"""The architecture plugins: parallel, sandwich_norm, the activations (relu2, leaky_relu2, gelu2, silu2, swiglu),
untied, and the config setters (gqa, softcap, rope_base, qk_gain, unet, depth, width, mlp_width, lr)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from golfplan.core.config import Config
from golfplan.core.hooks import apply_configure, build_model, resolve
from golfplan.core.model.gpt import GPT, CastedLinear, Block, relu2
from golfplan.core.train.optim import Muon, build_optimizers, split_params
from golfplan.core.state import ForwardContext
from golfplan.core.technique import Technique
from golfplan.plugins.activations import GELU2, LeakyReLU2, ReLU2, SiLU2, SwiGLU, SwiGLUMLP
from golfplan.plugins.gqa import GQA
from golfplan.plugins.lr import LR
from golfplan.plugins.parallel import Parallel, ParallelBlock
from golfplan.plugins.qk_gain import QKGain
from golfplan.plugins.rope_base import RopeBase
from golfplan.plugins.sandwich_norm import SandwichNorm
from golfplan.plugins.shape import Depth, MLPWidth, Width
from golfplan.plugins.softcap import Softcap
from golfplan.plugins.unet import UNet
from golfplan.plugins.untied import Untied
from golfplan.registry import combination_problems
from tests.conftest import tiny_config


def built(*techniques: Technique, **overrides) -> tuple[GPT, Config]:
    """The model and config a run with ``techniques`` builds from the tiny config (as the trainer does)."""
    hooks = resolve(list(techniques))
    config = apply_configure(hooks, tiny_config(**overrides))
    config.validate()
    torch.manual_seed(0)
    return build_model(hooks, config), config


def changed_fields(technique: Technique, base: Config) -> dict[str, object]:
    after = apply_configure(resolve([technique]), base)
    return {k: v for k, v in after.to_dict().items() if v != getattr(base, k)}


def ctx_for(model: GPT, ids: torch.Tensor) -> ForwardContext:
    return ForwardContext(model, model.progress, ids, ids, training=False)


# ---- parallel and sandwich norm ---------------------------------------------------------


def test_parallel_block_feeds_one_normed_input_to_both_branches():
    model, config = built(Parallel())
    block = model.blocks[0]
    assert isinstance(block, ParallelBlock) and not hasattr(block, "mlp_norm")
    torch.manual_seed(1)
    with torch.no_grad():
        block.attn.proj.weight.normal_(0.0, 0.1)
        block.mlp.proj.weight.normal_(0.0, 0.1)
    inputs = {}
    block.attn.register_forward_pre_hook(lambda m, a: inputs.__setitem__("attn", a[0]))
    block.mlp.register_forward_pre_hook(lambda m, a: inputs.__setitem__("mlp", a[0]))
    x = torch.randn(2, 16, config.model_dim)
    out = block(x, torch.zeros_like(x), ctx_for(model, torch.zeros(2, 16, dtype=torch.long)))
    h = F.rms_norm(x, (x.size(-1),))
    assert torch.equal(inputs["attn"], inputs["mlp"])
    assert torch.allclose(out, x + block.attn(h) + block.mlp(h), atol=1e-5)


def test_block_wirings_share_one_slot_and_sandwich_norm_combines_with_them():
    from golfplan.plugins.attention_recycling import AttentionRecycling

    assert combination_problems([Parallel, AttentionRecycling])
    assert not combination_problems([Parallel, SandwichNorm]) and not combination_problems([AttentionRecycling, SandwichNorm])
    model, config = built(Parallel(), SandwichNorm())  # norms inside a parallel block
    block = model.blocks[0]
    assert isinstance(block, ParallelBlock) and type(block.attn_post).__name__ == "RMSNorm"
    torch.manual_seed(2)
    with torch.no_grad():
        block.attn.proj.weight.normal_(0.0, 2.0)
        block.mlp.proj.weight.normal_(0.0, 0.1)
    x = torch.randn(2, 16, config.model_dim)
    out = block(x, torch.zeros_like(x), ctx_for(model, torch.zeros(2, 16, dtype=torch.long)))
    h = F.rms_norm(x, (x.size(-1),))
    expected = x + F.rms_norm(block.attn(h), (x.size(-1),)) + block.mlp(h)
    assert torch.allclose(out, expected, atol=1e-5)



def test_sandwich_norm_normalises_the_attention_output_before_the_scale():
    model, config = built(SandwichNorm())
    block = model.blocks[0]
    assert type(block.attn_post).__name__ == "RMSNorm" and isinstance(block.mlp_post, torch.nn.Identity)
    torch.manual_seed(1)
    with torch.no_grad():
        block.attn.proj.weight.normal_(0.0, 2.0)  # raw attention output far from RMS 1
        block.mlp.proj.weight.normal_(0.0, 0.1)
        block.attn_scale.fill_(0.5)
    seen = {}
    block.attn.register_forward_hook(lambda m, i, o: seen.__setitem__("raw", o))
    block.attn_post.register_forward_hook(lambda m, i, o: seen.__setitem__("normed", o))
    x = torch.randn(2, 16, config.model_dim)
    ids = torch.zeros(2, 16, dtype=torch.long)
    out = block(x, torch.zeros_like(x), ctx_for(model, ids))
    raw_rms = seen["raw"].square().mean(-1).sqrt()
    rms = seen["normed"].square().mean(-1).sqrt()
    assert (raw_rms - 1).abs().min() > 0.5
    assert torch.allclose(rms, torch.ones_like(rms), atol=1e-4)
    # the block: x + 0.5·norm(attn(norm(x))), then the plain (un-normed) MLP branch
    h = x + 0.5 * F.rms_norm(block.attn(F.rms_norm(x, (x.size(-1),))), (x.size(-1),))
    expected = h + block.mlp(F.rms_norm(h, (h.size(-1),)))
    assert torch.allclose(out, expected, atol=1e-5)


def test_sandwich_norm_mlp_option_normalises_the_mlp_output_too():
    model, _ = built(SandwichNorm(mlp=True))
    assert all(type(b.mlp_post).__name__ == "RMSNorm" for b in model.blocks)


# ---- activations -----------------------------------------------------------------------

X = torch.tensor([-3.0, -1.0, -0.25, 0.0, 0.5, 2.0])


def phi(v: float) -> float:
    return 0.5 * (1.0 + math.erf(v / math.sqrt(2.0)))


@pytest.mark.parametrize("technique, formula", [
    (ReLU2(), lambda v: max(v, 0.0) ** 2),
    (LeakyReLU2(), lambda v: (v if v > 0 else 0.01 * v) ** 2),
    (LeakyReLU2(slope=0.2), lambda v: (v if v > 0 else 0.2 * v) ** 2),
    (GELU2(), lambda v: (v * phi(v)) ** 2),
    (SiLU2(), lambda v: (v / (1.0 + math.exp(-v))) ** 2),
])
def test_activation_equals_its_formula_and_reaches_the_mlp(technique, formula):
    act = resolve([technique]).pm.hook.activation(config=tiny_config())
    expected = torch.tensor([formula(v) for v in X.tolist()])
    assert torch.allclose(act(X), expected, atol=1e-6)
    model, _ = built(technique)
    assert all(torch.allclose(b.mlp.activation(X), expected, atol=1e-6) for b in model.blocks)


def test_default_activation_is_relu2():
    model, _ = built()
    assert model.blocks[0].mlp.activation is relu2


def test_swiglu_has_three_matrices_and_the_stated_hidden_width():
    model, config = built(SwiGLU())
    mlp = model.blocks[0].mlp
    assert isinstance(mlp, SwiGLUMLP)
    mats = {n: p.shape for n, p in mlp.named_parameters()}
    h, d = config.mlp_hidden, config.model_dim
    assert mats == {"gate.weight": (h, d), "up.weight": (h, d), "proj.weight": (d, h)}
    assert torch.count_nonzero(mlp.proj.weight) == 0  # zero-initialised output projection
    small, small_config = built(SwiGLU(hidden_scale=2 / 3))
    assert small.blocks[0].mlp.gate.out_features == round(2 / 3 * small_config.mlp_hidden)


def test_swiglu_computes_the_gated_form():
    model, config = built(SwiGLU())
    mlp = model.blocks[0].mlp
    torch.manual_seed(2)
    with torch.no_grad():
        mlp.proj.weight.normal_(0.0, 0.1)
    x = torch.randn(3, config.model_dim)
    expected = (F.silu(x @ mlp.gate.weight.T) * (x @ mlp.up.weight.T)) @ mlp.proj.weight.T
    assert torch.allclose(mlp(x), expected, atol=1e-5)


def test_activations_share_one_slot():
    classes = [ReLU2, LeakyReLU2, GELU2, SiLU2, SwiGLU]
    for i, a in enumerate(classes):
        for b in classes[i + 1:]:
            assert combination_problems([a, b]), (a.name, b.name)


# ---- untied ----------------------------------------------------------------------------


def test_untied_adds_a_separate_zero_initialised_head():
    tied, _ = built()
    assert tied.lm_head is None
    model, config = built(Untied())
    assert not config.tie_embeddings
    assert isinstance(model.lm_head, CastedLinear)
    assert model.lm_head.weight.shape == (config.vocab_size, config.model_dim)
    assert model.lm_head.weight.data_ptr() != model.tok_emb.weight.data_ptr()
    assert torch.count_nonzero(model.lm_head.weight) == 0
    assert split_params(model)["head"] == [model.lm_head.weight]
    h = torch.randn(5, config.model_dim)
    assert torch.count_nonzero(model.logits(h)) == 0  # logits come from the (zero) head, not tok_emb


# ---- config setters: exactly the stated fields ------------------------------------------


@pytest.mark.parametrize("technique, fields", [
    (Untied(), {"tie_embeddings": False}),
    (GQA(kv_heads=1), {"num_kv_heads": 1}),
    (Softcap(), {"logit_softcap": 15.0}),
    (RopeBase(), {"rope_base": 5000.0}),
    (QKGain(), {"qk_gain_init": 2.0}),
    (UNet(), {"encoder_layers": 0}),
    (Depth(), {"num_layers": 10}),
    (Width(), {"model_dim": 640}),
    (MLPWidth(), {"mlp_mult": 3.0}),
    (LR(), {"embed_lr": 0.8, "matrix_lr": 0.11}),  # muon_momentum 0.95 is the baseline's already
    (LR(muon_momentum=0.98), {"embed_lr": 0.8, "matrix_lr": 0.11, "muon_momentum": 0.98}),
])
def test_config_setter_changes_exactly_its_fields(technique, fields):
    assert changed_fields(technique, tiny_config()) == fields


def test_gqa_sets_the_kv_projection_width():
    model, config = built(GQA(kv_heads=1))
    attn = model.blocks[0].attn
    assert attn.num_kv_heads == 1
    assert attn.c_k.weight.shape == attn.c_v.weight.shape == (config.head_dim, config.model_dim)
    assert attn.c_q.weight.shape == (config.model_dim, config.model_dim)


def test_softcap_value_is_used_in_the_logits():
    model, config = built(Softcap(value=7.0))
    assert model.logit_softcap == 7.0
    h = 50.0 * torch.randn(4, config.model_dim)
    raw = h @ model.tok_emb.weight.T
    logits = model.logits(h)
    assert torch.allclose(logits, 7.0 * torch.tanh(raw / 7.0), atol=1e-5)
    assert logits.abs().max() <= 7.0 and raw.abs().max() > 7.0


def test_rope_base_sets_every_rotary_frequency():
    model, config = built(RopeBase(base=3000.0))
    d = config.head_dim
    expected = 1.0 / (3000.0 ** (torch.arange(0, d, 2, dtype=torch.float32) / d))
    for block in model.blocks:
        assert torch.allclose(block.attn.rotary.inv_freq, expected)
    base_model, _ = built()
    assert not torch.allclose(base_model.blocks[0].attn.rotary.inv_freq, expected)


def test_qk_gain_sets_every_heads_initial_gain():
    model, config = built(QKGain(init=2.5))
    for block in model.blocks:
        assert torch.equal(block.attn.q_gain, torch.full((config.num_heads,), 2.5))


@pytest.mark.parametrize("encoder, n_enc, n_dec, skips", [(None, 2, 2, 2), (0, 0, 4, 0), (1, 1, 3, 1), (3, 3, 1, 1)])
def test_unet_sets_the_encoder_decoder_split_and_skip_weights(encoder, n_enc, n_dec, skips):
    model, config = built(*([UNet(encoder_layers=encoder)] if encoder is not None else []))
    assert (model.num_encoder_layers, model.num_decoder_layers) == (n_enc, n_dec)
    assert model.skip_weights.shape == (skips, config.model_dim)


def test_unet_pure_decoder_forward_uses_no_skips():
    model, config = built(UNet(encoder_layers=0))
    ids = torch.randint(0, config.vocab_size, (2, 16))
    model.eval()
    assert torch.isfinite(model(ids, ids))


def test_unet_split_is_checked_against_the_final_layer_count():
    from golfplan.core.errors import ConfigError

    with pytest.raises(ConfigError, match="encoder_layers 5 exceeds num_layers 4"):
        apply_configure(resolve([UNet(encoder_layers=5)]), tiny_config()).validate()
    assert apply_configure(resolve([UNet(encoder_layers=5), Depth(num_layers=6)]), tiny_config()).validate() is None


def test_depth_width_and_mlp_width_shape_the_model():
    model, config = built(Depth(num_layers=6), Width(model_dim=256), MLPWidth(mlp_mult=1.5))
    assert (config.num_layers, config.model_dim, config.mlp_hidden) == (6, 256, 384)
    assert len(model.blocks) == 6
    assert model.tok_emb.weight.shape == (config.vocab_size, 256)
    assert model.blocks[0].attn.c_q.weight.shape == (256, 256)
    assert model.blocks[0].mlp.fc.weight.shape == (384, 256)
    assert model.blocks[0].mlp.proj.weight.shape == (256, 384)


def base_lrs(model: GPT, config: Config) -> tuple[float, float, float]:
    """The token embedding's base LR, Muon's base LR and Muon's momentum."""
    optimizers, muon = build_optimizers(model, config)
    token = optimizers[0].param_groups[0]
    assert token["params"] == [model.tok_emb.weight] and isinstance(muon, Muon)
    group = muon.param_groups[0]
    return token["base_lr"], group["base_lr"], group["momentum"]


def test_lr_sets_the_optimizers_base_lrs():
    model, config = built(LR(embed_lr=0.9, matrix_lr=0.12, muon_momentum=0.97), Untied())
    assert base_lrs(model, config) == (0.9, 0.12, 0.97)


def test_lr_embed_lr_is_inert_with_tied_embeddings():
    model, config = built(LR(embed_lr=0.9, matrix_lr=0.12))
    assert base_lrs(model, config) == (Config().tied_embed_lr, 0.12, 0.95)


def test_setters_combine_across_slots():
    techniques = [Untied(), GQA(), Softcap(), RopeBase(), QKGain(), UNet(), Depth(num_layers=5),
                  Width(model_dim=256), MLPWidth(), LR(), SiLU2(), SandwichNorm()]
    assert not combination_problems([type(t) for t in techniques])
    model, config = built(*techniques)
    assert (config.num_layers, config.model_dim, config.num_kv_heads, config.encoder_layers) == (5, 256, 2, 0)
    assert isinstance(model.blocks[0], Block) and model.lm_head is not None
