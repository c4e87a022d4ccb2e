"""The dynamic-structure plugins (the seed's U wave): layer_dropout, weight_sharing, progressive_growing,
attention_recycling, mirror_training, head_pruning."""

from __future__ import annotations

import random

import pytest
import torch

from golfplan.core.config import Config
from golfplan.core.errors import PluginError
from golfplan.core.export.artifact import export_int8_zlib
from golfplan.core.hooks import apply_configure, build_model, resolve
from golfplan.core.model.gpt import GPT, count_parameters
from golfplan.core.train.optim import build_optimizers, split_params
from golfplan.core.state import Clock, ForwardContext
from golfplan.core.technique import Technique
from golfplan.plugins.attention_recycling import AttentionRecycling, RecycledAttentionBlock
from golfplan.plugins.gqa import GQA
from golfplan.plugins.head_pruning import HeadPruning, PrunableAttention
from golfplan.plugins.layer_dropout import LayerDropBlock, LayerDropout
from golfplan.plugins.mirror_training import MirrorTraining, choose_rows
from golfplan.plugins.progressive_growing import GrowBlock, ProgressiveGrowing
from golfplan.plugins.weight_sharing import WeightSharing
from tests.conftest import tiny_config


def built(*techniques: Technique, **overrides) -> tuple[GPT, Config]:
    """The model and config a run with ``techniques`` builds from the tiny config (as the trainer does)."""
    hooks = resolve(list(techniques))
    config = apply_configure(hooks, tiny_config(**overrides))
    config.validate()
    torch.manual_seed(0)
    return build_model(hooks, config), config


def batch(config: Config, rows: int = 2, seq: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    stream = torch.randint(0, config.vocab_size, (rows, seq + 1), generator=g)
    return stream[:, :-1], stream[:, 1:]


def randomize(model: GPT, seed: int = 1) -> None:
    """Give every matrix (zero-initialised projections included) random values."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for w in split_params(model)["matrix"]:
            w.normal_(0.0, 0.1)


def count_calls(modules: list[torch.nn.Module]) -> list[int]:
    calls = [0] * len(modules)
    for i, m in enumerate(modules):
        m.register_forward_pre_hook(lambda mod, args, i=i: calls.__setitem__(i, calls[i] + 1))
    return calls


# ---- layer dropout ----------------------------------------------------------------------


def test_layer_dropout_skips_block_compute_in_training_only():
    model, config = built(LayerDropout(p=0.5))
    assert all(isinstance(b, LayerDropBlock) for b in model.blocks)
    calls = count_calls([b.block for b in model.blocks])
    x, y = batch(config)
    n = 30
    model.train()
    for _ in range(n):
        model(x, y)
    # each layer's own host RNG decides: exactly the draws >= p ran
    expected = []
    for i in range(config.num_layers):
        rng = random.Random(config.seed * 1009 + i)
        expected.append(sum(rng.random() >= 0.5 for _ in range(n)))
    assert calls == expected
    assert all(0 < c < n for c in calls)
    model.eval()
    for _ in range(5):
        model(x, y)
    assert calls == [c + 5 for c in expected]


def test_layer_dropout_skip_returns_the_stream_unchanged():
    model, config = built()
    wrapper = LayerDropBlock(model.blocks[0], p=1.0, seed=0)
    x = torch.randn(2, 8, config.model_dim)
    ctx = ForwardContext(model, model.progress, x, x, training=True)
    wrapper.train()
    assert wrapper(x, torch.zeros_like(x), ctx) is x
    assert not LayerDropout.compile_safe and "random" in LayerDropout.unsafe_reason


def test_compile_unsafe_plugin_is_refused_without_allow_eager():
    from golfplan.core.train.trainer import train

    with pytest.raises(PluginError, match="layer_dropout: branches on a host random draw.*--allow-eager"):
        train(tiny_config(), [LayerDropout()], log=lambda m: None)


# ---- weight sharing ---------------------------------------------------------------------


def test_weight_sharing_groups_share_attention_and_mlp_tensors():
    model, config = built(WeightSharing(), num_layers=6)
    b = model.blocks
    for group in ((0, 1, 2), (3, 4, 5)):
        first = b[group[0]]
        for i in group[1:]:
            assert b[i].attn is first.attn and b[i].mlp is first.mlp
            assert b[i].attn.c_q.weight is first.attn.c_q.weight
            assert b[i].attn_scale is not first.attn_scale  # control tensors stay per layer
    assert b[3].attn is not b[0].attn and b[3].mlp is not b[0].mlp
    assert len(split_params(model)["matrix"]) == 2 * 6  # two groups x (q, k, v, proj, fc, proj)


def test_weight_sharing_has_fewer_parameters_and_a_smaller_artifact():
    plain, _ = built(num_layers=6)
    shared, _ = built(WeightSharing(), num_layers=6)
    per_layer = sum(p.numel() for p in plain.blocks[0].attn.parameters()) + \
        sum(p.numel() for p in plain.blocks[0].mlp.parameters())
    assert count_parameters(plain) - count_parameters(shared) == 4 * per_layer
    randomize(plain)
    randomize(shared)
    a_plain, a_shared = export_int8_zlib(plain.state_dict()), export_int8_zlib(shared.state_dict())
    assert len(a_shared.blob) < 0.7 * len(a_plain.blob)
    # the round trip gives every layer its (shared) weights back
    restored = a_shared.load(a_shared.blob)
    assert set(restored) == set(shared.state_dict())
    fresh, _ = built(WeightSharing(), num_layers=6)
    fresh.load_state_dict(restored, strict=True)
    assert fresh.blocks[2].attn.c_q.weight is fresh.blocks[0].attn.c_q.weight
    assert torch.allclose(fresh.blocks[2].attn.c_q.weight, shared.blocks[0].attn.c_q.weight, atol=1e-3)


def test_weight_sharing_sums_the_groups_gradients_into_one_tensor():
    model, config = built(WeightSharing(group_size=2))
    randomize(model)
    x, y = batch(config)
    model.train()
    model(x, y).backward()
    w = model.blocks[1].mlp.fc.weight
    assert w is model.blocks[0].mlp.fc.weight and w.grad is not None and torch.count_nonzero(w.grad) > 0


# ---- progressive growing ----------------------------------------------------------------


@pytest.mark.parametrize("step, active", [(0, 3), (59, 3), (60, 4), (119, 4), (120, 5), (180, 6), (239, 6)])
def test_progressive_growing_activates_layers_at_the_seed_steps(step, active):
    tech = ProgressiveGrowing()
    model, _ = built(tech, num_layers=9)
    assert [b.active for b in model.blocks] == [True] * 3 + [False] * 6  # before any step
    tech.on_step(model=model, optimizers=[], clock=Clock(step=step, iterations=240))
    assert [b.active for b in model.blocks] == [True] * active + [False] * (9 - active)


def test_progressive_growing_reaches_full_depth_and_runs_only_active_blocks():
    tech = ProgressiveGrowing(start_layers=1, every=0.1)
    model, config = built(tech, num_layers=6)
    assert all(isinstance(b, GrowBlock) for b in model.blocks)
    calls = count_calls([b.block for b in model.blocks])
    x, y = batch(config)
    model.train()
    tech.on_step(model=model, optimizers=[], clock=Clock(step=25, iterations=100))  # 1 + floor(2.5) = 3
    model(x, y)
    assert calls == [1, 1, 1, 0, 0, 0]
    tech.on_step(model=model, optimizers=[], clock=Clock(step=90, iterations=100))  # 1 + 9, capped at 6
    model(x, y)
    assert calls == [2, 2, 2, 1, 1, 1]
    inactive = GrowBlock(model.blocks[0].block, 0, active=False)
    h = torch.randn(2, 8, config.model_dim)
    assert inactive(h, h, ForwardContext(model, model.progress, x, y, True)) is h
    assert not ProgressiveGrowing.compile_safe and ProgressiveGrowing.unsafe_reason


# ---- attention recycling ----------------------------------------------------------------


@pytest.mark.parametrize("passes", [2, 3])
def test_attention_recycling_calls_attention_passes_times_per_block(passes):
    model, config = built(AttentionRecycling(passes=passes))
    assert all(isinstance(b, RecycledAttentionBlock) for b in model.blocks)
    attn_calls = count_calls([b.attn for b in model.blocks])
    mlp_calls = count_calls([b.mlp for b in model.blocks])
    x, y = batch(config)
    model(x, y)
    assert attn_calls == [passes] * config.num_layers
    assert mlp_calls == [1] * config.num_layers


def test_attention_recycling_block_applies_the_same_attention_twice():
    model, config = built(AttentionRecycling())
    randomize(model)
    block = model.blocks[0]
    x = torch.randn(2, 8, config.model_dim)
    ctx = ForwardContext(model, model.progress, x, x, training=False)
    out = block(x, torch.zeros_like(x), ctx)
    norm = lambda t: torch.nn.functional.rms_norm(t, (t.size(-1),))  # noqa: E731
    h = x + block.attn(norm(x))
    h = h + block.attn(norm(h))
    assert torch.allclose(out, h + block.mlp(norm(h)), atol=1e-5)


# ---- mirror training --------------------------------------------------------------------


def test_mirror_training_reverses_exactly_the_chosen_rows_consistently():
    model, config = built(MirrorTraining())
    f = model.fns.batch[0]
    rows, seq = 8, 12
    stream = torch.arange(rows * (seq + 1)).reshape(rows, seq + 1)  # distinct tokens
    x, y = stream[:, :-1], stream[:, 1:]
    torch.manual_seed(3)
    x2, y2 = f(x, y, ForwardContext(model, model.progress, x, y, True))
    torch.manual_seed(3)
    chosen = choose_rows(rows, 0.5, x.device)
    assert int(chosen.sum()) == rows // 2
    for r in range(rows):
        window = stream[r].flip(0) if chosen[r] else stream[r]
        assert torch.equal(x2[r], window[:-1]) and torch.equal(y2[r], window[1:])
    assert torch.equal(x2[:, 1:], y2[:, :-1])  # every target is the next token of its input


def test_mirror_training_fraction_and_draws_vary():
    assert int(choose_rows(8, 0.25, torch.device("cpu")).sum()) == 2
    torch.manual_seed(0)
    picks = torch.stack([choose_rows(8, 0.5, torch.device("cpu")) for _ in range(20)])
    assert picks.any(dim=0).all() and not picks.all(dim=0).any()


def test_mirror_training_applies_in_training_not_in_eval():
    model, config = built(MirrorTraining())
    randomize(model)
    x, y = batch(config, rows=4, seed=1)
    model.train()
    torch.manual_seed(7)
    train_loss = model(x, y)
    torch.manual_seed(7)
    x2, y2 = model.fns.batch[0](x, y, None)
    model.eval()
    with torch.no_grad():
        assert torch.allclose(train_loss, model(x2, y2), atol=1e-5)
        assert not torch.allclose(model(x, y), model(x2, y2))


# ---- head pruning -----------------------------------------------------------------------


def pruned_model(**params) -> tuple[GPT, Config, HeadPruning, list[torch.Tensor]]:
    """A 16-head model whose heads' output columns have known, per-layer ranks of norm."""
    tech = HeadPruning(**params)
    model, config = built(tech)
    randomize(model)
    keeps = []
    with torch.no_grad():
        for i, block in enumerate(model.blocks):
            attn = block.attn
            rank = torch.randperm(attn.num_heads, generator=torch.Generator().manual_seed(i))
            attn.proj.weight.view(-1, attn.num_heads, attn.head_dim).mul_((1.0 + rank.float())[None, :, None])
            keeps.append(rank >= attn.num_heads - tech.p.end_heads)
    return model, config, tech, keeps


def proj_inputs(model: GPT, config: Config) -> list[torch.Tensor]:
    """Each layer's per-head attention outputs as they enter the output projection."""
    seen: list[torch.Tensor] = []
    handles = [b.attn.proj.register_forward_pre_hook(lambda m, args: seen.append(args[0])) for b in model.blocks]
    x, y = batch(config)
    model.eval()
    with torch.no_grad():
        model(x, y)
    for h in handles:
        h.remove()
    return [s.reshape(*s.shape[:2], config.num_heads, config.head_dim) for s in seen]


def test_head_pruning_keeps_the_strongest_heads_after_prune_at():
    model, config, tech, keeps = pruned_model()
    assert config.num_heads == 16 and all(isinstance(b.attn, PrunableAttention) for b in model.blocks)
    tech.on_step(model=model, optimizers=[], clock=Clock(step=99, iterations=240))  # progress 0.4125 < 0.416
    assert all(torch.equal(b.attn.head_mask, torch.ones(16)) for b in model.blocks)
    assert all((h.abs().sum(dim=(0, 1, 3)) > 0).all() for h in proj_inputs(model, config))
    tech.on_step(model=model, optimizers=[], clock=Clock(step=100, iterations=240))  # 0.4167: the seed's step 100
    for block, keep, heads in zip(model.blocks, keeps, proj_inputs(model, config)):
        attn = block.attn
        assert int(keep.sum()) == 8 and torch.equal(attn.head_mask, keep.float())
        alive = heads.abs().sum(dim=(0, 1, 3)) > 0
        assert torch.equal(alive, keep)  # exactly the 8 kept heads give output
        q_rows = attn.c_q.weight.view(16, attn.head_dim, -1).abs().sum(dim=(1, 2)) > 0
        proj_cols = attn.proj.weight.view(-1, 16, attn.head_dim).abs().sum(dim=(0, 2)) > 0
        assert torch.equal(q_rows, keep) and torch.equal(proj_cols, keep)


def test_head_pruning_keeps_pruned_weights_zero_after_optimizer_steps():
    model, config, tech, keeps = pruned_model()
    optimizers, _ = build_optimizers(model, config)
    x, y = batch(config)
    model.train()

    def train_step(step: int) -> None:
        model(x, y).backward()
        for opt in optimizers:
            opt.step()
            opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            tech.on_step(model=model, optimizers=optimizers, clock=Clock(step=step, iterations=240))

    train_step(50)  # fills Muon's momentum for every head
    train_step(110)  # prunes
    model(x, y).backward()
    for opt in optimizers:
        opt.step()
    w = model.blocks[0].attn.c_q.weight.view(16, -1, config.model_dim)
    assert w[~keeps[0]].abs().sum() > 0  # momentum moved the pruned rows again ...
    with torch.no_grad():
        tech.on_step(model=model, optimizers=optimizers, clock=Clock(step=111, iterations=240))
    assert w[~keeps[0]].abs().sum() == 0 and (w[keeps[0]].abs().sum(dim=(1, 2)) > 0).all()  # ... and on_step re-zeroes


def test_head_pruning_mask_travels_in_the_artifact():
    model, config, tech, keeps = pruned_model()
    tech.on_step(model=model, optimizers=[], clock=Clock(step=200, iterations=240))
    artifact = export_int8_zlib(model.state_dict())
    fresh, _ = built(HeadPruning())
    fresh.load_state_dict(artifact.load(artifact.blob), strict=True)
    assert torch.equal(fresh.blocks[1].attn.head_mask, keeps[1].float())


def test_head_pruning_combines_with_gqa_and_checks_its_params():
    model, config = built(HeadPruning(), GQA(kv_heads=4))
    assert (config.num_heads, config.num_kv_heads) == (16, 4)
    x, y = batch(config)
    assert torch.isfinite(model(x, y))
    with pytest.raises(PluginError, match="end_heads=16 must be below start_heads=16"):
        apply_configure(resolve([HeadPruning(end_heads=16)]), tiny_config())
