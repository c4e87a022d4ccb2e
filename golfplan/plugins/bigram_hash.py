"""BigramHash: an embedding of each (previous, current) token pair, hashed into V_b buckets, added to
the token embedding.

    bucket_t = (36313·t_i XOR 27191·t_{i−1}) mod (V_b − 1);   bucket = V_b − 1 where a document starts
    x_t += scale · proj(E[bucket_t])

(record 2026-03-20_10L_Int5MLP_MuonWD04_SWA50, ``BigramHashEmbedding``; the hash is the leaderboard
survey's). E is an Emb(V_b, dim) table, zero-initialised, so the module adds nothing at init;
``proj`` maps dim to the model width (absent when dim equals it); ``scale`` is a learned scalar, init
0.05. The record's defaults: V_b = 10240, dim = 128. Runs on the raw embeddings, before the norm, in
every forward.

Readings chosen here:
- Position 0 gets the reserved bucket V_b − 1 (the record); so does every document start (the
  record hashes a BOS with the previous document's last token; here nothing crosses a boundary:
  ``segments`` from the loader where given, else every ``config.bos_id`` token).
- The projection's init. The survey reads "zero-init Linear", but with both the table and the
  projection at zero neither gets a gradient, ever. In the record the projection's zero init is
  overwritten by its model's orthogonal init (its ``_init_weights``: orthogonal for linears of at
  least 64x64, output projections "…proj" scaled by 1/√(2·num_layers)), and that effective init is
  used here: orthogonal, gain 1/√(2·num_layers). The table stays at zero, so the module is still the
  identity at init.
- The hash is computed in int64; the record's int32 gives the same buckets for token ids below
  59,137 (36313·t fits in 31 bits), which covers the challenge's vocabularies.
- Optimizers as the record: the table with the token embedding (role ``embed``, via ``param_role``),
  the projection with the matrices (Muon), the scale with the scalars (Adam).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from golfplan.core.model.gpt import CastedLinear
from golfplan.core.state import ForwardContext
from golfplan.core.technique import Float, Int, Technique, hookimpl

SOURCE = "2026-03-20_10L_Int5MLP_MuonWD04_SWA50"
HASH_CUR, HASH_PREV = 36313, 27191


def bigram_buckets(ids: Tensor, starts: Tensor, buckets: int) -> Tensor:
    """(batch, seq) bucket of each (previous, current) pair; ``buckets - 1`` where ``starts``."""
    t = ids.long()
    pair = torch.bitwise_xor(HASH_CUR * t[:, 1:], HASH_PREV * t[:, :-1]) % (buckets - 1)
    pair = torch.cat([torch.zeros_like(t[:, :1]), pair], dim=1)
    return torch.where(starts, torch.full_like(pair, buckets - 1), pair)


class BigramHash(nn.Module):
    def __init__(self, buckets: int, dim: int, model_dim: int, scale: float, num_layers: int, bos_id: int) -> None:
        super().__init__()
        self.buckets = buckets
        self.bos_id = bos_id
        self.bigram_embed = nn.Embedding(buckets, dim)
        nn.init.zeros_(self.bigram_embed.weight)
        self.bigram_proj = CastedLinear(dim, model_dim, bias=False) if dim != model_dim else None
        if self.bigram_proj is not None:
            nn.init.orthogonal_(self.bigram_proj.weight, gain=1.0 / math.sqrt(2 * num_layers))
        self.bigram_scale = nn.Parameter(torch.tensor(scale, dtype=torch.float32))

    def forward(self, x: Tensor, ctx: ForwardContext) -> Tensor:
        h = self.bigram_embed(bigram_buckets(ctx.input_ids, ctx.document_starts(self.bos_id), self.buckets))
        if self.bigram_proj is not None:
            h = self.bigram_proj(h)
        return x + self.bigram_scale.to(dtype=h.dtype) * h.to(dtype=x.dtype)


class BigramHashTechnique(Technique):
    name = "bigram_hash"
    summary = "hashed (previous, current) token-pair embeddings added to the token embedding"
    params = {
        "buckets": Int(10240, 1024, 16384, log=True,
                       help="V_b, hash buckets (the last is reserved for document starts)"),
        "dim": Int(128, 16, 512, log=True, help="bigram embedding width before the projection to the model width"),
        "scale": Float(0.05, 0.0, 0.5, help="initial value of the learned output scale"),
    }
    source = SOURCE
    source_result = "ablation in its README: 4096 -> 8192 buckets 1.1446 -> 1.1434 BPB, 10240 buckets 1.1426"

    @hookimpl
    def build_embed(self, config):
        return BigramHash(self.p.buckets, self.p.dim, config.model_dim, self.p.scale, config.num_layers,
                          config.bos_id)

    @hookimpl
    def param_role(self, name, param, config):
        return "embed" if name.endswith(".bigram_embed.weight") else None
