"""Validation loss and bits per byte, as the challenge's ``eval_val`` computes them."""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch import Tensor, nn

from golfplan.core.tokenizer import ByteTables


@dataclass
class ValData:
    tokens: Tensor  # uint16 validation tokens, whole sequences + 1
    tables: ByteTables  # on ``device``
    seq_len: int
    batch_tokens: int  # val_batch_size
    grad_accum_steps: int
    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")
    autocast: bool = False  # bf16 autocast on CUDA
    extras: Callable[[Tensor], dict[str, Any]] | None = None  # the loader's batch_extras (document segments)

    def batch_extras(self, x: Tensor) -> dict[str, Any]:
        """The forward's keyword arguments for a batch, as training gets them from the loader."""
        return self.extras(x) if self.extras is not None else {}


def bits_per_byte(loss_sum: float, token_count: float, byte_count: float) -> float:
    """BPB = (mean loss in nats / ln 2) * tokens / bytes."""
    return (loss_sum / token_count) / math.log(2.0) * (token_count / byte_count)


def eval_val(model: nn.Module, val: ValData) -> tuple[float, float]:
    """Mean cross-entropy over the validation split and its BPB; ranks split the sequences."""
    local_batch_tokens = val.batch_tokens // (val.world_size * val.grad_accum_steps)
    if local_batch_tokens < val.seq_len:
        raise ValueError("val_batch_size must provide at least one sequence per rank and micro-step")
    local_batch_seqs = local_batch_tokens // val.seq_len
    total_seqs = (val.tokens.numel() - 1) // val.seq_len
    seq_start = (total_seqs * val.rank) // val.world_size
    seq_end = (total_seqs * (val.rank + 1)) // val.world_size
    loss_sum = torch.zeros((), device=val.device, dtype=torch.float64)
    token_count = torch.zeros((), device=val.device, dtype=torch.float64)
    byte_count = torch.zeros((), device=val.device, dtype=torch.float64)
    was_training = model.training
    model.eval()
    amp = torch.autocast(device_type="cuda", dtype=torch.bfloat16) if val.autocast else nullcontext()
    # no_grad, not the baseline's inference_mode: same numbers, but caches a forward builds here
    # (RoPE tables) stay usable by training when the first forward of a run is an evaluation.
    with torch.no_grad():
        for start in range(seq_start, seq_end, local_batch_seqs):
            end = min(start + local_batch_seqs, seq_end)
            local = val.tokens[start * val.seq_len : end * val.seq_len + 1].to(
                device=val.device, dtype=torch.int64, non_blocking=val.device.type == "cuda")
            x = local[:-1].reshape(-1, val.seq_len)
            y = local[1:].reshape(-1, val.seq_len)
            with amp:
                batch_loss = model(x, y, **val.batch_extras(x)).detach()
            n = float(y.numel())
            loss_sum += batch_loss.to(torch.float64) * n
            token_count += n
            byte_count += val.tables.count(x.reshape(-1), y.reshape(-1)).to(torch.float64).sum()
    if dist.is_available() and dist.is_initialized():
        for t in (loss_sum, token_count, byte_count):
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
    model.train(was_training)
    val_loss = (loss_sum / token_count).item()
    return float(val_loss), bits_per_byte(loss_sum.item(), token_count.item(), byte_count.item())
