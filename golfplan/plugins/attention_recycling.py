"""Attention recycling: each block runs its attention sublayer twice, with the same weights.

x = mix(x, x0);  x = x + s_a·attn(norm(x));  x = x + s_a·attn(norm(x));  x = x + s_m·mlp(norm(x))

The seed's U4 ("run attention twice per layer") read as two sequential pre-norm
attention passes sharing the block's attention weights, norm and branch scale:
a second round of token mixing per layer for no extra parameters (one more
attention's compute). Static wiring, compile-safe (the seed's crash came from its
patch, not from the idea). Takes the ``block`` slot (excludes parallel, sandwich_norm).
"""

from __future__ import annotations

from torch import Tensor

from golfplan.core.model.gpt import Block
from golfplan.core.state import ForwardContext
from golfplan.core.technique import Int, Technique, hookimpl


class RecycledAttentionBlock(Block):
    """The baseline block with its attention sublayer applied ``passes`` times."""

    def __init__(self, config, attn, mlp, passes: int = 2) -> None:
        super().__init__(config, attn, mlp)
        self.passes = passes

    def forward(self, x: Tensor, x0: Tensor, ctx: ForwardContext) -> Tensor:
        x = self.mix(x, x0)
        for _ in range(self.passes):
            x = x + self.attn_out(x, ctx)
        return x + self.mlp_out(x, ctx)


class AttentionRecycling(Technique):
    name = "attention_recycling"
    summary = "run each block's attention sublayer twice with the same weights"
    slot = "block"
    params = {"passes": Int(2, 2, 4, help="attention passes per block")}
    seed_refs = ("U4",)
    seed_result = "U4: Attention Recycling (attention twice per layer) - CRASH: torch.compile (no BPB)"

    @hookimpl
    def build_block(self, config, layer_idx, attn, mlp):
        return RecycledAttentionBlock(config, attn, mlp, passes=self.p.passes)
