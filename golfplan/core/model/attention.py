"""Attention that keeps documents apart: pieces taken from each document's start, as the record's
varlen attention (F:592-699 ``_build_cu_seqlens``, F:1027-1037 ``flash_attn_varlen_func``).

A batch may carry ``segments`` (the document index of every position, from the loader). Attention
then runs inside *pieces*: each document is cut every ``max_len`` tokens (the run's
``train_seq_len``, the record's 2048) counted from the document's start (its BOS, or the row's first
position for a document begun before the row), so a document is never cut before its first
``max_len`` tokens, wherever it falls in a packed row. A row no longer than ``max_len`` (every
evaluation batch) has one piece per document.

How a forward attends is decided once per batch (:class:`DocAttention`, built at the first layer and
kept in ``ctx.extras["attention"]`` for the others), by the kernel available (:func:`doc_kernel`):

- ``flash_varlen``: on CUDA with the flash-attn package (FA3's ``flash_attn_interface``, the record's,
  or FA2's ``flash_attn``): q, k, v flattened to (tokens, heads, dim) and ``cu_seqlens``, computed on
  the host by the loader (:func:`doc_extras`: no sync), padded to a multiple of 64 and marked dynamic
  so that its length does not recompile the model;
- ``flex``: on CUDA inside a compiled model: ``flex_attention`` with one block mask from the pieces
  (the compiled kernel skips the blocks across pieces). Never eager: eager flex materialises the
  whole (seq x seq) scores;
- ``sdpa`` (the CPU, and the fallback): SDPA with an explicit mask; a row longer than ``max_len``
  (the packed training row) runs in blocks of ``max_len`` queries against their own and the previous
  block's keys (a piece spans at most two blocks), so the mask and the work are O(seq x max_len), not
  O(seq^2).

The CUDA kernels are unmeasured here (no GPU where this was written); the CPU path is tested.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from golfplan.core.data.shards import document_segments

try:  # FA3 (the record's), else FA2: varlen attention on CUDA where installed
    from flash_attn_interface import flash_attn_varlen_func
except ImportError:
    try:
        from flash_attn import flash_attn_varlen_func
    except ImportError:
        flash_attn_varlen_func = None
try:  # torch >= 2.5
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention
except ImportError:  # pragma: no cover - an older torch: masked SDPA
    create_block_mask = flex_attention = None

CU_BUCKET = 64  # cu_seqlens padded to a multiple of this (the record's bucket)


def doc_kernel(device: torch.device, compiled: bool) -> str:
    """The kernel document attention uses on ``device`` (see the module's docstring)."""
    if device.type != "cuda":
        return "sdpa"
    if flash_attn_varlen_func is not None:
        return "flash_varlen"
    return "flex" if compiled and flex_attention is not None else "sdpa"


def piece_ids(segments: Tensor, max_len: int) -> Tensor:
    """(batch, seq) int64: the piece of every position, pieces of at most ``max_len`` positions
    taken from each document's start."""
    if segments.size(1) <= max_len:
        return segments
    pos = torch.arange(segments.size(1), device=segments.device).expand_as(segments)
    starts = torch.cat([torch.ones_like(segments[:, :1], dtype=torch.bool), segments[:, 1:] != segments[:, :-1]], 1)
    doc_start = torch.cummax(torch.where(starts, pos, 0), dim=1).values
    return torch.cumsum(((pos - doc_start) % max_len == 0).long(), dim=1)


def cu_seqlens(x: Tensor, bos_id: int, max_len: int) -> Tensor:
    """int32 starts of the pieces of a host batch ``x`` (batch, seq) flattened, every row start
    included, then the total, padded with the total to a multiple of ``CU_BUCKET``."""
    b, t = x.shape
    flat = x.reshape(-1).numpy()
    starts = np.union1d(np.flatnonzero(flat == bos_id), np.arange(0, b * t, t))
    counts = -(-np.diff(np.append(starts, b * t)) // max_len)
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    bounds = np.append(np.repeat(starts, counts) + offsets * max_len, b * t)
    out = np.full(-(-bounds.size // CU_BUCKET) * CU_BUCKET, b * t, dtype=np.int32)
    out[: bounds.size] = bounds
    return torch.from_numpy(out)


def doc_extras(x: Tensor, bos_id: int, max_len: int, device: torch.device) -> dict[str, Tensor]:
    """A batch's document extras for the forward: ``segments``, and ``cu_seqlens`` where attention
    runs flash varlen on ``device`` (from ``x`` on the host: give a host batch to avoid a sync)."""
    nb = device.type == "cuda"
    out = {"segments": document_segments(x, bos_id).to(device, non_blocking=nb)}
    if doc_kernel(device, False) == "flash_varlen":
        cu = cu_seqlens(x.cpu(), bos_id, max_len).to(device, non_blocking=nb)
        torch._dynamo.mark_dynamic(cu, 0)
        out["cu_seqlens"] = cu
    return out


def document_mask(pieces: Tensor) -> Tensor:
    """(batch, 1, seq, seq) bool: position i may attend to j <= i of the same piece."""
    same = pieces[:, None, :, None] == pieces[:, None, None, :]
    t = pieces.size(-1)
    return same & torch.ones(t, t, dtype=torch.bool, device=pieces.device).tril()


def _blocks(t: Tensor, nb: int, size: int) -> Tensor:
    """(batch, heads, seq, dim) -> (batch, nb, heads, size, dim), zero-padded to nb x size positions."""
    b, h, s, d = t.shape
    return F.pad(t, (0, 0, 0, nb * size - s)).view(b, h, nb, size, d).transpose(1, 2)


def _with_previous(t: Tensor) -> Tensor:
    """(batch, nb, heads, size, dim) -> (batch * nb, heads, 2 size, dim): each block after the one before it."""
    both = torch.cat([F.pad(t, (0, 0, 0, 0, 0, 0, 1, 0))[:, :-1], t], dim=3)
    return both.reshape(-1, *both.shape[2:])


class DocAttention:
    """Causal attention inside pieces for one forward: the kernel is chosen and its mask (or block
    mask) built at the first call, then reused by every layer."""

    def __init__(self, segments: Tensor, cu: Tensor | None, max_len: int) -> None:
        self.segments, self.cu, self.max_len = segments, cu, max_len
        self.pieces: Tensor | None = None
        self.mask: Tensor | None = None
        self.block_mask = None

    def __call__(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        gqa = k.size(1) != q.size(1)
        if q.is_cuda and self.cu is not None and flash_attn_varlen_func is not None and v.dtype != torch.float32:
            b, h, t, d = q.shape
            flat = [z.transpose(1, 2).reshape(b * t, z.size(1), d).to(v.dtype) for z in (q, k, v)]
            y = flash_attn_varlen_func(*flat, self.cu, self.cu, self.max_len, self.max_len, causal=True)
            return (y[0] if isinstance(y, tuple) else y).view(b, t, h, d).transpose(1, 2)
        if self.pieces is None:
            self.pieces = piece_ids(self.segments, self.max_len)
        pieces = self.pieces
        if q.is_cuda and flex_attention is not None and torch.compiler.is_compiling():
            if self.block_mask is None:
                def same_piece_causal(bi: Tensor, hi: Tensor, qi: Tensor, ki: Tensor) -> Tensor:
                    return (ki <= qi) & (pieces[bi, qi] == pieces[bi, ki])

                self.block_mask = create_block_mask(same_piece_causal, q.size(0), None, q.size(2), k.size(2),
                                                    device=q.device)
            return flex_attention(q.to(v.dtype), k.to(v.dtype), v, block_mask=self.block_mask, enable_gqa=gqa)
        b, h, t, d = q.shape
        size = self.max_len
        if t <= size:
            if self.mask is None:
                self.mask = document_mask(pieces)
            return F.scaled_dot_product_attention(q, k, v, attn_mask=self.mask, enable_gqa=gqa)
        nb = -(-t // size)
        if self.mask is None:  # queries of block i against keys of blocks i-1 and i
            pb = F.pad(pieces, (0, nb * size - t), value=-1).view(b, nb, size)
            keys = torch.cat([F.pad(pb, (0, 0, 1, 0), value=-2)[:, :-1], pb], dim=2)
            col = torch.arange(2 * size, device=q.device)
            causal = col[None, :] <= torch.arange(size, device=q.device)[:, None] + size
            self.mask = ((pb[..., :, None] == keys[..., None, :]) & causal).view(b * nb, 1, size, 2 * size)
        y = F.scaled_dot_product_attention(_blocks(q, nb, size).reshape(b * nb, h, size, d),
                                           _with_previous(_blocks(k, nb, size)), _with_previous(_blocks(v, nb, size)),
                                           attn_mask=self.mask, enable_gqa=gqa)
        return y.view(b, nb, h, size, d).transpose(1, 2).reshape(b, h, nb * size, d)[:, :, :t]


def attend(q: Tensor, k: Tensor, v: Tensor, ctx, max_len: int) -> Tensor:
    """Causal attention; with document segments in ``ctx``, inside pieces (the batch's
    :class:`DocAttention`, built at its first layer)."""
    if ctx is None or ctx.segments is None:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=k.size(1) != q.size(1))
    plan = ctx.extras.get("attention")
    if plan is None:
        plan = ctx.extras["attention"] = DocAttention(ctx.segments, ctx.extras.get("cu_seqlens"), max_len)
    return plan(q, k, v)
