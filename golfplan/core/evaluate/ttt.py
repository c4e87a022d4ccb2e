"""What the sliding-window and test-time-training evaluation strategies share.

Kept apart from :mod:`golfplan.core.evaluate.score` so that the packed ``train_gpt.py`` carries it only
when a strategy that uses it is in the run (the packer follows imports): the baseline's code bytes
do not pay for test-time training.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
from torch import Tensor, nn

from golfplan.core.model.attention import doc_extras
from golfplan.core.evaluate.score import ValData, rank_share, score_tokens


def sliding_windows(num_targets: int, seq_len: int, stride: int) -> list[tuple[int, int]]:
    """``(start, first scored offset)`` of every window: the first scores all its tokens, each later
    one from where the previous window ended; together they score positions 1 .. N once each."""
    stride = min(stride, seq_len)
    out: list[tuple[int, int]] = []
    covered = 0  # x offsets [0, covered) are scored
    start = 0
    while covered < num_targets:
        end = min(start + seq_len, num_targets)
        out.append((start, covered - start))
        covered = end
        start += stride
    return out


def sgd_on_scored(model: nn.Module, val: ValData, opt: torch.optim.Optimizer, params: list[Tensor], tokens: Tensor,
                  start: int, count: int, seq_len: int, batch_seqs: int, epochs: int, grad_clip: float,
                  lr: float, documents: bool = False) -> None:
    """Test-time training on tokens already scored: ``epochs`` passes over the ``count`` sequences
    ``tokens[start + k*seq_len : start + (k+1)*seq_len + 1]``, each rank its share, ``batch_seqs``
    a step at learning rate ``lr``. Every rank takes the same number of steps with the mean gradient
    (a rank with no sequences left contributes zeros), clipped to ``grad_clip`` (0: none).
    ``documents``: a batch is one packed row, its documents in pieces from their starts (the record's
    global SGD, F:2985-2996), whatever the run's loader."""
    seqs = rank_share(range(count), val)
    steps = math.ceil(math.ceil(count / val.world_size) / batch_seqs)  # the same on every rank
    distributed = dist.is_available() and dist.is_initialized()
    for group in opt.param_groups:
        group["lr"] = lr
    for _ in range(epochs):
        for b in range(steps):
            batch = seqs[b * batch_seqs : (b + 1) * batch_seqs]
            opt.zero_grad(set_to_none=False)
            if batch:
                idx = start + torch.tensor(batch)[:, None] * seq_len + torch.arange(seq_len + 1)[None, :]
                seq = tokens[idx].to(torch.int64)
                x, y = seq[:, :-1], seq[:, 1:]
                extras = None
                if documents:
                    x, y = x.reshape(1, -1), y.reshape(1, -1)
                    extras = doc_extras(x, val.bos_id, val.seq_len, val.device)
                score_tokens(model, val, x.to(val.device), y.to(val.device), extras=extras, grad=True).mean().backward()
            if distributed:
                for q in params:
                    q.grad = torch.zeros_like(q) if q.grad is None else q.grad
                    dist.all_reduce(q.grad, op=dist.ReduceOp.SUM)  # gloo has no AVG
                    q.grad.div_(val.world_size)
            if grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, grad_clip)
            opt.step()


def cosine(peak: float, i: int, n: int) -> float:
    """Step ``i`` of ``n`` of a cosine from ``peak`` to 0 (reached at ``i = n - 1``)."""
    return peak * 0.5 * (1.0 + math.cos(math.pi * i / max(n - 1, 1)))
