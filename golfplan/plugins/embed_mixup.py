"""Embedding mixup: each sequence's (normed) token embeddings are blended with a random partner's.

In training, ``h ← (1 - w)·h + w·h[partner]`` where the partner of sequence ``i`` in the
micro-batch is ``(i + s) mod B`` for one shift ``s`` drawn uniformly from ``1..B-1`` per
forward (so every sequence gets a random partner other than itself; with ``B = 1``
there is none and nothing changes). ``w`` is the param (a fixed weight, not a Beta
draw), and the targets are not mixed: the seed describes only interpolating the
embedding vectors. The mixed embedding also becomes the ``x0`` the blocks mix back in.
The seed's experiment 4 (0.1) was slightly worse (+0.004).
"""

from __future__ import annotations

import torch
from torch import Tensor

from golfplan.core.technique import Float, Technique, hookimpl


def partner_index(batch: int, device: torch.device) -> Tensor:
    """A random cyclic shift of ``0..batch-1`` by 1..batch-1 (every sequence gets another one)."""
    shift = torch.randint(1, batch, (1,), device=device)
    return (torch.arange(batch, device=device) + shift) % batch


def mix(h: Tensor, partner: Tensor, weight: float) -> Tensor:
    """``(1 - weight)·h + weight·h[partner]`` along the batch dimension."""
    return (1.0 - weight) * h + weight * h.index_select(0, partner)


def embed_mixup(h: Tensor, weight: float) -> Tensor:
    if h.size(0) < 2:  # a static shape: no partner to mix with
        return h
    return mix(h, partner_index(h.size(0), h.device), weight)


class EmbedMixup(Technique):
    name = "embed_mixup"
    summary = "blend each sequence's embeddings with a random partner's, (1-w)·h + w·h[partner]"
    params = {"weight": Float(0.1, 0.0, 0.5, help="share of the partner's embeddings")}
    seed_refs = ("4",)
    seed_result = "4: Embed Mixup 0.1 1.6157 (+0.004 vs cosine 1.6117, Worse)"

    @hookimpl
    def on_embed(self, config):
        weight = self.p.weight
        return lambda h, ctx: embed_mixup(h, weight)
