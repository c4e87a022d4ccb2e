"""Score-first test-time training with SGD: the model keeps learning on validation tokens it has
already scored.

The validation split is cut into chunks of ``chunk_tokens`` (32,768) positions. For each chunk,
in order: score it (sliding windows, ``stride`` 64, under no_grad: the score is committed
first), then train every unfrozen weight on it with SGD (momentum 0.9, ``epochs`` passes over
its whole ``seq_len`` sequences in batches of ``batch_seqs``, gradient clip 1.0, learning rate
``lr`` decayed by a cosine over the chunks). The last chunk is scored and never trained on, so
chunk i is scored by a model adapted on chunks 0 .. i-1 only. The record
(03-23_LeakyReLU_LegalTTT_ParallelMuon, after PR #461): lr 0.002, 3 epochs, 32,768-token chunks,
no frozen blocks (its code's default froze the first 2 of 11), batches of 32 sequences, clip
1.0, stride 64: 1.1218 -> 1.1194 BPB (-0.0025, 3 seeds), 409 s of its 600 s evaluation budget.

Readings chosen: the training loss is the score's plain cross-entropy (``token_losses``, eval
mode), not the run's training loss with its plugin terms; windows are assigned to the chunk of
the first position they score (as the record), each position scored once (see sliding_window);
the frozen blocks are a fraction of the depth. It adapts weights, so it acts only on the final
score (``final``): periodic and pre-export evaluations get the default. It keeps a copy of the
weights and puts them back when it is done. Eager (the record too); nothing here
touches the training forward: compile-safe. On several GPUs the ranks split each chunk's
windows and sequences and average their gradients.
"""

from __future__ import annotations

import torch

from golfplan.core.evaluate.score import Tally, WeightsSnapshot, rank_share, score_windows, unwrap
from golfplan.core.evaluate.ttt import cosine, sgd_on_scored, sliding_windows
from golfplan.core.technique import Float, Int, Technique, hookimpl


def windows_by_chunk(num_targets: int, seq_len: int, stride: int, chunk: int) -> list[list[tuple[int, int]]]:
    """Sliding windows (each position scored once) grouped by the chunk of the first position they score."""
    out: list[list[tuple[int, int]]] = [[] for _ in range((num_targets + chunk - 1) // chunk)]
    for start, first in sliding_windows(num_targets, seq_len, stride):
        out[(start + first) // chunk].append((start, first))
    return out


def score_first_sgd(model, val, config, p) -> tuple[float, float]:
    base = unwrap(model)
    snapshot = WeightsSnapshot(base)
    n_frozen = int(round(p.freeze_frac * len(base.blocks)))
    frozen = {id(q) for b in list(base.blocks)[:n_frozen] for q in b.parameters()}
    params = [q for q in base.parameters() if id(q) not in frozen]
    for q in base.parameters():
        q.requires_grad_(id(q) not in frozen)
    opt = torch.optim.SGD(params, lr=p.lr, momentum=p.momentum)
    L, N = val.seq_len, val.num_targets
    chunks = windows_by_chunk(N, L, p.stride, p.chunk_tokens)
    tally = Tally(val)
    try:
        for ci, windows in enumerate(chunks):
            score_windows(base, val, tally, rank_share(windows, val), p.batch_seqs)
            if ci == len(chunks) - 1 or p.epochs <= 0:
                continue  # the last chunk is scored, never trained on
            c0, c1 = ci * p.chunk_tokens, min((ci + 1) * p.chunk_tokens, N)
            # x offsets c0 + s*L .. +L: targets up to c1, all scored above
            sgd_on_scored(base, val, opt, params, val.tokens, c0, (c1 - c0) // L, L, p.batch_seqs, p.epochs,
                          p.grad_clip, lr=cosine(p.lr, ci, len(chunks)))
        return tally.result()
    finally:
        snapshot.restore()


class TTTSGD(Technique):
    name = "ttt_sgd"
    summary = "score-first test-time training: score each 32K-token chunk, then SGD on it (the final score only)"
    slot = "eval_strategy"
    compile_safe = True  # evaluation only: the training forward is untouched (the TTT itself runs eager)
    params = {
        "lr": Float(0.002, 1e-5, 0.1, log=True, help="SGD learning rate at the first chunk (cosine to 0 at the last)"),
        "momentum": Float(0.9, 0.0, 0.99, help="SGD momentum"),
        "epochs": Int(3, 0, 10, help="passes over each scored chunk"),
        "chunk_tokens": Int(32768, 64, 1 << 20, log=True, help="positions per chunk: scored, then trained on"),
        "stride": Int(64, 1, 4096, log=True, help="sliding-window stride of the scoring (>= seq_len: plain windows)"),
        "batch_seqs": Int(32, 1, 256, log=True, help="sequences (and scoring windows) per step"),
        "grad_clip": Float(1.0, 0.0, 10.0, help="gradient-norm clip (0: none)"),
        "freeze_frac": Float(0.0, 0.0, 1.0, help="fraction of the depth, from the first block, kept frozen "
                                                 "(the record: 0; its code's default 2 of 11 = 0.18)"),
    }
    source = "2026-03-23_LeakyReLU_LegalTTT_ParallelMuon"
    source_result = ("legal score-first TTT: 1.1218 -> 1.1194 BPB (-0.0025, 3-seed mean); TTT eval ~409 s on 8xH100 "
                     "(ablation: -0.0017 with 2 frozen blocks, -0.0004 more with none)")

    @hookimpl
    def evaluate(self, model, val, config, final):
        if not final:
            return None  # adapts weights: never in a periodic or pre-export evaluation
        return score_first_sgd(model, val, config, self.p)
