"""Sandwich norm: an extra RMSNorm on the attention branch's output, before the residual add.

x = mix(x, x0);  x = x + s_a·norm(attn(norm(x)));  x = x + s_m·mlp(norm(x))

The seed's A9 ("Extra RMSNorm after attention") is read literally: only the
attention output is normalised, so the branch enters the residual with RMS 1
times the learned ``attn_scale`` (which acts as the norm's gain). ``mlp=True``
also normalises the MLP output (the full CogView-style sandwich). Static wiring,
compile-safe. Takes the ``block`` slot, so it excludes ``parallel``.
"""

from __future__ import annotations

from torch import Tensor, nn

from golfplan.core.config import Config
from golfplan.core.model import Block, RMSNorm
from golfplan.core.state import ForwardContext
from golfplan.core.technique import Bool, Technique, hookimpl


class SandwichBlock(Block):
    """The baseline block with an RMSNorm on the attention output (and optionally the MLP output)."""

    def __init__(self, config: Config, attn: nn.Module, mlp: nn.Module, norm_mlp: bool = False) -> None:
        super().__init__(config, attn, mlp)
        self.attn_out_norm = RMSNorm()
        self.mlp_out_norm: nn.Module = RMSNorm() if norm_mlp else nn.Identity()

    def forward(self, x: Tensor, x0: Tensor, ctx: ForwardContext) -> Tensor:
        x = self.mix(x, x0)
        x = x + self.scaled(self.attn_scale, self.attn_out_norm(self.attn(self.attn_norm(x))), ctx)
        x = x + self.scaled(self.mlp_scale, self.mlp_out_norm(self.mlp(self.mlp_norm(x))), ctx)
        return x


class SandwichNorm(Technique):
    name = "sandwich_norm"
    summary = "extra RMSNorm on the attention output before the residual add (optionally the MLP's too)"
    slot = "block"
    params = {"mlp": Bool(False, help="also normalise the MLP output")}
    seed_refs = ("A9",)
    seed_result = "A9: Sandwich Norm 1.5983 (-0.013, 239 steps, Minor help)"

    @hookimpl
    def build_block(self, config, layer_idx, attn, mlp):
        return SandwichBlock(config, attn, mlp, norm_mlp=self.p.mlp)
