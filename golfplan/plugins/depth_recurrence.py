"""Depth recurrence: a middle segment of the blocks runs several times, with the same weights, once
training has gone far enough.

The record (F:260-263 settings, F:1208-1220 the order, F:3509-3516 the switch): ``NUM_LOOPS=2``,
``LOOP_START=3``, ``LOOP_END=5``, ``ENABLE_LOOPING_AT=0.35`` on 11 layers. The virtual sequence is
the blocks before the segment, the segment ``loops + 1`` times, then the blocks after it::

    [0, 1, 2] + [3, 4, 5] * 3 + [6, 7, 8, 9, 10]      (17 virtual layers)

split in halves into a U-Net: encoder [0, 1, 2, 3, 4, 5, 3, 4], decoder [5, 3, 4, 5, 6, 7, 8, 9, 10],
so 8 skips. Before the switch the baseline's split runs (encoder 0-4, decoder 5-10, 5 skips). No
parameter is added except skip weights: the model holds one per skip of the longer order (8 rows
instead of 5 at 11 layers, as the record, whose ``skip_weights`` also has 8 rows); rows 5-7 stay at
their init until the switch. Recurrence makes every step after the switch slower (17 block calls
instead of 11).

Both orders are ``layer_orders``; ``on_step`` sets ``model.stack.active`` from the step's progress
(host side, no sync). The core primes every order before the timed loop, so the switch picks a graph
already compiled: no recompilation inside the timed loop (the check's trace follows the switch).

Readings chosen here:
- the segment's bounds are fractions of the depth (``layer_at``): 0.273 and 0.455 (3/11 and 5/11)
  give blocks 3 and 5 at 11 layers, blocks 1 and 2 at 4;
- the switch is made in ``on_step`` after the first step whose progress reaches ``enable_at``; the
  record switches before that step, one step earlier;
- with the U-Net split set explicitly (``unet``), the looped order keeps that fraction of the virtual
  layers in its encoder (0 stays a pure decoder); the default split is the record's halves;
- ``enable_at=0`` builds only the looped order (recurrence from the first step).
"""

from __future__ import annotations

from golfplan.core.config import Config
from golfplan.core.model.gpt import LayerOrder, layer_at, unet_order
from golfplan.core.technique import Float, Int, Technique, hookimpl

SOURCE = "2026-04-27_SP8192_LQER_SparseGate_BOSSmearFix_9HpStack_1.0611"
FLAT, LOOPED = "flat", "looped"


def virtual_layers(num_layers: int, start: int, end: int, loops: int) -> list[int]:
    """The blocks in the order they run: those before ``start``, blocks ``start..end`` (inclusive)
    ``loops + 1`` times, then the rest (the record's ``all_indices``)."""
    segment = list(range(start, end + 1))
    return list(range(start)) + segment * (loops + 1) + list(range(end + 1, num_layers))


def looped_order(config: Config, start: int, end: int, loops: int) -> LayerOrder:
    """The virtual layers split into encoder and decoder: in halves (the record), or in the
    config's explicit U-Net proportion."""
    seq = virtual_layers(config.num_layers, start, end, loops)
    if config.encoder_layers < 0:
        n_enc = len(seq) // 2
    else:
        n_enc = round(len(seq) * config.num_encoder_layers / config.num_layers)
    return tuple(seq[:n_enc]), tuple(seq[n_enc:])


class DepthRecurrence(Technique):
    name = "depth_recurrence"
    summary = "blocks loop_start..loop_end run loops+1 times once progress reaches enable_at (17 virtual of 11)"
    slot = "layer_orders"
    params = {
        "loop_start": Float(0.273, 0.0, 1.0, help="first looped block, as a fraction of the depth "
                                                   "(layer_at; record: block 3 of 11)"),
        "loop_end": Float(0.455, 0.0, 1.0, at_least="loop_start",
                          help="last looped block (inclusive), as a fraction of the depth (record: block 5 of 11)"),
        "loops": Int(2, 1, 4, help="extra passes over the segment (record NUM_LOOPS=2: it runs 3 times)"),
        "enable_at": Float(0.35, 0.0, 0.9, help="training progress at which the loop switches on (0: always on)"),
    }
    source = SOURCE
    source_result = ("part of the record's stack, 1.06108 BPB (3-seed mean); not ablated there. "
                     "2026-03-31_ParallelResiduals_MiniDepthRecurrence: looping 2 middle layers was worth "
                     "about 0.002-0.003 BPB, and switching it on mid-run 1.1153 vs 1.1163 always-on (post-TTT)")

    def bounds(self, num_layers: int) -> tuple[int, int]:
        return layer_at(self.p.loop_start, num_layers), layer_at(self.p.loop_end, num_layers)

    @hookimpl
    def layer_orders(self, config):
        start, end = self.bounds(config.num_layers)
        looped = looped_order(config, start, end, self.p.loops)
        if self.p.enable_at <= 0:
            return {LOOPED: looped}
        return {FLAT: unet_order(config), LOOPED: looped}

    @hookimpl
    def on_step(self, model, optimizers, clock):
        model.stack.active = LOOPED if clock.progress >= self.p.enable_at else FLAT
