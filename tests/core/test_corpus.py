"""The embedded default dataset: Python's own docs, a byte-fallback BPE, challenge-format shards."""

from __future__ import annotations

import json

from golfplan.core import corpus
from golfplan.core.data import load_data_shard, shard_files
from golfplan.core.tokenizer import build_byte_tables, load_tokenizer


def test_default_dataset_is_built_in_the_challenge_format(dataset):
    meta = json.loads((dataset / "meta.json").read_text())
    assert meta["vocab_size"] == 1024 and 1.5e6 < meta["text_bytes"] < 3e6
    sp = load_tokenizer(dataset / "tokenizer.model")
    assert sp.vocab_size() == 1024 and (sp.pad_id(), sp.bos_id(), sp.eos_id(), sp.unk_id()) == (0, 1, 2, 3)
    train = load_data_shard(shard_files(dataset, "fineweb_train_*.bin")[0])
    val = load_data_shard(shard_files(dataset, "fineweb_val_*.bin")[0])
    assert train.numel() == meta["train_tokens"] and val.numel() == meta["val_tokens"]
    assert int(train[0]) == sp.bos_id() and int(val.int().max()) < 1024
    # byte fallback: any (NFKC-normalised) text round-trips, and the byte tables count its bytes exactly
    text = "naïve café — ∑ Unicode ✓ 日本語 and plain ASCII"
    ids = [sp.bos_id(), *sp.encode(text)]
    assert sp.unk_id() not in ids and sp.decode(ids[1:]) == text
    import torch

    t = torch.tensor(ids)
    assert int(build_byte_tables(sp, 1024).count(t[:-1], t[1:]).sum()) == len(text.encode("utf-8"))


def test_other_vocabulary_sizes_build(tmp_path, monkeypatch):
    monkeypatch.setenv("GOLFPLAN_CACHE", str(tmp_path))
    path = corpus.build(512, log=lambda m: None)
    assert path == tmp_path / "data" / "pydocs_sp512" and corpus.meta(512)["vocab_size"] == 512
    assert load_tokenizer(corpus.tokenizer_path(512)).vocab_size() == 512
    assert corpus.build(512, log=lambda m: None) == path  # cached: not rebuilt
