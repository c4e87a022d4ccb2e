"""The embedded default dataset: Python's own docs, a byte-fallback BPE, challenge-format shards."""

from __future__ import annotations

import json

import pytest

from golfplan.core.data import corpus
from golfplan.core.data.shards import load_data_shard, shard_files
from golfplan.core.data.tokenizer import build_byte_tables, load_tokenizer
from tests.conftest import SHARED_TOKENIZERS


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


def fineweb_style_shards(dataset, folder, sp, train_docs: int = 150) -> None:
    """The embedded dataset's validation documents and first training documents, as shards made with
    ``sp`` (each document: BOS + its tokens)."""
    import numpy as np

    from golfplan.core.data.shards import write_shard

    embedded = load_tokenizer(dataset / "tokenizer.model")
    folder.mkdir()
    for split, limit in (("train", train_docs), ("val", 0)):
        shard = load_data_shard(dataset / f"fineweb_{split}_000000.bin")
        texts = [t for t, _ in corpus.documents_of(embedded, shard, limit)]
        write_shard(folder / f"fineweb_{split}_000000.bin",
                    np.asarray([i for ids in sp.encode(texts) for i in (sp.bos_id(), *ids)]))


@pytest.mark.parametrize("source", ["embedded_sp1024", "fineweb_8192_bpe"])
def test_caseops_conversion_keeps_every_documents_text_and_counts_the_sources_bytes(dataset, tmp_path, source):
    """``golfplan data caseops``: shards made with a tokenizer (the embedded one, or the challenge's
    sp8192, whose shards the record converted), converted (to a CaseOps tokenizer of 512 trained here). Each document decodes back to the source's text, its sidecar counts that
    text's bytes, and the validation bytes are the source byte tables' count (so BPBs compare)."""
    from golfplan.cli import main
    from golfplan.plugins.case_ops import decode

    if source == "embedded_sp1024":
        src, tok = dataset, dataset / "tokenizer.model"
    else:
        tok = SHARED_TOKENIZERS / "fineweb_8192_bpe.model"
        if not tok.is_file():
            pytest.skip("../shared/data/tokenizers not present")
        src = tmp_path / "src"
        fineweb_style_shards(dataset, src, load_tokenizer(tok))
    out = tmp_path / "caseops"
    assert main(["data", "caseops", "--data", str(src), "--tokenizer", str(tok), "--out", str(out),
                 "--tokenizer-docs", "150", "--vocab-size", "512"]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"fineweb_train_000000.bin", "fineweb_val_000000.bin", "fineweb_val_bytes_000000.bin", "tokenizer.model",
            "meta.json"} <= names
    meta = json.loads((out / "meta.json").read_text())
    assert meta["val_documents_not_exact"] == meta["unknown_tokens"] == 0
    assert meta["val_text_bytes"] == meta["val_source_table_bytes"] and meta["vocab_size"] == 512
    sp_src, sp_out = load_tokenizer(tok), load_tokenizer(out / "tokenizer.model")
    before = load_data_shard(src / "fineweb_val_000000.bin").long()
    after = load_data_shard(out / "fineweb_val_000000.bin").long()
    sidecar = load_data_shard(out / "fineweb_val_bytes_000000.bin").long()
    assert sidecar.numel() == after.numel() and sp_out.piece_to_id("\ue001") != sp_out.unk_id()
    cut = lambda t: [*(t == 1).nonzero().flatten().tolist(), t.numel()]  # noqa: E731
    a, b = cut(before), cut(after)
    assert len(a) == len(b) > 10
    for (s0, e0), (s1, e1) in zip(zip(a[:-1], a[1:]), zip(b[:-1], b[1:])):
        text = sp_src.decode(before[s0 + 1 : e0].tolist())
        assert decode(sp_out.decode(after[s1 + 1 : e1].tolist())) == text
        assert int(sidecar[s1]) == 0 and int(sidecar[s1 + 1 : e1].sum()) == len(text.encode("utf-8"))
    assert int(sidecar.sum()) == int(build_byte_tables(sp_src, sp_src.vocab_size()).per_token(before)[1:].sum())


def test_data_build_caseops_and_a_missing_caseops_tokenizer(dataset, tmp_path, capsys):
    from golfplan.cli import main

    assert main(["data", "build", "--caseops"]) == 0
    assert json.loads(capsys.readouterr().out)["text_transform"] == "caseops"
    assert main(["data", "caseops", "--data", str(dataset), "--tokenizer", str(dataset / "tokenizer.model"),
                 "--out", str(tmp_path / "o"), "--caseops-tokenizer", str(tmp_path / "none.model")]) != 0
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: --caseops-tokenizer")
