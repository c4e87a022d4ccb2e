"""Metamorphosis: dropout on every block branch, decaying from 10 % to 0 over the first half.

In training each branch output (attention, MLP) gets inverted dropout before its
residual add: ``y · (rand >= p) / (1 - p)`` with
``p = rate · max(0, 1 - progress / end)``, computed from ``ctx.progress`` as a tensor
so the graph never changes. At ``p = 0`` the mask is all ones and the output is
exactly ``y``. The seed's N6 never produced a result (its patch had an indentation
bug: train_loss 0.0000).
"""

from __future__ import annotations

import torch
from torch import Tensor

from golfplan.core.technique import Float, Technique, hookimpl


def dropout_rate(progress: Tensor, rate: float, end: float) -> Tensor:
    """``rate · max(0, 1 - progress / end)`` as a 0-d tensor."""
    return rate * torch.clamp(1.0 - progress / end, min=0.0)


def branch_dropout(y: Tensor, p: Tensor) -> Tensor:
    """Inverted dropout with a tensor rate ``p`` (no Python branch on it)."""
    keep = torch.rand_like(y) >= p.to(y.dtype)
    return y * keep / (1.0 - p).to(y.dtype)


class Metamorphosis(Technique):
    name = "metamorphosis"
    summary = "branch dropout decaying linearly from 10 % to 0 over the first half of the run"
    params = {
        "rate": Float(0.1, 0.0, 0.5, help="dropout rate at the start of the run"),
        "end": Float(0.5, 0.05, 1.0, help="progress at which the dropout reaches 0"),
    }
    seed_refs = ("N6",)
    seed_result = "N6: 4.1069 (BROKEN: indentation bug from patching, train_loss=0.0000); never measured"

    @hookimpl
    def on_branch(self, config):
        rate, end = self.p.rate, self.p.end
        return lambda y, ctx: branch_dropout(y, dropout_rate(ctx.progress, rate, end))
