"""Head diversity ("quorum sensing"): penalise similar attention-head projections.

For every attention module (any module with a ``c_q`` linear and ``num_heads``), the
query projection's weight is cut into its per-head slices (rows ``h·hd .. (h+1)·hd``
of ``c_q.weight``), each slice is flattened and normalised, and the penalty is the
mean *squared* cosine similarity over all ordered pairs of distinct heads. The loss
term is ``coef ×`` the mean of that over the attention modules.

Readings chosen where the seed is vague: "head projections" are the query
projection's per-head slices (c_q: one slice per query head, also under GQA, where
c_k/c_v have fewer heads); the similarity is squared so anti-aligned heads are
penalised too and the term is >= 0, 0 exactly when the heads are orthogonal.
The seed's NF8 (1e-4 on top of tidal) was its one loss-term win (-0.004 over tidal).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from golfplan.core.technique import Float, Technique, hookimpl


def head_similarity(weight: Tensor, num_heads: int) -> Tensor:
    """Mean squared cosine similarity between distinct heads' rows of a (heads·hd, in) weight."""
    if num_heads < 2:
        return weight.new_zeros((), dtype=torch.float32)
    w = F.normalize(weight.float().reshape(num_heads, -1), dim=1)
    gram = w @ w.T
    off = gram - torch.diag_embed(torch.diagonal(gram))
    return off.square().sum() / (num_heads * (num_heads - 1))


def attention_modules(model: nn.Module) -> list[nn.Module]:
    """Every module with a query projection ``c_q`` and a ``num_heads`` count."""
    return [m for m in model.modules() if isinstance(getattr(m, "c_q", None), nn.Linear) and hasattr(m, "num_heads")]


def head_diversity(model: nn.Module, coef: float) -> Tensor:
    """``coef ×`` the mean head similarity over the model's attention modules."""
    attns = attention_modules(model)
    sims = [head_similarity(m.c_q.weight, m.num_heads) for m in attns]
    return coef * torch.stack(sims).mean()


class HeadDiversity(Technique):
    name = "head_diversity"
    summary = "penalise squared cosine similarity between attention heads' query projections"
    params = {"coef": Float(1e-4, 1e-6, 1e-2, log=True, help="weight of the mean squared head cosine")}
    seed_refs = ("N3", "NF8", "W0a", "W0e", "C13", "C14", "D3")
    seed_result = ("N3: 1.6100 (-0.002, Slight help); NF8 tidal+HD 1e-4: 1.5867 (-0.025, better than tidal's "
                   "1.5906); C13 HD 1e-3: 1.5551 (+0.002 vs B4, Too strong); C14 no HD: 1.5542 (+0.002, "
                   "HD barely matters); D3 no HD: +0.004 (HD still helps)")

    @hookimpl
    def on_loss(self, config):
        coef = self.p.coef
        return lambda ctx: head_diversity(ctx.model, coef)
