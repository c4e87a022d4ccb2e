"""SentencePiece byte tables for bits-per-byte, exactly as the challenge counts bytes.

A target token contributes its piece's UTF-8 bytes (without the leading ``▁``), one
byte for a byte-fallback piece, plus one byte for the leading space when its piece
starts with ``▁`` and the previous token is not a boundary (control/unknown) token.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from golfplan.core.errors import DataError


@dataclass
class ByteTables:
    base_bytes: Tensor  # int16 [vocab]
    has_leading_space: Tensor  # bool [vocab]
    is_boundary: Tensor  # bool [vocab]

    def to(self, device: torch.device) -> "ByteTables":
        return ByteTables(self.base_bytes.to(device), self.has_leading_space.to(device), self.is_boundary.to(device))

    def count(self, prev_ids: Tensor, tgt_ids: Tensor) -> Tensor:
        """Bytes of the text each target token adds, given the token before it."""
        b = self.base_bytes[tgt_ids].to(torch.int16)
        b += (self.has_leading_space[tgt_ids] & ~self.is_boundary[prev_ids]).to(torch.int16)
        return b

    def per_token(self, tokens: Tensor, block: int = 1 << 22) -> Tensor:
        """int16 byte counts aligned with ``tokens``: entry i is what token i adds as a target after
        token i-1 (entry 0, which nothing predicts, is 0). ValData's default byte counts."""
        out = torch.zeros(tokens.numel(), dtype=torch.int16)
        tables = self.to(torch.device("cpu"))
        for a in range(1, tokens.numel(), block):
            b = min(a + block, tokens.numel())
            out[a:b] = tables.count(tokens[a - 1 : b - 1].long(), tokens[a:b].long())
        return out


def load_tokenizer(path: str | Path):
    import sentencepiece as spm

    path = Path(path)
    if not path.is_file():
        raise DataError(f"tokenizer not found: {path}")
    try:
        return spm.SentencePieceProcessor(model_file=str(path))
    except Exception as e:  # sentencepiece raises plain RuntimeError/OSError on a bad file
        raise DataError(f"{path} is not a SentencePiece model ({str(e).splitlines()[0]})") from None


def build_byte_tables(sp, vocab_size: int) -> ByteTables:
    """The challenge's ``build_sentencepiece_luts``."""
    sp_vocab = int(sp.vocab_size())
    size = max(sp_vocab, vocab_size)
    base = np.zeros((size,), dtype=np.int16)
    lead = np.zeros((size,), dtype=np.bool_)
    boundary = np.ones((size,), dtype=np.bool_)
    for tid in range(sp_vocab):
        if sp.is_control(tid) or sp.is_unknown(tid) or sp.is_unused(tid):
            continue
        boundary[tid] = False
        if sp.is_byte(tid):
            base[tid] = 1
            continue
        piece = sp.id_to_piece(tid)
        if piece.startswith("\u2581"):
            lead[tid] = True
            piece = piece[1:]
        base[tid] = len(piece.encode("utf-8"))
    return ByteTables(torch.from_numpy(base), torch.from_numpy(lead), torch.from_numpy(boundary))


def piece_surfaces(sp, ids: list[int]) -> list[str]:
    """The text each token of ``ids`` stands for, in order (their concatenation is the decoded text):
    a piece's string with ``▁`` as a space; a run of byte-fallback pieces gives each character to
    the piece of its first byte and "" to the others. What a byte sidecar is computed from (the
    record used SentencePiece's protobuf surfaces, which need the protobuf package)."""
    out: list[str] = []
    pending = bytearray()

    def flush() -> None:
        i = 0
        while i < len(pending):
            lead = pending[i]
            n = 1 if lead < 0x80 else 2 if lead >> 5 == 0b110 else 3 if lead >> 4 == 0b1110 else 4
            out.append(bytes(pending[i : i + n]).decode("utf-8", errors="replace"))
            out.extend([""] * (min(n, len(pending) - i) - 1))
            i += n
        pending.clear()

    for i in ids:
        if sp.is_byte(i):
            pending.append(int(sp.id_to_piece(i)[3:5], 16))
            continue
        flush()
        out.append("" if sp.is_control(i) else sp.id_to_piece(i).replace("\u2581", " "))
    flush()
    return out


def check_vocab(sp, vocab_size: int, path: str | Path) -> None:
    if int(sp.vocab_size()) != vocab_size:
        raise DataError(f"tokenizer {path} has vocab {int(sp.vocab_size())} but the config says vocab_size={vocab_size}; "
                        f"use the matching tokenizer or --set vocab_size={int(sp.vocab_size())}")


AGREEMENT_SAMPLE = 2000  # validation tokens decoded and re-encoded to test the tokenizer against the shards
# Measured on documents tokenized by the challenge's sp1024/4096/8192 and the embedded tokenizer:
# the right tokenizer gives back 0.97-1.0 of them, a wrong one of the same size 0.44-0.93.
MIN_AGREEMENT = 0.75  # conservative: only a clearly wrong tokenizer is refused
MIN_USAGE_SAMPLE = 20_000  # tokens needed before the largest id says anything about the vocabulary


def check_tokens_match(sp, tokens: Tensor, path: str | Path) -> float:
    """Raise DataError when the shards were evidently not made with this tokenizer; return the
    agreement (below).

    1. an id beyond the tokenizer's vocabulary;
    2. a vocabulary twice too large: over a sample of 20,000 tokens or more, the largest id is
       below half the vocabulary (sp1024 shards read with an sp4096 tokenizer);
    3. agreement: the first ``AGREEMENT_SAMPLE`` tokens are decoded document by document (split at
       control tokens such as BOS, and at unknown tokens, which decode to a placeholder) and
       encoded again; the tokenizer that made them gives the same ids back, another one does not.
    """
    import difflib

    vocab = int(sp.vocab_size())
    top = int(tokens.to(torch.int32).max()) if tokens.numel() else 0
    if top >= vocab:
        raise DataError(f"the shards hold token id {top} but tokenizer {path} has only {vocab} tokens; "
                        f"use the tokenizer the shards were made with")
    if tokens.numel() >= MIN_USAGE_SAMPLE and top < vocab // 2:
        raise DataError(f"the shards' largest token id is {top} in {tokens.numel():,} tokens, but tokenizer {path} "
                        f"has {vocab} tokens: were the shards made with a smaller vocabulary?")
    docs: list[list[int]] = [[]]
    for i in tokens[:AGREEMENT_SAMPLE].tolist():
        if sp.is_control(i) or sp.is_unknown(i):
            docs.append([])
        else:
            docs[-1].append(int(i))
    matched = total = 0
    for doc in docs:
        if not doc:
            continue
        again = sp.encode(sp.decode(doc))
        sm = difflib.SequenceMatcher(None, doc, again, autojunk=False)
        matched += sum(b.size for b in sm.get_matching_blocks())
        total += max(len(doc), len(again))
    agreement = matched / total if total else 1.0
    if agreement < MIN_AGREEMENT:
        raise DataError(f"tokenizer {path} does not match the shards: decoding and re-encoding the first "
                        f"{min(tokens.numel(), AGREEMENT_SAMPLE):,} validation tokens gives back only "
                        f"{agreement:.0%} of them (were the shards made with another tokenizer?)")
    return agreement
