"""Head pruning: train with ``start_heads`` query heads, keep the ``end_heads`` strongest at ``prune_at``.

``configure`` sets ``num_heads=start_heads`` (16; head dim = model_dim/16). Every
attention is a :class:`PrunableAttention`: the baseline's attention whose per-head
outputs are multiplied by a ``head_mask`` buffer (all ones) before the output
projection. After the first optimizer step whose progress reaches ``prune_at``
(default 0.416: the seed's step 100 of 240 is progress 0.4167), each layer keeps
the ``end_heads`` heads whose output projection columns have the largest L2 norm
and zeroes the rest of the mask. The score is the output projection's columns
because queries are RMS-normalised, so the scale of a head's query rows does not
change its output, while its output columns scale its contribution to the residual
stream. From then on, after every optimizer step, the pruned heads' query rows,
output projection columns and q gains are set to zero again (Muon's momentum would
otherwise keep moving them), so the artifact's rows for them are zeros and
compress away.

The mask is a persistent tensor buffer edited in place: the graph stays one static
graph and the mask travels in the artifact, so compile-safe.

With ``gqa`` (num_kv_heads 4 or 2 under 16 query heads) it combines: only query
heads are pruned, the key/value heads stay (a KV head whose query heads were all
pruned is dead weight, not an error). Takes the ``heads`` slot.
"""

from __future__ import annotations

import torch
from torch import Tensor

from golfplan.core.config import Config
from golfplan.core.model.gpt import CausalSelfAttention
from golfplan.core.technique import Float, Int, Technique, hookimpl


class PrunableAttention(CausalSelfAttention):
    """The baseline attention with a per-head output mask (a buffer of ones until pruned)."""

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.register_buffer("head_mask", torch.ones(self.num_heads, dtype=torch.float32))
        self.pruned = False  # host-side flag, never read by forward

    def forward(self, x: Tensor, ctx=None) -> Tensor:
        y = self.heads(x, ctx)
        return self.merge(y * self.head_mask.to(dtype=y.dtype)[None, :, None, None])

    def head_scores(self) -> Tensor:
        """Per-head L2 norm of the output projection's columns, shape (num_heads,)."""
        w = self.proj.weight.detach().float().reshape(self.proj.out_features, self.num_heads, self.head_dim)
        return w.square().sum(dim=(0, 2)).sqrt()

    @torch.no_grad()
    def prune(self, keep: int) -> None:
        """Keep the ``keep`` highest-scoring heads in the mask, zero the others."""
        top = torch.topk(self.head_scores(), keep).indices.to(self.head_mask.device)
        self.head_mask.zero_().index_fill_(0, top, 1.0)
        self.pruned = True
        self.zero_pruned()

    @torch.no_grad()
    def zero_pruned(self) -> None:
        """Zero the pruned heads' query rows, output projection columns and q gains."""
        m = self.head_mask
        self.c_q.weight.view(self.num_heads, self.head_dim, -1).mul_(m.to(self.c_q.weight.dtype)[:, None, None])
        self.proj.weight.view(-1, self.num_heads, self.head_dim).mul_(m.to(self.proj.weight.dtype)[None, :, None])
        self.q_gain.mul_(m.to(self.q_gain.dtype))


class HeadPruning(Technique):
    name = "head_pruning"
    summary = "start with start_heads query heads, keep the end_heads largest-norm ones at prune_at"
    slot = "heads"
    params = {
        "start_heads": Int(16, 2, 32, help="query heads while training starts (sets num_heads)", above="end_heads"),
        "end_heads": Int(8, 1, 32, help="query heads kept per layer after pruning"),
        "prune_at": Float(0.416, 0.05, 0.95, help="progress at which to prune (seed: step 100 of 240 = 0.4167)"),
    }
    seed_refs = ("U6",)
    seed_result = "U6: Head Pruning (start 16 heads, prune to 8 at step 100) - Not reached"

    @hookimpl
    def configure(self, config):
        return {"num_heads": self.p.start_heads}

    @hookimpl
    def build_attention(self, config, layer_idx):
        return PrunableAttention(config)

    @hookimpl
    def on_step(self, model, optimizers, clock):
        if clock.progress < self.p.prune_at:
            return
        for m in model.modules():
            if isinstance(m, PrunableAttention):
                if m.pruned:
                    m.zero_pruned()
                else:
                    m.prune(self.p.end_heads)
