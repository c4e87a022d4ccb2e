"""Weight noise: two techniques that add Gaussian noise to the block matrices after the step.

``weight_perturbation`` ("viral mutation"): every ``every`` of the run, add Gaussian noise.
After the optimizer step that reaches ``every``, ``2·every``, ... of the run, each Muon
matrix of the model (the blocks' 2-D weights) gets ``scale · N(0, 1)`` added in
place. Horizon (golfplan.core.train.horizon): the seed's "every 100 steps" of its 240-step runs
is the fraction 100/240 = 0.4167, so a 240-step run is perturbed after steps 100 and 200
exactly as the seed, a 40-step run after steps 17 and 34, a run capped by time at the
same shares of its cap: twice a run on any horizon. Readings chosen: ``scale`` is an
absolute standard deviation (the seed's NF10 quotes a bare 1e-4), the same for every
matrix, and only the block matrices are perturbed (not the embedding, head or control
tensors). The noise comes from a
``torch.Generator`` on the weights' device seeded from the run seed and the step,
so every rank draws the same noise. N4: -0.002 (slight help); NF10 on tidal: ~same.

``mutation_decay``: noise after every step, its std decaying exponentially.
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

from golfplan.core.train.horizon import Every
from golfplan.core.train.optim import split_params
from golfplan.core.technique import Float, Technique, hookimpl

_PERTURBATION_SALT = 0x5EED_0004
_MUTATION_SALT = 0x5EED_0006
SEED_EVERY, SEED_STEPS = 100, 240  # N4: "every 100 steps" of the seed's 240-step runs


def add_noise_(params: list[Tensor], std: float, seed: int) -> None:
    """Add ``std · N(0, 1)`` to each tensor in place, drawn from a generator seeded with ``seed``."""
    gens: dict[torch.device, torch.Generator] = {}
    for p in params:
        if p.device not in gens:
            gens[p.device] = torch.Generator(device=p.device).manual_seed(seed)
        p.add_(torch.randn(p.shape, generator=gens[p.device], device=p.device, dtype=p.dtype), alpha=std)


def mutation_std(progress: float, initial: float, half_life: float) -> float:
    """``initial · 0.5^(progress / half_life)``."""
    return initial * 0.5 ** (progress / half_life)


class WeightPerturbation(Technique):
    name = "weight_perturbation"
    summary = "twice a run (the seed's every 100 of 240 steps), add Gaussian noise of a fixed std to the block matrices"
    params = {
        "scale": Float(1e-4, 1e-6, 1e-2, log=True, help="absolute std of the noise"),
        "every": Float(SEED_EVERY / SEED_STEPS, 0.005, 1.0, log=True,
                       help="fraction of the run between perturbations (0.4167: the seed's 100 of its 240 steps)"),
    }
    seed_refs = ("N4", "NF10")
    seed_result = "N4: 1.6100 (-0.002 vs cosine 1.6117, Slight help); NF10 tidal+perturb 1e-4: 1.5901 (~same as tidal's 1.5906)"

    def __init__(self, **values) -> None:
        super().__init__(**values)
        self.due = Every(self.p.every)

    @hookimpl
    def on_step(self, model, optimizers, clock):
        if not self.due(clock):
            return
        seed = (clock.seed * 1_000_003 + clock.step) ^ _PERTURBATION_SALT
        add_noise_(split_params(model)["matrix"], self.p.scale, seed)


class MutationDecay(Technique):
    name = "mutation_decay"
    summary = "Gaussian weight noise after every step, its std decaying exponentially with progress"
    params = {
        "initial": Float(1e-3, 1e-6, 1e-2, log=True, help="absolute noise std at the start"),
        "half_life": Float(0.1, 0.01, 1.0, log=True, help="fraction of the run over which the std halves"),
    }
    seed_refs = ("NF6", "NF9")
    seed_result = "NF6: 1.6132 (+0.002 vs cosine 1.6117, Neutral); NF9 tidal+mutation 0.001: 1.5902 (~same as tidal's 1.5906)"

    def __init__(self, **values):
        super().__init__(**values)
        self._matrices: tuple[int, list[Tensor]] | None = None  # (id of the model, its Muon matrices)

    @hookimpl
    def on_step(self, model, optimizers, clock):
        if self._matrices is None or self._matrices[0] != id(model):  # every step: find them once
            self._matrices = (id(model), split_params(model)["matrix"])
        std = mutation_std(clock.progress, self.p.initial, self.p.half_life)
        seed = (clock.seed * 1_000_003 + clock.step) ^ _MUTATION_SALT
        add_noise_(self._matrices[1], std, seed)
