"""Sandwich norm: an extra RMSNorm on the attention branch's output, before the residual add.

x = mix(x, x0);  x = x + s_a·norm(attn(norm(x)));  x = x + s_m·mlp(norm(x))

The seed's A9 ("Extra RMSNorm after attention") is read literally: only the
attention output is normalised, so the branch enters the residual with RMS 1
times the learned ``attn_scale`` (which acts as the norm's gain). ``mlp=True``
also normalises the MLP output (the full CogView-style sandwich).

It puts the norms at each block's ``attn_post``/``mlp_post`` points (``on_model_built``)
instead of building its own block, so it combines with any block wiring that uses the
baseline's branches: ``parallel`` (norms inside a parallel block), ``attention_recycling``.
Static wiring, compile-safe.
"""

from __future__ import annotations

from golfplan.core.model.gpt import Block, RMSNorm
from golfplan.core.technique import Bool, Technique, hookimpl


class SandwichNorm(Technique):
    name = "sandwich_norm"
    summary = "extra RMSNorm on the attention output before the residual add (optionally the MLP's too)"
    params = {"mlp": Bool(False, help="also normalise the MLP output")}
    seed_refs = ("A9",)
    seed_result = "A9: Sandwich Norm 1.5983 (-0.013, 239 steps, Minor help)"

    @hookimpl
    def on_model_built(self, model, config):
        for block in model.blocks:
            inner = getattr(block, "block", block)  # through a wrap_block wrapper
            if isinstance(inner, Block):
                inner.attn_post = RMSNorm()
                if self.p.mlp:
                    inner.mlp_post = RMSNorm()
