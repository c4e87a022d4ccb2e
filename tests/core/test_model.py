"""The model is the baseline's: parameter count, U-Net split, init."""

from __future__ import annotations

import torch

from golfplan.core.config import Config
from golfplan.core.model.gpt import GPT, count_parameters


def test_baseline_has_the_published_parameter_count():
    with torch.device("meta"):
        model = GPT(Config())
    assert count_parameters(model) == 17_059_912


def test_unet_split_and_pure_decoder():
    with torch.device("meta"):
        half = GPT(Config())
        pure = GPT(Config(encoder_layers=0))
        asym = GPT(Config(encoder_layers=1))
    assert (half.num_encoder_layers, half.num_decoder_layers, half.num_skip_weights) == (4, 5, 4)
    assert (pure.num_encoder_layers, pure.num_decoder_layers, pure.skip_weights.numel()) == (0, 9, 0)
    assert (asym.num_encoder_layers, asym.num_decoder_layers, asym.num_skip_weights) == (1, 8, 1)


def test_init_matches_the_baseline():
    torch.manual_seed(0)
    m = GPT(Config(num_layers=2, model_dim=64, num_heads=4, num_kv_heads=2))
    assert abs(m.tok_emb.weight.std().item() - 0.005) < 0.001
    for block in m.blocks:
        assert block.attn.proj.weight.abs().sum() == 0 and block.mlp.proj.weight.abs().sum() == 0
        assert torch.all(block.attn.q_gain == 1.5)
        assert torch.all(block.resid_mix[0] == 1) and torch.all(block.resid_mix[1] == 0)
    untied = GPT(Config(num_layers=2, model_dim=64, num_heads=4, num_kv_heads=2, tie_embeddings=False))
    assert untied.lm_head is not None and untied.lm_head.weight.abs().sum() == 0


def test_untrained_model_predicts_uniformly():
    torch.manual_seed(0)
    m = GPT(Config(num_layers=2, model_dim=64, num_heads=4, num_kv_heads=2)).eval()
    x = torch.randint(0, 1024, (8, 64))
    loss = m(x, torch.randint(0, 1024, (8, 64)))
    assert abs(loss.item() - torch.log(torch.tensor(1024.0)).item()) < 0.02
