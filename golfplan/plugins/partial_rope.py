"""Partial RoPE: rotate only the first quarter of each head's dims; the rest carry no position.

Rotary embeddings on the first ``rope_dims`` dims of every q and k head (frequencies
``base^(-2i/rope_dims)`` over those dims), the other dims pass through unrotated, so part of
each head can match content regardless of distance. Zero parameters.

Source: record 2026-03-21_11L_XSA4_EMA_PartialRoPE_LateQAT_1.1248 (``ROPE_DIMS=16`` of 64
head dims, introduced together with LN scale: 1.1271 -> 1.1248); the frontier record keeps
16 of 64 with base 1e4 and no YaRN (F:255-258, 889-938).

Settings: ``fraction`` is the share of the head dim rotated, so it scales with the head:
``rope_dims = max(2, round(fraction * head_dim / 2) * 2)`` (even, at least one pair), from
the head dim of the config the plugins configure: 0.25 of 64 is the record's 16, 0.25 of the
tiny test model's 16 is 4. It sets ``Config.rope_dims``; the core rotates only those dims
(``golfplan.core.model.gpt.apply_rotary_emb``). ``golfplan check`` shrinks the config and
``config.shrink`` keeps the share: 16 of 64 becomes 2 of the shrunken 8-dim heads
(8 heads x 64 wide), the same 25 %. Every ``configure`` reads the same pre-plugin config, so
with a plugin that changes the width (``width``) the dims are computed from the baseline's
head dim: the share then differs, and a rope_dims above the new head dim is refused by the
config check. Combines with ``rope_base`` (the base of the rotated dims).
"""

from __future__ import annotations

from golfplan.core.technique import Float, Technique, hookimpl


def rope_dims_for(fraction: float, head_dim: int) -> int:
    """The even number of dims ``fraction`` of a head rotates (at least 2, at most the head)."""
    return min(max(2, round(fraction * head_dim / 2) * 2), head_dim)


class PartialRope(Technique):
    name = "partial_rope"
    summary = "RoPE on only a share of each head's dims (the record: 16 of 64); the rest are position-free"
    params = {"fraction": Float(0.25, 0.125, 0.75, help="share of each head's dims rotated: rope_dims = "
                                                          "round(fraction * head_dim / 2) * 2, at least 2")}
    source = "2026-03-21_11L_XSA4_EMA_PartialRoPE_LateQAT_1.1248"
    source_result = ("with LN scale, the record's only effective change over PR #287: 1.1271 -> 1.1248 BPB "
                     "(sliding s64, -0.0023 together; late QAT was dead code); the frontier keeps 16/64")

    @hookimpl
    def configure(self, config):
        return {"rope_dims": rope_dims_for(self.p.fraction, config.head_dim)}
