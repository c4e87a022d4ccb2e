"""Validation loss and bits per byte: the challenge's ``eval_val``, and what evaluation strategies share.

``ValData`` holds the validation tokens and, per token, the bytes it adds to the text as a
target: from the SentencePiece tables by default, or from the data folder's byte sidecar
``fineweb_val_bytes_*.bin`` (a tokenizer whose pieces are not the text's bytes, such as the
case-operator tokenizer: BPB then counts the original UTF-8 bytes). Its documents start at BOS.

Positions: position p is validation token p as a target (predicted from tokens ``< p``);
positions 1 .. N (N = tokens - 1) are what an evaluation scores, each exactly once.

An evaluation strategy (the ``evaluate`` hook) scores with :func:`score_tokens` (or
:func:`score_windows`) and adds every scored position, once, to a :class:`Tally`, which gives
loss and BPB; the causality probe (:mod:`golfplan.check.causality`) reads what the tally saw.
:func:`plain` is the default evaluation in that form. ``ValData.clock`` times the final
evaluation; a strategy runs its compile warm-up (random tokens, never validation tokens)
inside ``val.clock.warmup()``, which is reported apart and not counted against the limit.
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import torch
import torch.distributed as dist
from torch import Tensor, nn

from golfplan.core.data.tokenizer import ByteTables


class EvalClock:
    """The final evaluation's clock: the wall time of the scoring pass less the compile warm-up a
    strategy runs on random tokens inside ``warmup()`` (reported apart, as the record did: its
    137.6 s warm-up ran before the eval timer). ``limit_s`` is the challenge's evaluation limit
    (600 s on 8xH100; 0: none); a final evaluation over it is reported, not cut short."""

    def __init__(self, limit_s: float = 0.0, device: torch.device | None = None) -> None:
        self.limit_s = limit_s
        self.device = device
        self.eval_s = 0.0
        self.warmup_s = 0.0

    def _sync(self) -> None:
        if self.device is not None and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @contextmanager
    def measure(self, final: bool = True) -> Iterator["EvalClock"]:
        """Time the evaluation inside (only a final one: periodic evaluations are not on the clock)."""
        if not final:
            yield self
            return
        self.warmup_s = 0.0
        self._sync()
        t0 = time.perf_counter()
        try:
            yield self
        finally:
            self._sync()
            self.eval_s = time.perf_counter() - t0 - self.warmup_s

    @contextmanager
    def warmup(self) -> Iterator[None]:
        """Compile warm-up on random tokens: timed apart, off the evaluation clock."""
        self._sync()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            self.warmup_s += time.perf_counter() - t0

    @property
    def over_limit(self) -> bool:
        return self.limit_s > 0 and self.eval_s > self.limit_s

    def report(self) -> str:
        """``eval_time:...ms`` (+ the warm-up and the limit when there are any), for the log line."""
        out = f"eval_time:{1000.0 * self.eval_s:.0f}ms"
        if self.warmup_s:
            out += f" compile_warmup:{1000.0 * self.warmup_s:.0f}ms (not on the eval clock)"
        if self.limit_s:
            out += f" eval_limit:{self.limit_s:g}s"
        return out

    def log_to(self, log: Any) -> None:
        """Write the clock's event to a run log, and a warning when the evaluation ran over its limit."""
        log.event("eval_clock", eval_s=round(self.eval_s, 3), warmup_s=round(self.warmup_s, 3),
                  limit_s=self.limit_s, over_limit=self.over_limit)
        if self.over_limit:
            log(f"warning: the final evaluation took {self.eval_s:.1f}s, over the {self.limit_s:g}s evaluation "
                f"limit (compile warm-up of {self.warmup_s:.1f}s not counted)")


@dataclass
class ValData:
    tokens: Tensor  # uint16 validation tokens, whole sequences + 1
    tables: ByteTables  # read once, on the host, into ``byte_counts``
    seq_len: int
    batch_tokens: int  # val_batch_size
    grad_accum_steps: int
    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")
    autocast: bool = False  # bf16 autocast on CUDA
    extras: Callable[[Tensor], dict[str, Any]] | None = None  # the loader's batch_extras (document segments)
    byte_counts: Tensor | None = None  # int16 per token (the sidecar's); None: from ``tables``
    bos_id: int = 1  # the token that starts every document
    clock: EvalClock = field(default_factory=EvalClock)
    trace: Any = None  # a causality probe's recorder (golfplan.check.causality); None in a run
    bytes_source: str = ""  # "sidecar" | "tables"

    def __post_init__(self) -> None:
        if not self.bytes_source:
            self.bytes_source = "tables" if self.byte_counts is None else "sidecar"
        if self.byte_counts is None:
            self.byte_counts = self.tables.per_token(self.tokens)
        if self.byte_counts.numel() != self.tokens.numel():
            raise ValueError(f"{self.byte_counts.numel()} byte counts for {self.tokens.numel()} validation tokens")
        if self.clock.device is None:
            self.clock.device = self.device
        self._device_bytes: Tensor | None = None
        self._docs: list[tuple[int, int]] | None = None

    def batch_extras(self, x: Tensor) -> dict[str, Any]:
        """The forward's keyword arguments for a batch, as training gets them from the loader."""
        return self.extras(x) if self.extras is not None else {}

    @property
    def num_targets(self) -> int:
        """N: positions 1 .. N are scored."""
        return self.tokens.numel() - 1

    def bytes_at(self, positions: Tensor) -> Tensor:
        """The bytes positions add as targets (int16, on ``positions``' device)."""
        if positions.device.type == "cpu":
            return self.byte_counts[positions]
        if self._device_bytes is None or self._device_bytes.device != positions.device:
            self._device_bytes = self.byte_counts.to(positions.device)
        return self._device_bytes[positions]

    def documents(self) -> list[tuple[int, int]]:
        """``(start, length)`` of every document: ``tokens[start]`` is its BOS and ``length`` also counts
        the next document's BOS, its last target (as the record's ``_find_docs``), so the documents'
        targets ``start + 1 .. start + length - 1`` cover positions 1 .. N exactly once. Tokens before
        the first BOS form a document of their own."""
        if self._docs is None:
            starts = (self.tokens.to(torch.int64) == self.bos_id).nonzero().flatten().tolist()
            if not starts or starts[0] != 0:
                starts = [0, *starts]
            ends = [*starts[1:], self.num_targets]
            self._docs = [(s, e - s + 1) for s, e in zip(starts, ends) if e > s]
        return self._docs


def bits_per_byte(loss_sum: float, token_count: float, byte_count: float) -> float:
    """BPB = (mean loss in nats / ln 2) * tokens / bytes."""
    return (loss_sum / token_count) / math.log(2.0) * (token_count / byte_count)


def unwrap(model: nn.Module) -> nn.Module:
    """The model under DDP (``module``) and torch.compile (``_orig_mod``) wrappers."""
    while True:
        inner = getattr(model, "module", None)
        inner = inner if isinstance(inner, nn.Module) else getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


class WeightsSnapshot:
    """The weights and ``requires_grad`` flags of a model, taken by a strategy that adapts weights
    (test-time training) before it starts and restored when it ends, however it ends."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.flags = {q: q.requires_grad for q in model.parameters()}

    def restore(self) -> None:
        with torch.no_grad():
            self.model.load_state_dict(self.state)
        for q, flag in self.flags.items():
            q.requires_grad_(flag)


class Tally:
    """The sums of one scoring pass. A strategy adds every position it scores, exactly once."""

    def __init__(self, val: ValData) -> None:
        self.val = val
        self.loss_sum = torch.zeros((), device=val.device, dtype=torch.float64)
        self.token_count = torch.zeros((), device=val.device, dtype=torch.float64)
        self.byte_count = torch.zeros((), device=val.device, dtype=torch.float64)

    def add(self, positions: Tensor, losses: Tensor) -> None:
        """Positions (int64) scored with these losses (nats, same shape): the score is committed here."""
        positions, losses = positions.reshape(-1), losses.detach().reshape(-1)
        self.loss_sum += losses.to(torch.float64).sum().to(self.loss_sum.device)
        self.token_count += float(positions.numel())
        self.byte_count += self.val.bytes_at(positions).to(torch.float64).sum().to(self.byte_count.device)
        if self.val.trace is not None:
            self.val.trace.scored(positions, losses)

    def add_where(self, positions: Tensor, losses: Tensor, scored: Tensor) -> None:
        """:meth:`add` of the entries where ``scored`` holds (``positions`` and ``scored``: host tensors
        shaped like ``losses``). The mask is resolved on the host and the losses gathered by index: a
        boolean mask on a CUDA tensor would make the host wait for the batch's forward."""
        idx = scored.reshape(-1).nonzero().squeeze(1)
        self.add(positions.reshape(-1)[idx].to(self.val.device), losses.reshape(-1)[idx.to(losses.device)])

    def result(self) -> tuple[float, float]:
        """(val_loss, val_bpb) over every rank's positions."""
        sums = torch.stack([self.loss_sum, self.token_count, self.byte_count])
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(sums, op=dist.ReduceOp.SUM)
        loss_sum, tokens, nbytes = (float(v) for v in sums.tolist())
        if tokens <= 0 or nbytes <= 0:
            raise ValueError("the evaluation scored no tokens (or no bytes)")
        return loss_sum / tokens, bits_per_byte(loss_sum, tokens, nbytes)


def score_tokens(model: nn.Module, val: ValData, x: Tensor, y: Tensor, extras: dict[str, Any] | None = None,
                 grad: bool = False, fn: Callable[..., Tensor] | None = None, **kwargs: Any) -> Tensor:
    """Per-token losses (nats, float32, shaped like ``y``) of predicting ``y`` from ``x``: the model's
    ``token_losses`` (cross-entropy over the full softmax, no training functions) in eval mode, under
    the run's autocast, with ``extras`` (default: the batch's document extras; ``{}``: plain causal
    rows, each one document). Without a graph unless ``grad``: test-time training backpropagates
    through the score it has just committed. ``fn`` replaces ``token_losses`` (a compiled copy);
    ``kwargs`` go to it (``lora``)."""
    base = unwrap(model)
    was_training = base.training
    base.eval()
    extras = val.batch_extras(x) if extras is None else extras
    amp = torch.autocast(device_type="cuda", dtype=torch.bfloat16) if val.autocast else nullcontext()
    try:
        with torch.set_grad_enabled(grad), amp:
            return (fn or base.token_losses)(x, y, **extras, **kwargs)
    finally:
        base.train(was_training)


def score_windows(model: nn.Module, val: ValData, tally: Tally, windows: Sequence[tuple[int, int]],
                  batch_seqs: int, fn: Callable[..., Tensor] | None = None, pad: bool = False) -> None:
    """Score windows and add their positions to ``tally``. A window ``(start, first)`` reads
    ``tokens[start : start + seq_len]`` (cut at the end of the split) and scores its targets from
    offset ``first`` on: positions ``start + first + 1 .. start + len``. Batches of ``batch_seqs``
    windows; ``pad`` fills the last batch up to ``batch_seqs`` rows (fixed shapes for a compiled ``fn``)."""
    L, N = val.seq_len, val.num_targets
    cols = torch.arange(L)
    for b in range(0, len(windows), batch_seqs):
        chunk = list(windows[b : b + batch_seqs])
        rows = batch_seqs if pad else len(chunk)
        starts = torch.tensor([s for s, _ in chunk] + [0] * (rows - len(chunk)), dtype=torch.int64)
        firsts = torch.tensor([f for _, f in chunk] + [L] * (rows - len(chunk)), dtype=torch.int64)
        lengths = (N - starts).clamp(max=L)
        idx = (starts[:, None] + torch.arange(L + 1)[None, :]).clamp(max=N)
        seq = val.tokens[idx].to(torch.int64)
        valid = cols[None, :] < lengths[:, None]
        x = torch.where(valid, seq[:, :-1], 0).to(val.device)
        y = torch.where(valid, seq[:, 1:], 0).to(val.device)
        scored = valid & (cols[None, :] >= firsts[:, None])
        losses = score_tokens(model, val, x, y, fn=fn)
        positions = starts[:, None] + cols[None, :] + 1
        tally.add_where(positions, losses, scored)


def compiling(config: Any, device: torch.device) -> bool:
    """Whether the run compiles on ``device`` (``compile: on``, or ``auto`` on CUDA): what an evaluation
    strategy's own compiled forward follows."""
    return config.compile == "on" or (config.compile == "auto" and device.type == "cuda")


def rank_share(items: Sequence, val: ValData) -> list:
    """This rank's contiguous share of ``items`` (all of them outside torchrun)."""
    n = len(items)
    return list(items[n * val.rank // val.world_size : n * (val.rank + 1) // val.world_size])


def plain(model: nn.Module, val: ValData, config: Any = None, final: bool = False) -> tuple[float, float]:
    """The default evaluation in the form strategies share: ``eval_val``'s non-overlapping
    ``seq_len`` sequences, each split among the ranks as there, scored per token through a Tally.
    Its BPB equals ``eval_val``'s to float rounding (eval_val sums batch means); the causality probe
    reads it as the default strategy."""
    L = val.seq_len
    total = val.num_targets // L
    first, last = (total * val.rank) // val.world_size, (total * (val.rank + 1)) // val.world_size
    local_seqs = max(val.batch_tokens // (val.world_size * val.grad_accum_steps) // L, 1)
    tally = Tally(val)
    score_windows(model, val, tally, [(k * L, 0) for k in range(first, last)], local_seqs)
    return tally.result()


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
    # the bytes of targets seq_start*L+1 .. seq_end*L, summed once on the host (integer counts: the
    # float64 sum is exact): the tables' counts, or the sidecar's (identical sums)
    nbytes = val.byte_counts[seq_start * val.seq_len + 1 : seq_end * val.seq_len + 1]
    byte_count = nbytes.to(torch.float64).sum().to(val.device)
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
    if dist.is_available() and dist.is_initialized():
        for t in (loss_sum, token_count, byte_count):
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
    model.train(was_training)
    val_loss = (loss_sum / token_count).item()
    return float(val_loss), bits_per_byte(loss_sum.item(), token_count.item(), byte_count.item())
