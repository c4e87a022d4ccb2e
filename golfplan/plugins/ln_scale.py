"""LN scale: every block's input norms scaled by 1/sqrt(layer + 1).

x = mix(x, x0);  x = x + s_a·attn(n(x)/√(i+1));  x = x + s_m·mlp(n(x)/√(i+1))   (block i)

Deeper blocks read a damped copy of the stream, so their branches start smaller and the
residual stream grows more slowly with depth. Zero parameters: a constant per block.

Source: record 2026-03-21_11L_XSA4_EMA_PartialRoPE_LateQAT_1.1248 (``LN_SCALE=1``,
introduced with partial RoPE: 1.1271 -> 1.1248); the frontier record keeps it
(F:1124: ``ln_scale_factor = 1/sqrt(layer_idx + 1)``, multiplying ``attn_norm`` and
``mlp_norm`` outputs in both its sequential and its parallel-lane blocks).

Reading: the factor belongs to the block (its index in ``model.blocks``), as in the record,
where a block run several times by depth recurrence keeps its own factor. It is set once
(``on_model_built``) as ``RMSNorm.scale`` of each block's ``attn_norm`` and ``mlp_norm``,
found through any ``wrap_block`` wrapper (``.block``); a block without one of them (the
``parallel`` block has only ``attn_norm``, which feeds both branches) gets the one it has.
Branch-output norms (``sandwich_norm``'s ``attn_post``/``mlp_post``) are not input norms and
keep scale 1. The scale is a Python constant of each norm: a static graph, compile-safe.
"""

from __future__ import annotations

import math

from torch import nn

from golfplan.core.model.gpt import RMSNorm
from golfplan.core.technique import Technique, hookimpl

NORMS = ("attn_norm", "mlp_norm")


def unwrapped(block: nn.Module) -> nn.Module:
    """The block under any wrappers that keep it as ``.block``."""
    while not any(isinstance(getattr(block, n, None), RMSNorm) for n in NORMS):
        inner = getattr(block, "block", None)
        if not isinstance(inner, nn.Module):
            return block
        block = inner
    return block


def ln_scale_factor(layer_idx: int) -> float:
    return 1.0 / math.sqrt(layer_idx + 1)


class LNScale(Technique):
    name = "ln_scale"
    summary = "scale every block's input norms by 1/sqrt(layer + 1)"
    source = "2026-03-21_11L_XSA4_EMA_PartialRoPE_LateQAT_1.1248"
    source_result = ("with partial RoPE, the record's only effective change over PR #287: 1.1271 -> 1.1248 BPB "
                     "(sliding s64, -0.0023 together); kept by the frontier record (F:1124)")

    @hookimpl
    def on_model_built(self, model, config):
        for i, block in enumerate(model.blocks):
            inner = unwrapped(block)
            for name in NORMS:
                norm = getattr(inner, name, None)
                if isinstance(norm, RMSNorm):
                    norm.scale = ln_scale_factor(i)
