"""The int8 + zlib artifact round trip."""

from __future__ import annotations

import torch

from golfplan.core.export import export_int8_zlib, quantize_state_dict_int8


def test_int8_round_trip_within_the_quantisation_step():
    g = torch.Generator().manual_seed(0)
    sd = {
        "blocks.0.attn.c_q.weight": torch.randn(300, 256, generator=g) * 0.05,  # > 65,536: int8 per row
        "blocks.0.attn_scale": torch.rand(256, generator=g),  # control tensor: kept fp32
        "small.weight": torch.randn(64, 64, generator=g),  # small: kept fp16
    }
    art = export_int8_zlib(sd)
    back = art.load(art.blob)
    w, wq = sd["blocks.0.attn.c_q.weight"], back["blocks.0.attn.c_q.weight"]
    clip = torch.quantile(w.abs(), 0.9999984, dim=1)
    step = (clip / 127.0).clamp_min(1 / 127.0)
    inside = w.abs() <= clip[:, None]
    err = (w - wq).abs()
    assert torch.all(err[inside] <= (step[:, None].expand_as(w)[inside] / 2) * 1.01 + 1e-6)
    assert torch.equal(back["blocks.0.attn_scale"], sd["blocks.0.attn_scale"])
    assert torch.allclose(back["small.weight"], sd["small.weight"], atol=1e-2)
    assert back["small.weight"].dtype == torch.float32


def test_shared_tensors_are_stored_once():
    w = torch.randn(300, 256)
    shared = {"blocks.0.mlp.fc.weight": w, "blocks.1.mlp.fc.weight": w}
    distinct = {"blocks.0.mlp.fc.weight": w, "blocks.1.mlp.fc.weight": w.clone()}
    a, b = export_int8_zlib(shared), export_int8_zlib(distinct)
    assert len(a.blob) < 0.6 * len(b.blob)
    back = a.load(a.blob)
    assert torch.equal(back["blocks.0.mlp.fc.weight"], back["blocks.1.mlp.fc.weight"])
    _, stats = quantize_state_dict_int8(shared)
    assert stats["param_count"] == w.numel()
