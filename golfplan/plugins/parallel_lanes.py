"""Parallel residual lanes: from a given block on, the decoder carries two residual streams.

From block ``start`` on (the record's ``PARALLEL_START_LAYER=8`` of 11; F:264-265, 1234-1241,
1291-1322), attention reads lane 0 (mixed with the embedding x0 through the block's ``resid_mix``)
and the MLP reads lane 1, and both branch outputs are written into both lanes with learned weights::

    a = attn_out(mix(lane0, x0));  m = mlp_out(lane1)
    lane_k = r_k·lane_k + p_attn→k·a + p_mlp→k·m          (k = 0, 1)

with r (``lane_resid``, one pair per block, init 1.1) and p (``lane_post``, a 2x2 per block, init 1).
Both lanes start as the stream entering the first lane block; a U-Net skip joins lane 0 (through the
run's skip merge, so ``skip_gates`` gates it); the stack's output is the mean of the two lanes (the
record's ``PARALLEL_FINAL_LANE=mean``). The branches are the block's own (``attn_out``/``mlp_out``:
norms, branch scales, sandwich norms and ``on_branch`` functions apply), so attention and MLP of a
lane block do not wait on each other.

As the record: lanes run in the decoder only, from the first decoder block whose index is at least
``start`` to the end of the decoder (with ``depth_recurrence`` at 11 layers the looped decoder
[5, 3, 4, 5, 6, 7, 8, 9, 10] enters the lanes at block 8, as the flat one [5, ..., 10] does). The
lambdas are indexed by block, one row per block of the model (rows of blocks that never run in a
lane stay at their init). ``start`` is a fraction of the depth (``layer_at``: 0.727 is block 8 at 11
layers, block 3 at 4).

Conflicts: ``parallel`` (its block has one shared norm for both branches read from one stream; in a
lane block the MLP reads another stream than attention, so the two definitions cannot both hold, and
its block has no ``mlp_norm`` for ``mlp_out``), ``attention_recycling`` (its second attention pass is
in its block's ``forward``, which a lane block does not call), ``layer_dropout`` and
``progressive_growing`` (their wrappers hide the branches the lanes call). A block from another
plugin that overrides ``Block.forward`` is refused at build for the same reason.

The lambdas are stored flat (1-D) so that a bf16 run keeps them in fp32, and ``param_role`` routes
them to the ``scalar`` optimizer (Adam), as the record's control tensors.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from golfplan.core.errors import PluginError
from golfplan.core.model.gpt import Block, LayerOrder, Stack, layer_at
from golfplan.core.state import ForwardContext
from golfplan.core.technique import Float, Technique, hookimpl

SOURCE = "2026-04-27_SP8192_LQER_SparseGate_BOSSmearFix_9HpStack_1.0611"


def lane_blocks(decoder: tuple[int, ...], start: int) -> tuple[int, ...]:
    """The decoder blocks that run as lanes: from the first one with index >= ``start`` to the end."""
    first = next((j for j, i in enumerate(decoder) if i >= start), len(decoder))
    return decoder[first:]


class LaneStack(Stack):
    """The U-Net stack whose decoder runs as two residual lanes from block ``start`` on."""

    def __init__(self, orders: dict[str, LayerOrder], merge: nn.Module, num_layers: int, start: int) -> None:
        super().__init__(orders, merge)
        self.start = start
        self.lane_resid = nn.Parameter(torch.full((num_layers * 2,), 1.1, dtype=torch.float32))
        self.lane_post = nn.Parameter(torch.ones(num_layers * 4, dtype=torch.float32))

    def lane_block(self, block: nn.Module, i: int, lane0: Tensor, lane1: Tensor, x0: Tensor,
                   ctx: ForwardContext) -> tuple[Tensor, Tensor]:
        a = block.attn_out(block.mix(lane0, x0), ctx)
        m = block.mlp_out(lane1, ctx)
        r = self.lane_resid.view(-1, 2)[i].to(dtype=lane0.dtype)
        p = self.lane_post.view(-1, 2, 2)[i].to(dtype=lane0.dtype)  # p[source (attn, mlp), lane]
        lane0 = r[0] * lane0 + p[0, 0] * a + p[1, 0] * m
        lane1 = r[1] * lane1 + p[0, 1] * a + p[1, 1] * m
        return lane0, lane1

    def forward(self, model, x: Tensor, x0: Tensor, ctx: ForwardContext) -> Tensor:
        encoder, decoder = self.orders[self.active]
        skips: list[Tensor] = []
        for i in encoder:
            x = model.blocks[i](x, x0, ctx)
            skips.append(x)
        lanes: tuple[Tensor, Tensor] | None = None
        for j, i in enumerate(decoder):
            if lanes is None and i >= self.start:
                lanes = (x, x)
            if lanes is None:
                if skips:
                    x = self.merge(x, skips.pop(), model.skip_weights[j], j)
                x = model.blocks[i](x, x0, ctx)
                continue
            lane0, lane1 = lanes
            if skips:
                lane0 = self.merge(lane0, skips.pop(), model.skip_weights[j], j)
            lanes = self.lane_block(model.blocks[i], i, lane0, lane1, x0, ctx)
        if lanes is not None:
            x = 0.5 * (lanes[0] + lanes[1])
        return x


class ParallelLanes(Technique):
    name = "parallel_lanes"
    summary = "from block `start` on, attention and MLP write two learned-mixed residual lanes; output = lane mean"
    slot = "stack"
    conflicts = ("parallel", "attention_recycling", "layer_dropout", "progressive_growing")
    params = {"start": Float(0.727, 0.0, 1.0, help="first lane block, as a fraction of the depth "
                                                    "(layer_at; record: block 8 of 11)")}
    source = SOURCE
    source_result = ("part of the record's stack, 1.06108 BPB (3-seed mean); not ablated there. "
                     "2026-03-31_ParallelResiduals_MiniDepthRecurrence: parallel residuals from layer 7, "
                     "1.1078 -> 1.1056 BPB (about -0.0022, one sample)")

    @hookimpl
    def build_stack(self, config, orders, merge):
        return LaneStack(orders, merge, config.num_layers, layer_at(self.p.start, config.num_layers))

    @hookimpl
    def on_model_built(self, model, config):
        stack = model.stack
        for i in sorted({i for _, decoder in stack.orders.values() for i in lane_blocks(decoder, stack.start)}):
            block = model.blocks[i]
            if not isinstance(block, Block) or type(block).forward is not Block.forward:
                raise PluginError(f"parallel_lanes runs block {i} as two lanes through attn_out/mlp_out/mix; "
                                  f"its {type(block).__name__} has its own forward, which the lanes would bypass")

    @hookimpl
    def param_role(self, name, param, config):
        return "scalar" if name in ("stack.lane_resid", "stack.lane_post") else None
