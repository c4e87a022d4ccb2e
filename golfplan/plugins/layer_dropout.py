"""Layer dropout (stochastic depth): in training, skip each block with probability ``p``.

Every block is wrapped; on each training forward the wrapper draws from its own
host RNG (``random.Random`` seeded from the run seed and the layer index, so runs
repeat and every DDP rank skips the same layers) and, on a skip, returns the
residual stream unchanged without running the block at all: the compute is really
saved. A skipped block contributes nothing (no ``resid_mix``, no branches) and
the kept blocks are not rescaled (the seed's "randomly skip layers with 20 %
probability", read literally). Evaluation always runs every block.

Not compile-safe: the forward branches on a random draw made each call, which a
single static graph cannot express (the seed's U1 crashed under
``torch.compile(fullgraph=True)``). Runs only in eager mode with ``--allow-eager``.
"""

from __future__ import annotations

import random

from torch import Tensor, nn

from golfplan.core.state import ForwardContext
from golfplan.core.technique import Float, Technique, hookimpl


class LayerDropBlock(nn.Module):
    """Wraps a block; in training, skips it with probability ``p`` on a host random draw."""

    def __init__(self, block: nn.Module, p: float, seed: int) -> None:
        super().__init__()
        self.block = block
        self.p = p
        self.rng = random.Random(seed)

    def forward(self, x: Tensor, x0: Tensor, ctx: ForwardContext) -> Tensor:
        if self.training and self.rng.random() < self.p:
            return x
        return self.block(x, x0, ctx)


class LayerDropout(Technique):
    name = "layer_dropout"
    summary = "stochastic depth: skip each block's compute with probability p in training"
    slot = "block_wrapper"
    compile_safe = False
    unsafe_reason = "branches on a host random draw every forward (which blocks run changes per step)"
    params = {"p": Float(0.2, 0.0, 0.5, help="probability of skipping a block in a training forward")}
    seed_refs = ("U1",)
    seed_result = "U1: Layer Dropout 20% - CRASH: torch.compile (no BPB)"

    @hookimpl
    def wrap_block(self, config, layer_idx, block):
        return LayerDropBlock(block, self.p.p, seed=config.seed * 1009 + layer_idx)
