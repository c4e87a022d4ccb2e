"""Progressive growing: train the first ``start_layers`` blocks, then activate one more every ``every`` of progress.

The seed's U3 ("start with 3 layers, add one every 60 steps" of a 240-step run)
read on progress: ``active = min(num_layers, start_layers + floor(progress / every))``
with ``every = 60/240 = 0.25``. Layers ``0 .. active-1`` run; the others pass the
residual stream through untouched and cost nothing. With the seed's settings on 9
layers the count goes 3 -> 4 -> 5 -> 6 at progress 0, 0.25, 0.5, 0.75, so three
layers are never trained nor run, yet their initial weights still count in the
artifact; a smaller ``every`` reaches full depth sooner. The count is updated in
``on_step`` from the progress of the step just finished and used from the next step
on; evaluation uses the current count (the model as trained so far).

Not compile-safe: which blocks run is Python state read by the forward and it
changes mid-run, so each change retraces (the seed's U3 gave no training at all).
Runs only in eager mode with ``--allow-eager``.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from golfplan.core.state import ForwardContext
from golfplan.core.technique import Float, Int, Technique, hookimpl


def active_layers(progress: float, start_layers: int, every: float, num_layers: int) -> int:
    """How many leading layers run at ``progress``."""
    return min(num_layers, start_layers + int(math.floor(progress / every + 1e-9)))


class GrowBlock(nn.Module):
    """Wraps a block; runs it only while ``active`` (a Python flag set by ``on_step``)."""

    def __init__(self, block: nn.Module, layer_idx: int, active: bool) -> None:
        super().__init__()
        self.block = block
        self.layer_idx = layer_idx
        self.active = active

    def forward(self, x: Tensor, x0: Tensor, ctx: ForwardContext) -> Tensor:
        if not self.active:
            return x
        return self.block(x, x0, ctx)


class ProgressiveGrowing(Technique):
    name = "progressive_growing"
    summary = "start with start_layers active blocks, activate one more every `every` of progress"
    slot = "block_wrapper"
    compile_safe = False
    unsafe_reason = "the active layer count is Python state read by forward and changes mid-run (retraces)"
    params = {
        "start_layers": Int(3, 1, 12, help="blocks active at the start"),
        "every": Float(0.25, 0.02, 0.5, help="progress between two activations (seed: 60 of 240 steps)"),
    }
    seed_refs = ("U3",)
    seed_result = "U3: Progressive Growing 3 layers +1 every 60 steps - 4.1069, BROKEN: no training"

    def count(self, progress: float, num_layers: int) -> int:
        return active_layers(progress, self.p.start_layers, self.p.every, num_layers)

    @hookimpl
    def wrap_block(self, config, layer_idx, block):
        return GrowBlock(block, layer_idx, active=layer_idx < self.count(0.0, config.num_layers))

    @hookimpl
    def on_step(self, model, optimizers, clock):
        blocks = [m for m in model.modules() if isinstance(m, GrowBlock)]
        n = self.count(clock.progress, len(blocks))
        for m in blocks:
            m.active = m.layer_idx < n
