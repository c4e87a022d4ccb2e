"""The int8 + zlib artifact round trip, and the export chain with no plugin: the same bytes."""

from __future__ import annotations

import torch

from golfplan.core.export.artifact import export_artifact, export_int8_zlib, payload_bytes, quantize_state_dict_int8
from golfplan.core.hooks import resolve
from golfplan.core.export.sizing import estimate_artifact
from tests.conftest import tiny_config


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


# ---- the export chain with no plugin ---------------------------------------------------------


def every_kind_of_tensor() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    shared = torch.randn(300, 256, generator=g) * 0.05
    return {
        "tok_emb.weight": torch.randn(1024, 128, generator=g) * 0.02,  # int8 per row
        "blocks.0.attn.c_q.weight": torch.randn(128, 128, generator=g),  # small: fp16
        "blocks.0.mlp.fc.weight": (torch.randn(512, 256, generator=g) * 0.05).bfloat16(),  # int8, restored to bf16
        "blocks.0.attn_scale": torch.rand(128, generator=g),  # control: fp32
        "blocks.0.resid_mix": torch.rand(2, 128, generator=g).bfloat16(),  # control, bf16
        "half": torch.randn(64, 32, generator=g).half(),  # small fp16: kept as it is
        "big_vector": torch.randn(70_000, generator=g),  # int8 with one scale
        "ids": torch.arange(10),  # raw
        "blocks.1.mlp.proj.weight": shared,
        "blocks.2.mlp.proj.weight": shared,  # an alias
    }


def test_the_default_chain_is_the_challenges_int8_zlib_byte_for_byte():
    sd = every_kind_of_tensor()
    chain, legacy = export_artifact(resolve([]), sd, {}, tiny_config()), export_int8_zlib(sd)
    assert chain.format == legacy.format == "int8_zlib"
    assert chain.blob == legacy.blob
    a, b = chain.load(chain.blob), legacy.load(legacy.blob)
    assert set(a) == set(b) == set(sd)
    assert all(torch.equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in sd)


def test_the_chain_estimate_of_the_default_is_the_int8_payload():
    sd = every_kind_of_tensor()
    meta = {k: torch.empty(v.shape, dtype=v.dtype, device="meta") for k, v in sd.items()}
    meta["blocks.2.mlp.proj.weight"] = meta["blocks.1.mlp.proj.weight"]
    est = estimate_artifact(resolve([]), meta, None)
    assert est.payload_bytes == payload_bytes(meta) == payload_bytes(sd)
    assert est.ratio == 0.79 and est.model_bytes == int(payload_bytes(sd) * 0.79)
