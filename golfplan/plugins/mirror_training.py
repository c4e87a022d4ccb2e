"""Mirror training: in training, a random ``frac`` of each batch's sequences are read right to left.

A training row is a window of T+1 tokens ``s_0 .. s_T`` split as input ``x = s_0..s_{T-1}``
and target ``y = s_1..s_T``. Reversing the window gives input ``s_T..s_1`` = ``flip(y)``
and target ``s_{T-1}..s_0`` = ``flip(x)``: every target is still the next token of its
(reversed) input, so on those rows the model learns to predict the previous token.
Each micro-step, ``round(frac x batch)`` rows are drawn uniformly (a random permutation
from the global torch RNG, so runs seeded alike repeat) and swapped with
``torch.where``: plain tensor code with no branch, compile-safe. Validation is never
mirrored (forward functions apply in training only).
"""

from __future__ import annotations

import torch
from torch import Tensor

from golfplan.core.state import ForwardContext
from golfplan.core.technique import Float, Technique, hookimpl


def mirror(input_ids: Tensor, target_ids: Tensor, chosen: Tensor) -> tuple[Tensor, Tensor]:
    """Reverse the token windows of the rows where ``chosen`` (shape (batch,), bool) is true."""
    pick = chosen[:, None]
    return (torch.where(pick, target_ids.flip(-1), input_ids),
            torch.where(pick, input_ids.flip(-1), target_ids))


def choose_rows(batch: int, frac: float, device: torch.device) -> Tensor:
    """Which rows to mirror: ``round(frac * batch)`` of them, drawn uniformly (global torch RNG)."""
    k = int(round(frac * batch))
    order = torch.rand(batch, device=device).argsort()
    return torch.zeros(batch, dtype=torch.bool, device=device).index_fill(0, order[:k], True)


class MirrorTraining(Technique):
    name = "mirror_training"
    summary = "reverse a random frac of each batch's training sequences (input/target windows kept consistent)"
    params = {"frac": Float(0.5, 0.05, 0.95, help="fraction of each batch's sequences reversed")}
    seed_refs = ("U5",)
    seed_result = "U5: Mirror Training (reverse 50% of input sequences) - Not reached"

    @hookimpl
    def on_batch(self, config):
        frac = self.p.frac

        def f(input_ids: Tensor, target_ids: Tensor, ctx: ForwardContext) -> tuple[Tensor, Tensor]:
            return mirror(input_ids, target_ids, choose_rows(input_ids.size(0), frac, input_ids.device))

        return f
