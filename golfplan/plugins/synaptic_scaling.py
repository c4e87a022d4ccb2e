"""Synaptic scaling: after every step, rescale each weight matrix back to its initial norm.

``on_model_built`` records the Frobenius norm of every Muon matrix (the blocks' 2-D
weights) of the freshly initialised model; after each optimizer step each is scaled
in place by ``initial_norm / norm`` (computed on the device, no sync), so only its
direction learns. Readings chosen: one norm per matrix (not per row); matrices whose
initial norm is 0 (the zero-initialised output projections) have no norm to restore
and are left alone, otherwise they would be held at zero for the whole run.
The seed's NF5 was very bad (+0.112).
"""

from __future__ import annotations

from torch import nn

from golfplan.core.train.optim import split_params
from golfplan.core.technique import Technique, hookimpl

EPS = 1e-12


def matrix_norms(model: nn.Module) -> dict[str, float]:
    """The Frobenius norm of each Muon matrix, by parameter name, leaving out all-zero ones."""
    ids = {id(p) for p in split_params(model)["matrix"]}
    norms = {name: float(p.detach().float().norm()) for name, p in model.named_parameters() if id(p) in ids}
    return {name: n for name, n in norms.items() if n > 0.0}


class SynapticScaling(Technique):
    name = "synaptic_scaling"
    summary = "after every step, rescale each block matrix to its initial Frobenius norm"
    seed_refs = ("NF5",)
    seed_result = "NF5: 1.7239 (+0.112 vs cosine 1.6117, Very bad)"

    def __init__(self, **values):
        super().__init__(**values)
        self.norms: dict[str, float] = {}

    @hookimpl
    def on_model_built(self, model, config):
        self.norms = matrix_norms(model)

    @hookimpl
    def on_step(self, model, optimizers, clock):
        params = dict(model.named_parameters())
        for name, norm in self.norms.items():
            w = params[name]
            w.mul_(norm / w.norm().clamp_min(EPS))
