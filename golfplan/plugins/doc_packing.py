"""Document packing: each micro-batch is one packed row, and attention runs inside pieces of its
documents taken from each document's start.

The record (F:592-699 its ``DocumentPackingLoader`` and ``_build_cu_seqlens``, F:1027-1037 varlen
flash attention) hands each GPU one row of its whole micro-batch (98,304 tokens) with
``cu_seqlens``: a boundary at every BOS, and every 2048 tokens (its ``train_seq_len``) counted from
each document's start, so a document attends to itself in pieces of at most 2048 tokens, the first
of them its first 2048 tokens, wherever it falls in the stream. Here the loader reads exactly the
baseline's tokens (the same shards, order and rank slices as
``golfplan.core.data.shards.DistributedTokenLoader``, which it extends) and hands them as one row
``(1, tokens)`` with ``segments`` (the document index of every position, a new one at every BOS) and,
where attention runs flash varlen, ``cu_seqlens`` computed on the host. The core's attention
(``golfplan.core.model.attention``) cuts the pieces from the segments (the same boundaries as the
record's); ``batch_extras`` gives the same for evaluation and calibration batches; modules on the
embeddings (``smear_gate``, ``bigram_hash``) cut at the BOS only, as the record's smear.

Reading chosen: the record's loader starts each shard at its first BOS and drops a shard's tail; this
one keeps the baseline's stream, so a row may begin inside a document (a piece of its own, cut every
``train_seq_len`` from the row's start, as the record's ``_build_cu_seqlens`` does with no leading
BOS). RoPE positions run along the packed row (as the record's): attention only sees offsets inside a
piece, so a piece scores as it would alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from golfplan.core.model.attention import doc_extras
from golfplan.core.data.shards import DistributedTokenLoader
from golfplan.core.technique import Technique, hookimpl


class DocumentPackingLoader(DistributedTokenLoader):
    """The baseline's tokens as one packed row per micro-batch, with its document extras."""

    def __init__(self, data_path: str | Path, rank: int, world_size: int, device: torch.device, bos_id: int,
                 max_len: int) -> None:
        super().__init__(data_path, rank, world_size, device)
        self.bos_id, self.max_len = bos_id, max_len

    def batch_extras(self, x: Tensor) -> dict[str, Any]:
        return doc_extras(x, self.bos_id, self.max_len, self.device)

    def next_batch(self, global_tokens: int, seq_len: int, grad_accum_steps: int) -> tuple[Tensor, Tensor, dict]:
        local = self.local_span(global_tokens, grad_accum_steps)
        x, y = local[None, :-1], local[None, 1:]
        return self.to_device(x), self.to_device(y), doc_extras(x, self.bos_id, seq_len, self.device)


class DocPacking(Technique):
    name = "doc_packing"
    summary = "one packed row per batch; attention inside each document, in pieces from its start (varlen)"
    slot = "train_loader"
    source = "2026-04-27_SP8192_LQER_SparseGate_BOSSmearFix_9HpStack_1.0611"
    source_result = ("part of the record's stack, 1.06108 BPB (3-seed mean). 2026-04-10_VarLenAttn brought it in "
                     "together with a fused MLP and TTT: 1.07336 BPB, 0.0019 below the best open PR then; "
                     "not isolated")

    @hookimpl
    def train_loader(self, config, rank, world_size, device):
        return DocumentPackingLoader(config.data_path, rank, world_size, device, config.bos_id, config.train_seq_len)
