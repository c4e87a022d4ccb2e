"""Value embeddings (VE): a shared token embedding, projected to the KV width, added to v in the last layers.

ve = s · P · E[token]            (one table E: vocab x 128, one projection P: 128 -> kv_dim, s = 0.1)
v_i <- v_i + λ_i · ve            (each chosen layer i, λ_i init 1)

Deep layers get the token's identity straight into their values, which the residual stream
has mostly overwritten by then.

Source: PR #374's shared value embedding, in record 2026-03-22_11L_EMA_GPTQ-lite_warmdown3500_QAT015_1.1233
(``VE_ENABLED=1 VE_DIM=128 VE_LAYERS=9,10``: ``ValueEmbedding``, ``GPT._get_ve``, the attention adds
``v_embed`` to ``c_v(x)`` before reshaping and before XSA) and record
2026-03-23_LeakyReLU_LegalTTT_ParallelMuon (the same module and settings).

The records' details, kept here: ONE table (normal init, std 0.01) and ONE projection with a learned
scale (init 0.1), computed once per forward and shared by the chosen layers, each of which has its
own learned scalar λ_i (init 1.0). The projection is always there (the records skip it only when
the table is already kv_dim wide).

Reading: the projection's init. ``ValueEmbedding.__init__`` zeroes it, but without the
``_zero_init`` mark, so the model's ``_init_weights`` (run after it) overwrites it like any other
linear of at least 64 x 64: orthogonal, and in 2026-03-22, whose rule scales every name ending
".proj" by 1/sqrt(2 num_layers), orthogonal with gain 1/sqrt(2 num_layers) (2026-03-23: gain 1).
The records were measured with that effective init, the default here (``proj_init=orthogonal``,
gain 1/sqrt(2 num_layers) as the source's, at any size; the records' 256 x 128 met their size
rule): VE then adds a small term to v from the start (per token |ve| ≈ 0.1 x gain x 0.01 x
sqrt(dim), 0.0024 at the records' shapes). ``proj_init=zero`` is the written intent: the model
starts exactly as without VE, and the projection learns from the (non-zero) table's lookups once
the attention's output projection is non-zero.

Optimizers as in 2026-03-22: the table with the token embedding's Adam (role ``embed``, the
tied/untied embedding LR), the projection with Muon (``matrix``), the scales with the scalar Adam
(``scalar``); 2026-03-23 moved the projection to Adam because its banked Muon takes only the bank
matrices.

Settings: ``layers`` is the share of the depth, counted from the last layer, with VE: the first VE
layer is ``layer_at(1 - layers, num_layers)``, so the default 0.18 gives layers 9 and 10 of 11 (the
records), 7 and 8 of 9, the last of 4; ``dim`` is the table's width (128).

Hooks: ``build_embed`` owns the table, the projection and its scale; its forward leaves the token
embeddings unchanged and puts ``ve`` (batch, seq, kv_dim) in ``ctx.extras["value_embed"]`` in every
forward (training, evaluation, scoring). ``attention_taps`` gives each chosen layer a tap owning λ_i
whose ``qkv`` adds λ_i · ve to v (after RoPE, which v does not get, so the same as the records'
addition before it); other layers get no tap and no parameter. ``param_role`` routes the table.
Plain tensor code in the compiled forward.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from golfplan.core.model.gpt import AttentionTap, CastedLinear, layer_at
from golfplan.core.technique import Choice, Float, Int, Technique, hookimpl

EXTRA = "value_embed"  # the ctx.extras key of the projected value embedding


class ValueEmbedding(nn.Module):
    """The shared table, projection and scale: ``ctx.extras["value_embed"] = scale · P(E[ids])``."""

    def __init__(self, vocab_size: int, dim: int, kv_dim: int, proj_gain: float) -> None:
        super().__init__()
        self.ve_table = nn.Embedding(vocab_size, dim)
        nn.init.normal_(self.ve_table.weight, std=0.01)
        self.ve_proj = CastedLinear(dim, kv_dim, bias=False)
        if proj_gain > 0:
            nn.init.orthogonal_(self.ve_proj.weight, gain=proj_gain)
        else:
            nn.init.zeros_(self.ve_proj.weight)
        self.ve_scale = nn.Parameter(torch.tensor(0.1, dtype=torch.float32))

    def forward(self, x: Tensor, ctx) -> Tensor:
        ve = self.ve_proj(self.ve_table(ctx.input_ids))
        ctx.extras[EXTRA] = ve * self.ve_scale.to(dtype=ve.dtype)
        return x  # the token embeddings pass through unchanged


class ValueEmbedTap(AttentionTap):
    """Adds λ · ve (its layer's learned scalar times the shared value embedding) to v."""

    def __init__(self, num_kv_heads: int, head_dim: int) -> None:
        super().__init__()
        self.num_kv_heads = num_kv_heads
        self.head_dim = head_dim
        self.ve_layer_scale = nn.Parameter(torch.ones(1, dtype=torch.float32))

    def qkv(self, q, k, v, x, ctx):
        if ctx is None or EXTRA not in ctx.extras:  # an attention called outside a model forward
            return q, k, v
        ve = ctx.extras[EXTRA]
        b, t, _ = ve.shape
        ve = ve.reshape(b, t, self.num_kv_heads, self.head_dim).transpose(1, 2)  # as v: (batch, kv_heads, seq, dim)
        return q, k, v + self.ve_layer_scale.to(dtype=v.dtype) * ve.to(dtype=v.dtype)


def first_ve_layer(layers: float, num_layers: int) -> int:
    return layer_at(1.0 - layers, num_layers)


class ValueEmbed(Technique):
    name = "value_embed"
    summary = "shared value embedding (vocab x 128 -> kv_dim) added to v in the last layers"
    params = {
        "layers": Float(0.18, 0.05, 1.0, help="share of the depth, from the last layer, with VE: the first VE layer "
                                               "is layer_at(1 - layers, num_layers); 0.18 = layers 9, 10 of 11"),
        "dim": Int(128, 16, 512, log=True, help="width of the shared value-embedding table"),
        "proj_init": Choice("orthogonal", ("orthogonal", "zero"),
                            help="the projection's init: orthogonal, gain 1/sqrt(2 num_layers) (what the record "
                                 "trained with) or zero (the model starts exactly as without VE)"),
    }
    source = "2026-03-22_11L_EMA_GPTQ-lite_warmdown3500_QAT015_1.1233"
    source_result = ("not isolated: VE128 on layers 9-10 is part of PR #374's architecture under this record's "
                     "1.1233 BPB (and 2026-03-23's 1.1194); leaderboard-techniques lists it as 'not isolated'")

    @hookimpl
    def build_embed(self, config):
        gain = 1.0 / math.sqrt(2 * config.num_layers) if self.p.proj_init == "orthogonal" else 0.0
        return ValueEmbedding(config.vocab_size, self.p.dim, config.num_kv_heads * config.head_dim, gain)

    @hookimpl
    def attention_taps(self, config, layer_idx):
        if layer_idx < first_ve_layer(self.p.layers, config.num_layers):
            return None
        return ValueEmbedTap(config.num_kv_heads, config.head_dim)

    @hookimpl
    def param_role(self, name, param, config):
        return "embed" if name.endswith("ve_table.weight") else None
