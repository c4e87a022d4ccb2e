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


def check_vocab(sp, vocab_size: int, path: str | Path) -> None:
    if int(sp.vocab_size()) != vocab_size:
        raise DataError(f"tokenizer {path} has vocab {int(sp.vocab_size())} but the config says vocab_size={vocab_size}; "
                        f"use the matching tokenizer or --set vocab_size={int(sp.vocab_size())}")
