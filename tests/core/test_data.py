"""Shards in the challenge's format: round trip and clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from golfplan.core.data.shards import (HEADER_BYTES, DistributedTokenLoader, load_data_shard, load_validation_tokens,
                                write_shard)
from golfplan.core.errors import DataError


def test_round_trip(tmp_path):
    tokens = np.random.default_rng(0).integers(0, 1024, size=5000)
    write_shard(tmp_path / "fineweb_train_000000.bin", tokens)
    back = load_data_shard(tmp_path / "fineweb_train_000000.bin")
    assert back.numpy().tolist() == tokens.tolist()
    assert (tmp_path / "fineweb_train_000000.bin").stat().st_size == HEADER_BYTES + 2 * 5000


def _corrupt(path, offset, value):
    raw = bytearray(path.read_bytes())
    raw[offset:offset + 4] = np.int32(value).tobytes()
    path.write_bytes(bytes(raw))


def test_bad_magic_version_and_size(tmp_path):
    f = tmp_path / "s.bin"
    write_shard(f, np.arange(100))
    _corrupt(f, 0, 1234)
    with pytest.raises(DataError, match="bad magic 1234"):
        load_data_shard(f)
    write_shard(f, np.arange(100))
    _corrupt(f, 4, 7)
    with pytest.raises(DataError, match="unsupported shard version 7"):
        load_data_shard(f)
    write_shard(f, np.arange(100))
    f.write_bytes(f.read_bytes()[:-10])
    with pytest.raises(DataError, match="does not match its header"):
        load_data_shard(f)
    f.write_bytes(b"abc")
    with pytest.raises(DataError, match="truncated header"):
        load_data_shard(f)


def test_missing_shards_and_short_validation(tmp_path):
    with pytest.raises(DataError, match="no shards matching fineweb_val_"):
        load_validation_tokens(tmp_path, 16)
    write_shard(tmp_path / "fineweb_val_000000.bin", np.arange(10))
    with pytest.raises(DataError, match="shorter than one sequence"):
        load_validation_tokens(tmp_path, 16)


def test_loader_splits_ranks_like_one_process(tmp_path):
    import torch

    write_shard(tmp_path / "fineweb_train_000000.bin", np.arange(1000) % 1024)
    write_shard(tmp_path / "fineweb_train_000001.bin", (np.arange(1000) + 7) % 1024)
    cpu = torch.device("cpu")
    one = DistributedTokenLoader(tmp_path, 0, 1, cpu)
    two = [DistributedTokenLoader(tmp_path, r, 2, cpu) for r in range(2)]
    for _ in range(5):  # wraps across shards
        a = [one.next_batch(64, 8, 8)[0] for _ in range(2)]
        b = [two[r].next_batch(64, 8, 4)[0] for r in range(2)]
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
