"""Exclusive self attention (XSA): each head's output loses its component along its own value.

y_h <- y_h - (y_h · v̂) v̂,   v̂ = v_g / |v_g|

where v_g is the value vector of head h's KV group at the same position (GQA: heads
``g * H/Hkv ... (g+1) * H/Hkv - 1`` share KV head g, as SDPA pairs them). Attention tends to
copy a token's own value back into its output (self-attention bias, which grows with depth);
XSA removes exactly that direction, so the output carries only what the other positions add.
Zero parameters; a reshape into KV groups and a broadcast, no repeat of v.

Source: Exclusive Self Attention (arXiv:2603.09078), made GQA-aware and applied to the last
3 of 11 layers in record 2026-03-20_11L_EfficientPartialXSA_FA3_SWA120 (``_xsa_efficient``);
later records extended it to every layer (2026-03-25_ValCalib_GPTQ_XSA_BigramHash3072,
2026-03-29_Loader_FullGPTQ_XSA11_BigramHash2816), and the frontier record
(2026-04-27_SP8192_LQER_SparseGate_BOSSmearFix_9HpStack_1.0611, ``XSA_LAST_N=11``, F:1003-1010)
runs it on all 11 layers: this plugin's default.

Settings: ``layers`` is the share of the depth, counted from the last layer, that gets XSA:
the first XSA layer is ``layer_at(1 - layers, num_layers)``, so 1.0 is every layer (the
frontier), 3/11 ≈ 0.27 the last 3 of 11 (the first XSA record; 2 of 9, 1 of 4), 4/11 ≈ 0.36
the last 4. The value used is the one attention used, after any other tap's ``qkv`` (value
embeddings are inside it, as in the records, where ``v_embed`` is added before XSA).
An attention tap's ``out``: plain tensor code in the compiled forward.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from golfplan.core.model.gpt import AttentionTap, layer_at
from golfplan.core.technique import Float, Technique, hookimpl


def exclude_self_value(y: Tensor, v: Tensor) -> Tensor:
    """``y`` (batch, heads, seq, head_dim) minus, per head, its projection on the normalised
    value ``v`` (batch, kv_heads, seq, head_dim) of its KV group at the same position."""
    b, h, t, d = y.shape
    kv_heads = v.size(1)
    y_g = y.reshape(b, kv_heads, h // kv_heads, t, d)  # the heads sharing one KV head, together
    v_hat = F.normalize(v, dim=-1).unsqueeze(2)  # (b, kv_heads, 1, t, d): broadcast over the group
    y_g = y_g - (y_g * v_hat).sum(dim=-1, keepdim=True) * v_hat
    return y_g.reshape(b, h, t, d)


class XSATap(AttentionTap):
    """Removes each head output's component along its own (normalised) value vector."""

    def out(self, y, q, k, v, x, ctx):
        return exclude_self_value(y, v)


def first_xsa_layer(layers: float, num_layers: int) -> int:
    return layer_at(1.0 - layers, num_layers)


class XSA(Technique):
    name = "xsa"
    summary = "exclusive self attention: remove from each head's output its component along its own value vector"
    params = {"layers": Float(1.0, 0.1, 1.0, help="share of the depth, from the last layer, with XSA: the first XSA "
                                                   "layer is layer_at(1 - layers, num_layers); 1.0 = every layer "
                                                   "(the frontier), 0.27 = the last 3 of 11")}
    source = "2026-03-20_11L_EfficientPartialXSA_FA3_SWA120"
    source_result = ("~-0.002 BPB over its base stack with XSA on the last 3 of 11 layers, <2 ms/step (README; "
                     "1.1307 sliding s64); extended to all 11 layers in 2026-03-25 / 2026-03-29 (not isolated); "
                     "the frontier record (1.0611) runs all 11")

    @hookimpl
    def attention_taps(self, config, layer_idx):
        return XSATap() if layer_idx >= first_xsa_layer(self.p.layers, config.num_layers) else None
