"""SWA: a uniform average of weight snapshots taken late in training (the source: every 50 steps), swapped in at the end.

The source (records/track_10min_16mb/2026-03-20_Int6_MLP3x_SmearGate_BigramHash_MuonWD_SWA,
train_gpt.py:1107-1147): ``SWA_EVERY=50``, ``SWA_START_FRAC=0.5``. Its README says "every 50 steps
over the last 50 % of training", but the code's condition is on the LR: after every optimizer step
``s`` (counted from 1) with ``s % 50 == 0`` *and the step's LR multiplier below 0.5*, it adds the
whole state dict to a running sum (the first snapshot starts it); after the loop, when more than one
snapshot was taken, it loads ``sum / count`` (cast to each tensor's dtype) before the export. With
its wallclock warmdown of 3000 steps the multiplier fell below 0.5 for the last ~1500 of 7,379
steps: its seed-1337 log says ``swa:start step:5900`` and ``swa:applying averaged 30 checkpoints``.
2026-03-20_10L_Int5MLP_MuonWD04_SWA50 used 0.4 and measured -0.0006 BPB for it.

Here: the code's reading, the LR multiplier, which every schedule gives (with ``frontier_lr`` the
multiplier is below 0.5 from progress 0.575: the last 42.5 % of the run; with the baseline's linear
warmdown, the last half of ``warmdown_iters``). ``on_step`` reads the multiplier the step just used
from the optimizers (``lr / base_lr`` of the first group with a positive base LR: host floats, no
GPU sync) and adds a snapshot to an fp32 sum on the weights' device; ``on_train_end`` loads the
average before the pre-export evaluation and export. Parameters and floating persistent buffers are
averaged, as the source's state-dict average. Fills the ``weight_averaging`` slot (excludes ``ema``).

**Horizon (golfplan.core.train.horizon).** ``every`` is a fraction of the run: 0.00678 is the source's 50
steps of its 7,379, so a 7,379-step run snapshots after steps 50, 100, ... exactly as the source, and
any other run at the same places in its own length (``horizon.Every``: the first step that reaches each
multiple; on a run capped by time, the multiples of its wallclock share). A period shorter than a step
(the ``cpu`` profile's 40 steps) snapshots every step while the multiplier is below ``below``. ``below``
reads the LR multiplier, which every schedule already sets on progress: it needs no rescaling.
"""

from __future__ import annotations

import torch

from golfplan.core.train.horizon import Every
from golfplan.core.train.optim import lr_scale
from golfplan.core.state import floating_state
from golfplan.core.technique import Float, Technique, hookimpl

SOURCE_EVERY, SOURCE_STEPS = 50, 7379  # SWA_EVERY and the steps of the source's seed-1337 run


class SWA(Technique):
    name = "swa"
    summary = "uniform average of snapshots every 0.68 % of the run (the source's 50 steps) while the LR multiplier is below 0.5"
    slot = "weight_averaging"
    params = {
        "every": Float(SOURCE_EVERY / SOURCE_STEPS, 0.0005, 0.5, log=True,
                       help="fraction of the run between snapshots (0.00678: the source's 50 of its 7,379 steps)"),
        "below": Float(0.5, 0.05, 1.0, help="only while the LR multiplier is below this (the source's SWA_START_FRAC)"),
    }
    source = "2026-03-20_Int6_MLP3x_SmearGate_BigramHash_MuonWD_SWA"
    source_result = ("not isolated there: 30 snapshots (every 50 steps from step 5900 of 7379) in its 1.1458 BPB stack "
                     "(3 seeds); 2026-03-20_10L_Int5MLP_MuonWD04_SWA50 measured SWA_START_FRAC 0.4: -0.0006 BPB")

    def __init__(self, **values) -> None:
        super().__init__(**values)
        self.live: list[torch.Tensor] | None = None
        self.total: list[torch.Tensor] | None = None  # fp32 sums of the snapshots
        self.taken: list[int] = []  # the steps (counted from 1) at which snapshots were taken
        self.due = Every(self.p.every)

    def snapshot(self, model, step: int) -> None:
        with torch.no_grad():
            if self.total is None:
                _, self.live = floating_state(model)
                self.total = [t.detach().float().clone() for t in self.live]
            else:
                torch._foreach_add_(self.total, self.live)
        self.taken.append(step)

    @hookimpl
    def on_step(self, model, optimizers, clock):
        if not self.due(clock):
            return
        scale = lr_scale(optimizers)
        if scale is not None and scale < self.p.below:
            self.snapshot(model, clock.step + 1)

    @hookimpl
    def on_train_end(self, model, optimizers, clock):
        if self.total is None or len(self.taken) < 2:  # as the source: one snapshot is not an average
            return
        n = float(len(self.taken))
        for t, s in zip(self.live, self.total):
            t.copy_(s / n)
