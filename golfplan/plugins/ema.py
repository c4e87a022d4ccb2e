"""EMA: an fp32 exponential moving average of the weights, swapped in when training ends.

The record (records/.../2026-04-27_..._1.0611/train_gpt.py:287, 3469-3474, 3519-3521, 3544-3549):
``EMA_DECAY=0.9965``. Once priming is over and the weights are back at their initial values, it
makes an fp32 copy of every entry of ``state_dict(keep_vars=True)`` (parameters and persistent
buffers: the record has no persistent buffer, so in effect its parameters); after every optimizer
step ``ema = d·ema + (1 - d)·w``; after the loop it loads the shadow (cast back to each tensor's
dtype) before the diagnostic evaluation, GPTQ and the export. After N steps the shadow is therefore
``d^N·w_0 + Σ_k (1 - d)·d^(N-k)·w_k``: with d = 0.9965 the last ~285 steps (1/(1 - d), 6 % of the
record's 4,945) carry 63 % of the weight.

Here the shadow is taken in ``after_backward`` of the first training step (after its backward,
before its update: the same weights ``w_0`` the record copies before the loop), updated in ``on_step`` with two fused
``torch._foreach`` ops (no host sync), and copied into the model in ``on_train_end``, which runs
before the pre-export evaluation, calibration and export. As the record's, it shadows every floating
entry of the state dict, persistent buffers included (e.g. ``head_pruning``'s 0/1 head mask is
averaged like a weight); integer buffers are left as they are. A technique that replaces parameter
tensors mid-run (rather than editing them in place) would leave the shadow following the old ones.
Fills the ``weight_averaging`` slot (excludes ``swa``).

**Horizon (golfplan.core.train.horizon).** The decay is set as a half-life, a fraction of the run:
``half_life`` 0.03998 is the record's 0.9965 per step over its 4,945 steps (``0.9965^(0.03998 x 4945)
= 1/2``). Each step decays by ``0.5^(1 / (half_life x H))`` with ``H`` the run's length in steps: its
``iterations`` on a run capped by steps (a 4,945-step run gets 0.9965 exactly; the ``cpu`` profile's
40 steps get 0.648, so the average covers the same last 4 % of the run instead of staying 87 % at
the initial weights); on a run capped by time, the steps it reaches at its pace so far, which is the
record's 4,945 on the record's own run as it ends, where the average takes its weight.
"""

from __future__ import annotations

import torch

from golfplan.core.train.horizon import decay_per_step, half_life_of, horizon_steps
from golfplan.core.state import floating_state
from golfplan.core.technique import Float, Technique, hookimpl

RECORD_DECAY, RECORD_STEPS = 0.9965, 4945  # EMA_DECAY and the steps of the record's seed-42 run


class EMA(Technique):
    name = "ema"
    summary = "fp32 exponential moving average of the weights (half-life 4 % of the run), swapped in when training ends"
    slot = "weight_averaging"
    params = {"half_life": Float(half_life_of(RECORD_DECAY, RECORD_STEPS), 0.002, 0.5, log=True,
                                 help="fraction of the run over which a weight's share halves (0.04: the record's "
                                      "decay 0.9965 over its 4,945 steps)")}
    source = "2026-04-27_SP8192_LQER_SparseGate_BOSSmearFix_9HpStack_1.0611"
    source_result = ("seed-42 log: val_bpb 1.0756 with the last step's weights, 1.06396 with the EMA's "
                     "(pre-quantisation, -0.0116); EMA 0.997 replaced SWA in 2026-03-20_11L_XSA4_EMA_Int6_MLP3x_WD04_1.1271")

    def __init__(self, **values) -> None:
        super().__init__(**values)
        self.names: list[str] = []  # state-dict names of the averaged tensors
        self.live: list[torch.Tensor] | None = None  # the model's tensors, once each
        self.shadow: list[torch.Tensor] | None = None  # their fp32 averages, in the same order
        self.steps = 0
        self.decay: float | None = None  # the last step's decay

    def start(self, model) -> None:
        self.names, self.live = floating_state(model)
        with torch.no_grad():
            self.shadow = [t.detach().float().clone() for t in self.live]

    @hookimpl
    def after_backward(self, model, clock):
        if self.shadow is None:  # the first step, before any update: the shadow starts at w_0
            self.start(model)

    @hookimpl
    def on_step(self, model, optimizers, clock):
        if self.shadow is None:
            return
        d = decay_per_step(self.p.half_life, horizon_steps(clock))
        self.decay = d
        torch._foreach_mul_(self.shadow, d)
        torch._foreach_add_(self.shadow, self.live, alpha=1.0 - d)
        self.steps += 1

    @hookimpl
    def on_train_end(self, model, optimizers, clock):
        if self.shadow is None:
            return
        for t, avg in zip(self.live, self.shadow):
            t.copy_(avg)
