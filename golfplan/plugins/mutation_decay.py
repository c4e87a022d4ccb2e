"""Mutation decay: Gaussian noise added to the weights after every step, decaying exponentially.

After each optimizer step every Muon matrix (the blocks' 2-D weights) gets
``std · N(0, 1)`` added in place, with ``std = initial · 0.5^(progress / half_life)``.
Readings chosen: the noise is absolute (NF9 quotes a bare 0.001 as the start), and
the decay runs on training progress (so it finishes on any run length, the wallclock
cap included), halving every ``half_life`` of the run (default 0.1: 1/1024 of the
start at the end). The noise comes from a ``torch.Generator`` on the weights' device
seeded from the run seed and the step. NF6: +0.002 (neutral); NF9 on tidal: ~same.
"""

from __future__ import annotations

import torch
from torch import Tensor

from golfplan.core.optim import split_params
from golfplan.core.technique import Float, Technique, hookimpl

_SALT = 0x5EED_0006


def mutation_std(progress: float, initial: float, half_life: float) -> float:
    """``initial · 0.5^(progress / half_life)``."""
    return initial * 0.5 ** (progress / half_life)


def add_noise_(params: list[Tensor], std: float, seed: int) -> None:
    """Add ``std · N(0, 1)`` to each tensor in place, drawn from a generator seeded with ``seed``."""
    gens: dict[torch.device, torch.Generator] = {}
    for p in params:
        if p.device not in gens:
            gens[p.device] = torch.Generator(device=p.device).manual_seed(seed)
        p.add_(torch.randn(p.shape, generator=gens[p.device], device=p.device, dtype=p.dtype), alpha=std)


class MutationDecay(Technique):
    name = "mutation_decay"
    summary = "Gaussian weight noise after every step, its std decaying exponentially with progress"
    params = {
        "initial": Float(1e-3, 1e-6, 1e-2, log=True, help="absolute noise std at the start"),
        "half_life": Float(0.1, 0.01, 1.0, log=True, help="fraction of the run over which the std halves"),
    }
    seed_refs = ("NF6", "NF9")
    seed_result = "NF6: 1.6132 (+0.002 vs cosine 1.6117, Neutral); NF9 tidal+mutation 0.001: 1.5902 (~same as tidal's 1.5906)"

    @hookimpl
    def on_step(self, model, optimizers, clock):
        std = mutation_std(clock.progress, self.p.initial, self.p.half_life)
        seed = (clock.seed * 1_000_003 + clock.step) ^ _SALT
        add_noise_(split_params(model)["matrix"], std, seed)
