"""Phased per-document LoRA test-time training: the record's final score (1.07254 -> 1.05989 BPB).

Every validation document (BOS to the next BOS) is scored on its own, left to right, by the model
plus low-rank adapters of its own that learn from the document's already-scored tokens. Documents
are sorted by length and taken ``batch_docs`` (64) at a time, the batches with the longest
documents first. Within a batch each document is scored in chunks of ``chunk`` (48) tokens, each
with at most ``context`` tokens of the same document as context (the record: 2048, its sequence
length); right after a chunk's scores are committed, one AdamW step (lr 1e-4, betas (0, 0.99),
eps 1e-10, weight decay 0.5) trains the adapters on that chunk's mean loss per document. A
document's last chunk is scored and never trained on. The adapters: rank ``rank`` (80), scale
alpha/rank (alpha 144), ``A`` uniform in +-1/sqrt(fan_in) and ``B`` zero, one per document on
Q, K, V, O and the MLP of every layer run and on the head. For each new batch ``B`` is reset to zero
and the optimizer state cleared while ``A`` stays warm. Phases: once ``prefix_docs`` x i/``phases``
documents (2500 x 1/3, 2/3, 1 in the run) have been scored, every base weight is trained with SGD
(lr 1e-3 with a cosine over 32,768-token chunks, momentum 0.9, 1 epoch, clip 1.0, batches of 32
sequences, attention kept inside documents) on all documents scored so far, and the next batches
start from fresh adapters. Source: F:289-315 (settings), 1427-1505 (the adapted forward),
1636-1728 (the adapters), 2926-3317 (the evaluation), 3617-3690 (warm-up and timer) of
2026-04-27_SP8192_LQER_SparseGate_BOSSmearFix_9HpStack_1.0611; run values from its seed-42 log.

Readings chosen. The model calls the adapters itself (``GPT.token_losses(lora=...)``): Q, K, V add to
the attention's input projections; O (as the record's ``o_loras(n)``) and the MLP adapter read the
module's input and add to its whole output; the head adapter adds to the projection before the
softcap. One set per layer run, counted in the order the active layer order runs the blocks, so a
block that runs three times (depth recurrence) has three (the record: 17 slots on its 11 looped
blocks). Each scoring row is one document's window (its inputs never reach the next BOS), so it
attends plain causally, with no document mask. The record's global SGD skips its last 32K chunk (its
score-first loop, reused) and packs each batch as one row, documents in pieces from their starts;
kept. A document in the record ends one token after the next BOS (that BOS is its last target), so
every position is scored exactly once. Where the run compiles (``compile: auto`` on CUDA, or ``on``),
the adapted forward is compiled with dynamic shapes, as the record's, after a warm-up on random
tokens that the evaluation clock reports apart. It adapts weights, so it acts only on the final
score; it restores the weights after. On several GPUs the ranks take the batches in turn and meet at
each phase. Defaults are the record's; a CPU test scales them down (see
tests/plugins/test_frontier_eval.py). Nothing here touches the training forward: compile-safe.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn

from golfplan.core.evaluate.score import Tally, WeightsSnapshot, compiling, score_tokens, unwrap
from golfplan.core.evaluate.ttt import cosine, sgd_on_scored
from golfplan.core.technique import Bool, Float, Int, Technique, hookimpl


class BatchedLoRA(nn.Module):
    """Low-rank adapters, one per layer and document: x (docs, seq, in) at layer l ->
    (x A_{l,d}^T) B_{l,d}^T * alpha / rank."""

    def __init__(self, layers: int, docs: int, fan_in: int, fan_out: int, rank: int, alpha: float,
                 g: torch.Generator) -> None:
        super().__init__()
        self.bound, self.scale = fan_in ** -0.5, alpha / rank
        self.A = nn.Parameter(torch.empty(layers, docs, rank, fan_in).uniform_(-self.bound, self.bound, generator=g))
        self.B = nn.Parameter(torch.zeros(layers, docs, fan_out, rank))

    def forward(self, x: Tensor, layer: int) -> Tensor:
        return (x @ self.A[layer].transpose(1, 2).to(x.dtype)) @ self.B[layer].transpose(1, 2).to(x.dtype) * self.scale


def layers_run(model: nn.Module) -> int:
    """The layers a forward runs: the blocks of the active layer order (17 for the record's 11 looped)."""
    return sum(len(half) for half in model.stack.orders[model.stack.active])


class Adapters(nn.Module):
    """The adapters of one batch of documents, called by the model as ``lora(point, layer, x)``:
    Q, K, V, O and the MLP of every layer run, and the head."""

    def __init__(self, model: nn.Module, docs: int, p, g: torch.Generator, device: torch.device) -> None:
        super().__init__()
        attn = getattr(model.blocks[0], "block", model.blocks[0]).attn
        dim, kv = model.tok_emb.embedding_dim, attn.c_k.out_features
        shapes = {"q": (dim, attn.c_q.out_features), "k": (dim, kv), "v": (dim, kv), "o": (dim, dim), "mlp": (dim, dim)}
        skip = {"k": not p.k_lora, "o": not p.o_lora, "mlp": not p.mlp_lora}
        layers = layers_run(model)
        self.docs = docs
        self.loras = nn.ModuleDict({n: BatchedLoRA(layers, docs, i, o, p.rank, p.alpha, g)
                                    for n, (i, o) in shapes.items() if not skip.get(n)})
        self.loras["head"] = BatchedLoRA(1, docs, dim, model.tok_emb.num_embeddings, p.rank, p.alpha, g)
        self.to(device)

    def forward(self, point: str, layer: int, x: Tensor) -> Tensor | None:
        return self.loras[point](x, layer) if point in self.loras else None

    def reset(self, warm_a: bool, g: torch.Generator) -> None:
        """For the next batch: B back to zero, A kept warm (or drawn again)."""
        with torch.no_grad():
            for lora in self.loras.values():
                lora.B.zero_()
                if not warm_a:
                    lora.A.uniform_(-lora.bound, lora.bound, generator=g)


def adamw(ad: Adapters, p) -> torch.optim.Optimizer:
    return torch.optim.AdamW(ad.parameters(), lr=p.lr, betas=(p.beta1, p.beta2), eps=1e-10, weight_decay=p.weight_decay)


def compiled_forward(base: nn.Module, val, config, p, ctx_len: int):
    """``token_losses`` compiled with dynamic shapes where the run compiles (the record's
    ``torch.compile(dynamic=True)``), warmed up off the evaluation clock on random tokens with
    throwaway adapters, at the widths of a first chunk and of a full context (F:3648-3678)."""
    if not (p.compile and compiling(config, val.device)):
        return None
    fn = torch.compile(base.token_losses, dynamic=True, backend=config.compile_backend)
    with val.clock.warmup():
        g = torch.Generator().manual_seed(0)
        ad = Adapters(base, p.batch_docs, p, g, val.device)
        opt = adamw(ad, p)
        for width in (p.chunk, ctx_len):
            x, y = torch.randint(0, config.vocab_size, (2, p.batch_docs, width), generator=g).to(val.device)
            losses = score_tokens(base, val, x, y, extras={}, grad=True, fn=fn, lora=ad)
            losses[:, : p.chunk].mean(dim=1).sum().backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
    return fn


def global_sgd(base: nn.Module, val, docs: list[tuple[int, int]], ctx_len: int, p) -> None:
    """Every base weight trained with SGD on the scored documents (one phase)."""
    if not docs:
        return
    tokens = torch.cat([val.tokens[s : s + n] for s, n in docs]).to(torch.int64)
    total, chunk = tokens.numel() - 1, p.global_chunk_tokens
    nchunks = (total + chunk - 1) // chunk
    params = [q for q in base.parameters()]
    for q in params:
        q.requires_grad_(True)
    opt = torch.optim.SGD(params, lr=p.global_lr, momentum=p.global_momentum)
    for ci in range(nchunks - 1):  # the record skips the last chunk
        c0, c1 = ci * chunk, min((ci + 1) * chunk, total)
        sgd_on_scored(base, val, opt, params, tokens, c0, (c1 - c0) // ctx_len, ctx_len, p.global_batch_seqs,
                      p.global_epochs, p.global_grad_clip, lr=cosine(p.global_lr, ci, nchunks), documents=True)
    for q in params:
        q.requires_grad_(False)


def score_batch(base: nn.Module, val, tally: Tally, batch: list[tuple[int, int]], ad: Adapters, ctx_len: int,
                p, fn=None) -> None:
    """Score one batch of documents chunk by chunk, a row each (one document: plain causal
    attention); after each chunk's scores are committed, train the adapters on it (a document's last
    chunk: never)."""
    opt = adamw(ad, p)
    starts = torch.tensor([s for s, _ in batch])
    pred = torch.tensor([n - 1 for _, n in batch])
    nch = (pred + p.chunk - 1) // p.chunk
    N = val.num_targets
    for ci in range(int(nch.max())):
        active = ci < nch
        chunk_end = torch.where(ci == nch - 1, pred, torch.full_like(pred, (ci + 1) * p.chunk))
        win_start = (chunk_end - ctx_len).clamp(min=0)
        width = min((ci + 1) * p.chunk, ctx_len)
        col = torch.arange(width)
        idx = ((starts + win_start)[:, None] + torch.arange(width + 1)[None, :]).clamp(max=N)
        seq = val.tokens[idx].to(torch.int64)
        valid = (col[None, :] < (chunk_end - win_start)[:, None]) & active[:, None]
        x = torch.where(valid, seq[:, :-1], 0).to(val.device)
        y = torch.where(valid, seq[:, 1:], 0).to(val.device)
        first = ci * p.chunk - win_start
        scored = valid & (col[None, :] >= first[:, None])
        train = scored & (ci < nch - 1)[:, None]
        trains = bool(train.any())  # on the host, once: no device sync per step
        train = train.to(val.device)
        for step in range(p.grad_steps):
            losses = score_tokens(base, val, x, y, extras={}, grad=True, fn=fn, lora=ad)
            if step == 0:  # the score is committed before any step on it
                positions = (starts + win_start)[:, None] + col[None, :] + 1
                tally.add_where(positions, losses, scored)
            if not trains:
                break
            opt.zero_grad(set_to_none=True)
            ((losses * train).sum(dim=1) / p.chunk).sum().backward()
            opt.step()


def phased_lora_ttt(model, val, config, p) -> tuple[float, float]:
    base = unwrap(model)
    snapshot = WeightsSnapshot(base)
    ctx_len = p.context or val.seq_len
    docs = val.documents()
    by_length = sorted(docs, key=lambda d: d[1])
    batches = [by_length[i : i + p.batch_docs] for i in range(0, len(by_length), p.batch_docs)]
    batches.sort(key=lambda b: -max(n for _, n in b))  # longest documents first (the record's order)
    prefix = min(len(docs), p.prefix_docs)
    boundaries = [prefix * (i + 1) // p.phases for i in range(p.phases)] if prefix > 0 else []
    g = torch.Generator().manual_seed(config.seed)
    tally = Tally(val)
    scored: list[tuple[int, int]] = []
    ad: Adapters | None = None
    phase = 0
    distributed = dist.is_available() and dist.is_initialized()
    try:
        for q in base.parameters():
            q.requires_grad_(False)
        fn = compiled_forward(base, val, config, p, ctx_len)
        for bi, batch in enumerate(batches):
            if bi % val.world_size == val.rank:
                if ad is None or ad.docs != len(batch):
                    ad = Adapters(base, len(batch), p, g, val.device)
                else:
                    ad.reset(p.warm_a, g)
                score_batch(base, val, tally, batch, ad, ctx_len, p, fn)
            scored.extend(batch)
            if phase < len(boundaries) and len(scored) >= boundaries[phase]:
                if distributed:
                    dist.barrier()
                global_sgd(base, val, scored[: boundaries[phase]], ctx_len, p)
                ad, phase = None, phase + 1  # the next batches start from fresh adapters
        return tally.result()
    finally:
        snapshot.restore()


class TTTLoRA(Technique):
    name = "ttt_lora"
    summary = "phased per-document LoRA test-time training, score-first (the record's final score)"
    slot = "eval_strategy"
    compile_safe = True  # evaluation only: the training forward is untouched
    params = {
        "rank": Int(80, 1, 256, log=True, help="adapter rank (the run: 80; code default 96)"),
        "alpha": Float(144.0, 1.0, 1024.0, log=True, help="adapter scale numerator: output x alpha/rank"),
        "lr": Float(1e-4, 1e-6, 1e-1, log=True, help="AdamW learning rate of the adapters"),
        "beta1": Float(0.0, 0.0, 0.99, help="AdamW beta1 of the adapters"),
        "beta2": Float(0.99, 0.5, 0.9999, help="AdamW beta2 of the adapters (the run: 0.99)"),
        "weight_decay": Float(0.5, 0.0, 2.0, help="AdamW weight decay of the adapters (the run: 0.5)"),
        "chunk": Int(48, 1, 1024, log=True, help="tokens of a document scored per step, then trained on"),
        "context": Int(0, 0, 65536, help="tokens of same-document context at most (0: the run's train_seq_len; "
                                         "the record: 2048)"),
        "batch_docs": Int(64, 1, 512, log=True, help="documents scored together, each with its own adapters"),
        "grad_steps": Int(1, 1, 8, help="adapter steps per chunk (the first one's forward is the score)"),
        "k_lora": Bool(True, help="adapters on K"),
        "o_lora": Bool(True, help="adapters on the attention output"),
        "mlp_lora": Bool(True, help="adapters on the MLP"),
        "warm_a": Bool(True, help="keep A across batches of a phase (only B is reset)"),
        "compile": Bool(True, help="compile the adapted forward (dynamic shapes) where the run compiles; "
                                   "warm-up on random tokens off the evaluation clock"),
        "prefix_docs": Int(2500, 0, 1_000_000, log=False, help="documents after which the last global phase runs "
                                                              "(0: no global phases)"),
        "phases": Int(3, 1, 16, help="global SGD phases, evenly spread over the prefix documents"),
        "global_lr": Float(1e-3, 1e-5, 1e-1, log=True, help="SGD learning rate of a phase (cosine over its chunks)"),
        "global_momentum": Float(0.9, 0.0, 0.99, help="SGD momentum of a phase"),
        "global_epochs": Int(1, 0, 8, help="passes over the scored documents per phase"),
        "global_chunk_tokens": Int(32768, 64, 1 << 20, log=True, help="tokens per chunk of a phase (its cosine step)"),
        "global_batch_seqs": Int(32, 1, 256, log=True, help="sequences (of `context` tokens) per SGD step"),
        "global_grad_clip": Float(1.0, 0.0, 10.0, help="gradient-norm clip of a phase (0: none)"),
    }
    source = "2026-04-27_SP8192_LQER_SparseGate_BOSSmearFix_9HpStack_1.0611"
    source_result = ("seed 42: quantized 1.07254 -> phased LoRA TTT 1.05989 BPB (-0.0127); TTT eval 508.8 s of 600 s "
                     "on 8xH100, after a 137.6 s compile warm-up on random tokens")

    @hookimpl
    def evaluate(self, model, val, config, final):
        if not final:
            return None  # adapts weights: never in a periodic or pre-export evaluation
        return phased_lora_ttt(model, val, config, self.p)
