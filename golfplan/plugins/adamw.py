"""AdamW for the embedding, an untied head and the scalar/control tensors, each role with its own decay.

The record (records/.../2026-04-27_..._1.0611/train_gpt.py:266-286, 1887-1956; the seed-42 log's
header) trains everything that is not a Muon matrix with ``torch.optim.AdamW``, betas
``(BETA1, BETA2) = (0.9, 0.99)`` (0.99 is one of its nine greedy-selected overrides; the code's
default is 0.95), eps 1e-8, in two optimizers:

* the tied token embedding: lr ``TIED_EMBED_LR=0.03``, weight decay ``EMBED_WD=0.085``;
* the scalars and control tensors (vectors, gains, skip weights, gates): lr ``SCALAR_LR=0.02``,
  weight decay ``ADAM_WD=0.02``.

AdamW's decay is decoupled: each step multiplies the weights by ``1 - lr·wd`` (``lr`` after the LR
schedule) before the Adam update. The baseline's plain Adam decays nothing.

Here: ``configure`` sets ``tied_embed_lr``, ``scalar_lr``, ``beta1`` and ``beta2``; ``build_optimizer``
returns an AdamW for the roles ``embed``, ``head`` and ``scalar`` (the ``matrix`` role stays Muon's).
With untied embeddings the embedding's LR is the config's ``embed_lr`` (as in the record's code).
The record ties its embeddings, so it has no head: ``head_wd`` defaults to the embedding's decay
(the head is the embedding's output-side twin), a reading of ours. Which tensors count as scalars is
the role split (``param_role``): a technique routes its own small gate tensors there.
"""

from __future__ import annotations

import torch

from golfplan.core.train.optim import role_lr
from golfplan.core.technique import Float, Technique, hookimpl

ROLES = ("embed", "head", "scalar")


class AdamW(Technique):
    name = "adamw"
    summary = "AdamW for embedding (lr 0.03, wd 0.085) and scalars (lr 0.02, wd 0.02), betas (0.9, 0.99)"
    slot = "adam_optimizer"
    params = {
        "tied_embed_lr": Float(0.03, 0.005, 0.2, log=True, help="LR of the tied token embedding"),
        "scalar_lr": Float(0.02, 0.002, 0.1, log=True, help="LR of the scalars and control tensors"),
        "beta1": Float(0.9, 0.5, 0.98, help="Adam beta1"),
        "beta2": Float(0.99, 0.9, 0.999, help="Adam beta2"),
        "embed_wd": Float(0.085, 0.0, 0.3, help="decoupled weight decay of the token embedding (x LR)"),
        "scalar_wd": Float(0.02, 0.0, 0.2, help="decoupled weight decay of the scalars and control tensors (x LR)"),
        "head_wd": Float(0.085, 0.0, 0.3, help="decoupled weight decay of an untied head (x LR; the record has none)"),
    }
    source = "2026-04-27_SP8192_LQER_SparseGate_BOSSmearFix_9HpStack_1.0611"
    source_result = ("not isolated: part of the record's stack (1.06108 BPB, 3 seeds); BETA2 0.99 (vs 0.95) was one of "
                     "its 9 overrides kept by greedy forward selection (fixed-step trials, seed 42); the embedding "
                     "decay 0.085 and scalar decay 0.02 come from 2026-04-01_Vocab4096_MLPMult4_WD085")

    @hookimpl
    def configure(self, config):
        return {"tied_embed_lr": self.p.tied_embed_lr, "scalar_lr": self.p.scalar_lr,
                "beta1": self.p.beta1, "beta2": self.p.beta2}

    def settings(self, role: str, config) -> tuple[float, float]:
        """``(lr, weight_decay)`` of a role: the baseline's LR, this technique's decay."""
        wd = {"embed": self.p.embed_wd, "head": self.p.head_wd}.get(role, self.p.scalar_wd)
        return role_lr(role, config), wd

    @hookimpl
    def build_optimizer(self, role, params, config):
        if role not in ROLES:
            return None
        lr, wd = self.settings(role, config)
        return torch.optim.AdamW([{"params": params, "lr": lr}], betas=(config.beta1, config.beta2),
                                 eps=config.adam_eps, weight_decay=wd, fused=bool(params) and params[0].is_cuda)
