"""Token shards in the challenge's format, and the baseline's distributed loader.

A shard is a 256 x int32 little-endian header (magic 20240520, version 1, token
count, zeros) followed by the tokens as uint16 little-endian. Train shards are
``fineweb_train_*.bin`` and validation shards ``fineweb_val_*.bin`` in one folder. A folder may
also hold a validation byte sidecar ``fineweb_val_bytes_*.bin`` (same format, one entry per
validation token: the original UTF-8 bytes that token adds to the text as a target), written
for tokenizers whose pieces are not the text's bytes (the case-operator tokenizer).
"""

from __future__ import annotations

import glob
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from golfplan.core.errors import DataError

SHARD_MAGIC = 20240520
SHARD_VERSION = 1
HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4
TRAIN_PATTERN = "fineweb_train_*.bin"
VAL_PATTERN = "fineweb_val_*.bin"
VAL_BYTES_PATTERN = "fineweb_val_bytes_*.bin"  # the byte sidecar (it matches VAL_PATTERN too: kept apart)


def write_shard(path: str | Path, tokens: np.ndarray | Tensor) -> None:
    arr = np.asarray(tokens.cpu().numpy() if isinstance(tokens, Tensor) else tokens)
    if arr.size and (arr.min() < 0 or arr.max() >= 2**16):
        raise DataError(f"token ids must fit in uint16 to write {path}")
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[0], header[1], header[2] = SHARD_MAGIC, SHARD_VERSION, arr.size
    with open(path, "wb") as f:
        f.write(header.tobytes())
        f.write(arr.astype("<u2").tobytes())


def load_data_shard(file: str | Path) -> Tensor:
    """Read one shard, checking magic, version and size (a clear DataError otherwise)."""
    file = Path(file)
    header = np.fromfile(file, dtype="<i4", count=HEADER_INTS)
    if header.size != HEADER_INTS:
        raise DataError(f"{file}: truncated header ({header.size * 4} of {HEADER_BYTES} bytes)")
    if int(header[0]) != SHARD_MAGIC:
        raise DataError(f"{file}: bad magic {int(header[0])} (expected {SHARD_MAGIC}); not a challenge token shard")
    if int(header[1]) != SHARD_VERSION:
        raise DataError(f"{file}: unsupported shard version {int(header[1])} (expected {SHARD_VERSION})")
    num_tokens = int(header[2])
    expected = HEADER_BYTES + num_tokens * 2
    actual = file.stat().st_size
    if actual != expected:
        raise DataError(f"{file}: size {actual} bytes does not match its header ({num_tokens} tokens = {expected} bytes)")
    tokens = np.fromfile(file, dtype="<u2", count=num_tokens, offset=HEADER_BYTES)
    return torch.from_numpy(tokens.astype(np.uint16, copy=False))


def shard_files(data_path: str | Path, pattern: str) -> list[Path]:
    files = [Path(p) for p in sorted(glob.glob(str(Path(data_path) / pattern)))]
    if not files:
        raise DataError(f"no shards matching {pattern} in {data_path}")
    return files


def validation_files(data_path: str | Path) -> list[Path]:
    """The validation token shards, without the byte sidecar's (the record's filter, F:520-535)."""
    files = [f for f in shard_files(data_path, VAL_PATTERN) if not f.name.startswith("fineweb_val_bytes_")]
    if not files:
        raise DataError(f"no shards matching {VAL_PATTERN} in {data_path} (only a byte sidecar)")
    return files


def load_validation_tokens(data_path: str | Path, seq_len: int, max_tokens: int = 0) -> Tensor:
    """All validation tokens, trimmed to whole sequences (+1 for the last target)."""
    tokens = torch.cat([load_data_shard(f) for f in validation_files(data_path)]).contiguous()
    if max_tokens > 0:
        tokens = tokens[: max_tokens + 1]
    usable = ((tokens.numel() - 1) // seq_len) * seq_len
    if usable <= 0:
        raise DataError(f"validation split in {data_path} is shorter than one sequence of {seq_len}")
    return tokens[: usable + 1]


def load_validation_bytes(data_path: str | Path, num_tokens: int) -> Tensor | None:
    """The byte sidecar's counts for the first ``num_tokens`` validation tokens (int16), or None when
    the folder has no sidecar (bytes then come from the tokenizer's pieces). Entry i is what token i
    adds as a target; a BOS adds 0 (the record's ``load_validation_byte_sidecar``, F:520-535)."""
    files = [Path(p) for p in sorted(glob.glob(str(Path(data_path) / VAL_BYTES_PATTERN)))]
    if not files:
        return None
    counts = torch.cat([load_data_shard(f) for f in files])
    if counts.numel() < num_tokens:
        raise DataError(f"byte sidecar in {data_path} has {counts.numel():,} entries for {num_tokens:,} "
                        f"validation tokens")
    counts = counts[:num_tokens].to(torch.int32)
    if counts.numel() and int(counts.max()) >= 2**15:
        raise DataError(f"byte sidecar in {data_path} gives a token {int(counts.max())} bytes: not a byte sidecar?")
    return counts.to(torch.int16)


def document_segments(x: Tensor, bos_id: int) -> Tensor:
    """(batch, seq) int64: the document index of each position within its row (0 for a row's
    leading piece of a document begun in an earlier row, +1 at every BOS)."""
    return torch.cumsum((x == bos_id).long(), dim=1)


class TokenStream:
    """Reads shards in order, wrapping around, and hands out contiguous chunks."""

    def __init__(self, files: list[Path]) -> None:
        self.files = files
        self.file_idx = 0
        self.tokens = load_data_shard(self.files[0])
        self.pos = 0

    def _advance_file(self) -> None:
        self.file_idx = (self.file_idx + 1) % len(self.files)
        self.tokens = load_data_shard(self.files[self.file_idx])
        self.pos = 0

    def take(self, n: int) -> Tensor:
        chunks: list[Tensor] = []
        remaining = n
        while remaining > 0:
            avail = self.tokens.numel() - self.pos
            if avail <= 0:
                self._advance_file()
                continue
            k = min(remaining, avail)
            chunks.append(self.tokens[self.pos : self.pos + k])
            self.pos += k
            remaining -= k
        return chunks[0] if len(chunks) == 1 else torch.cat(chunks)


class DistributedTokenLoader:
    """Each call takes one global chunk; rank r keeps its contiguous slice (+1 token for targets)."""

    def __init__(self, data_path: str | Path, rank: int, world_size: int, device: torch.device) -> None:
        self.rank, self.world_size, self.device = rank, world_size, device
        self.stream = TokenStream(shard_files(data_path, TRAIN_PATTERN))

    def local_span(self, global_tokens: int, grad_accum_steps: int) -> Tensor:
        """This rank's next ``global_tokens / (world x accumulation)`` tokens + 1, int64 on the host."""
        span = global_tokens // (self.world_size * grad_accum_steps) + 1
        chunk = self.stream.take(span * self.world_size)
        return chunk[self.rank * span : (self.rank + 1) * span].to(dtype=torch.int64)

    def to_device(self, t: Tensor) -> Tensor:
        return t.to(self.device, non_blocking=self.device.type == "cuda")

    def next_batch(self, global_tokens: int, seq_len: int, grad_accum_steps: int) -> tuple[Tensor, Tensor]:
        local = self.local_span(global_tokens, grad_accum_steps)
        return self.to_device(local[:-1].reshape(-1, seq_len)), self.to_device(local[1:].reshape(-1, seq_len))
