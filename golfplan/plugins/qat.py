"""Int6 quantization-aware training (straight-through), optionally switched on late by a tensor flag.

Every linear layer's training forward uses its weight fake-quantized on the int6 row grid, with
gradients flowing to the float weight as if the rounding were not there (straight-through):

    s = max|row| / 31;   w_q = clamp(round(w / s), -32, 31) * s;   w' = w + flag * (w_q - w).detach()

as 2026-03-22_11L_EMA_GPTQ-lite's ``CastedLinear`` (2026-03-19_MixedQuant_Int6Int8 introduced
it). Evaluation and export see the float weights; the export's quantizer does the real rounding.
With ``late`` (the 03-22 record: ``LATE_QAT_THRESHOLD=0.15``) the flag starts at 0 and turns 1 at
the first step whose LR multiplier (an optimizer group's ``lr / base_lr``, a host float: no
sync) is below ``threshold``, and stays 1.

The flag is a buffer of each layer (a tensor the compiled graph reads), never a Python attribute:
the records' class attribute was constant-folded by ``torch.compile``, so their late QAT never ran
(leaderboard-techniques.md). Flipping it changes the compiled graph's output without a recompile
(tests/plugins/test_frontier_quant.py counts the compilations).

Readings chosen: the record floors s at 1/31, which at golfplan's CPU widths (weights ~0.05) puts
most weights on zero; here s is floored at 1e-10. The layers are every ``CastedLinear`` of the
model (the record's rule: all of them, the untied head included); ``nn.Embedding`` sees no fake
quantization, as in the record.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from golfplan.core.model.gpt import CastedLinear
from golfplan.core.train.optim import lr_scale
from golfplan.core.export.quant import SCALE_FLOOR, max_code
from golfplan.core.technique import Bool, Float, Int, Technique, hookimpl


class QATLinear(CastedLinear):
    """A CastedLinear whose training forward sees its weight on the ``qat_top`` row grid while its
    ``qat_on`` buffer is 1 (straight-through gradients)."""

    qat_top: int = 31

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight
        if self.training:
            w32 = w.detach().float()
            s = (w32.abs().amax(dim=1, keepdim=True) / self.qat_top).clamp_min(SCALE_FLOOR)
            wq = torch.clamp(torch.round(w32 / s), -self.qat_top - 1, self.qat_top) * s
            w = w + self.qat_on.to(w.dtype) * (wq.to(w.dtype) - w.detach())
        bias = self.bias.to(x.dtype) if self.bias is not None else None
        return F.linear(x, w.to(x.dtype), bias)


class QAT(Technique):
    name = "qat"
    summary = "int6 straight-through fake quantization of every linear layer in training; late: on once LR < 0.15"
    params = {
        "bits": Int(6, 4, 8, help="code width of the fake-quantization grid"),
        "late": Bool(True, help="start off, switch on once the LR multiplier drops below threshold"),
        "threshold": Float(0.15, 0.01, 0.5, help="LR multiplier below which late QAT switches on"),
    }
    source = "2026-03-22_11L_EMA_GPTQ-lite_warmdown3500_QAT015_1.1233"
    source_result = ("late QAT threshold 0.1 -> 0.15: -0.0001 BPB (README table); stack 1.1233 (3-seed mean); "
                     "STE int6 QAT: quant gap ~0 at ~4 % slower steps (2026-03-19_MixedQuant)")

    def __init__(self, **values) -> None:
        super().__init__(**values)
        self._switched = False

    @hookimpl
    def on_model_built(self, model, config):
        for module in model.modules():
            if type(module) is CastedLinear:
                module.__class__ = QATLinear
                module.qat_top = max_code(self.p.bits)
                module.register_buffer("qat_on", torch.tensor(0.0 if self.p.late else 1.0), persistent=False)

    @hookimpl
    def on_step(self, model, optimizers, clock):
        if not self.p.late or self._switched:
            return
        scale = lr_scale(optimizers)
        if (1.0 if scale is None else scale) >= self.p.threshold:
            return
        self._switched = True
        for module in model.modules():
            if isinstance(module, QATLinear):
                module.qat_on.fill_(1.0)
