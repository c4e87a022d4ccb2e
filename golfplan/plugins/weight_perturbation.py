"""Weight perturbation ("viral mutation"): every ``every`` steps, add Gaussian noise to the weights.

After the optimizer step that completes step ``every``, ``2·every``, ... each Muon
matrix of the model (the blocks' 2-D weights) gets ``scale · N(0, 1)`` added in
place. Readings chosen: ``scale`` is an absolute standard deviation (the seed's NF10
quotes a bare 1e-4), the same for every matrix, and only the block matrices are
perturbed (not the embedding, head or control tensors). The noise comes from a
``torch.Generator`` on the weights' device seeded from the run seed and the step,
so every rank draws the same noise. N4: -0.002 (slight help); NF10 on tidal: ~same.
"""

from __future__ import annotations

import torch
from torch import Tensor

from golfplan.core.optim import split_params
from golfplan.core.technique import Float, Int, Technique, hookimpl

_SALT = 0x5EED_0004


def add_noise_(params: list[Tensor], std: float, seed: int) -> None:
    """Add ``std · N(0, 1)`` to each tensor in place, drawn from a generator seeded with ``seed``."""
    gens: dict[torch.device, torch.Generator] = {}
    for p in params:
        if p.device not in gens:
            gens[p.device] = torch.Generator(device=p.device).manual_seed(seed)
        p.add_(torch.randn(p.shape, generator=gens[p.device], device=p.device, dtype=p.dtype), alpha=std)


class WeightPerturbation(Technique):
    name = "weight_perturbation"
    summary = "every N steps, add Gaussian noise of a fixed std to the block matrices"
    params = {
        "scale": Float(1e-4, 1e-6, 1e-2, log=True, help="absolute std of the noise"),
        "every": Int(100, 1, 1000, help="steps between perturbations"),
    }
    seed_refs = ("N4", "NF10")
    seed_result = "N4: 1.6100 (-0.002 vs cosine 1.6117, Slight help); NF10 tidal+perturb 1e-4: 1.5901 (~same as tidal's 1.5906)"

    @hookimpl
    def on_step(self, model, optimizers, clock):
        if (clock.step + 1) % self.p.every:
            return
        seed = (clock.seed * 1_000_003 + clock.step) ^ _SALT
        add_noise_(split_params(model)["matrix"], self.p.scale, seed)
