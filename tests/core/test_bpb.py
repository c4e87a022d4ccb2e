"""Bits per byte: the byte tables and eval_val against independent computations."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from golfplan.core.evaluate.score import ValData, bits_per_byte, eval_val
from golfplan.core.data.tokenizer import build_byte_tables, load_tokenizer


class HandMadeSP:
    """A five-piece 'SentencePiece': <s> (control), <unk>, a byte piece, '▁ab', 'cd'."""

    pieces = ["<s>", "<unk>", "<0x41>", "\u2581ab", "cd"]

    def vocab_size(self):
        return len(self.pieces)

    def is_control(self, i):
        return i == 0

    def is_unknown(self, i):
        return i == 1

    def is_unused(self, i):
        return False

    def is_byte(self, i):
        return i == 2

    def id_to_piece(self, i):
        return self.pieces[i]


class FixedLoss(nn.Module):
    """A 'model' whose loss is a fixed per-sequence value: lets BPB be computed by hand."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def forward(self, x, y):
        return torch.tensor(self.value, dtype=torch.float32)


def test_byte_tables_on_a_hand_made_vocabulary():
    t = build_byte_tables(HandMadeSP(), 6)
    assert t.base_bytes.tolist() == [0, 0, 1, 2, 2, 0]
    assert t.has_leading_space.tolist() == [False, False, False, True, False, False]
    assert t.is_boundary.tolist() == [True, True, False, False, False, True]
    prev = torch.tensor([0, 3, 4, 2])
    tgt = torch.tensor([3, 4, 3, 3])
    # '▁ab' after <s>: 2 (no space at a boundary); 'cd': 2; '▁ab' after 'cd': 3; '▁ab' after a byte: 3
    assert t.count(prev, tgt).tolist() == [2, 2, 3, 3]


def test_bpb_equals_an_independent_computation():
    tables = build_byte_tables(HandMadeSP(), 5)
    tokens = torch.tensor([0, 3, 4, 3, 2, 4, 0, 3, 4], dtype=torch.int64)  # 8 targets, seq_len 4
    val = ValData(tokens, tables, seq_len=4, batch_tokens=4, grad_accum_steps=1)
    loss, bpb = eval_val(FixedLoss(1.5), val)
    # targets and their bytes by hand: 3|0->2, 4->2, 3|4->3, 2->1, 4->2, 0->0, 3|0->2, 4->2 = 14 bytes
    expected = 1.5 * 8 / math.log(2) / 14
    assert loss == pytest.approx(1.5)
    assert bpb == pytest.approx(expected)
    assert bits_per_byte(12.0, 8, 14) == pytest.approx(expected)


def test_real_sp1024_tables_count_decoded_bytes_exactly(sp1024_model):
    sp = load_tokenizer(sp1024_model)
    tables = build_byte_tables(sp, 1024)
    texts = ["Hello world, this is FineWeb.", "  two  spaces and digits 12345, (brackets) & symbols; 'quotes'",
             "line one\nline two\ttab", "ends with space ", "a", "It costs $5 (about 4.50 EUR) - 100% sure!"]
    for text in texts:
        ids = [sp.bos_id(), *sp.encode(text)]
        assert sp.unk_id() not in ids  # sp1024 has no byte fallback: keep to text it can represent
        t = torch.tensor(ids)
        counted = int(tables.count(t[:-1], t[1:]).sum())
        assert counted == len(sp.decode(ids[1:]).encode("utf-8")), text


# ---- per-token bytes, the byte sidecar, documents ------------------------------------------


def test_per_token_byte_counts_are_the_tables_counts_and_eval_val_is_unchanged():
    tables = build_byte_tables(HandMadeSP(), 5)
    tokens = torch.tensor([0, 3, 4, 3, 2, 4, 0, 3, 4], dtype=torch.int64)
    assert tables.per_token(tokens).tolist() == [0, 2, 2, 3, 1, 2, 0, 2, 2]  # position 0: no target
    val = ValData(tokens, tables, seq_len=4, batch_tokens=4, grad_accum_steps=1)
    assert val.bytes_source == "tables" and int(val.byte_counts.sum()) == 14


def test_a_sidecar_replaces_the_tables_bytes(tmp_path):
    from golfplan.core.data.shards import load_validation_bytes, load_validation_tokens, write_shard

    tokens = [0, 3, 4, 3, 2, 4, 0, 3, 4]
    sidecar = [0, 5, 1, 0, 2, 2, 0, 7, 3]  # original bytes per token, whatever the pieces say
    write_shard(tmp_path / "fineweb_val_000000.bin", tokens)
    write_shard(tmp_path / "fineweb_val_bytes_000000.bin", sidecar)
    assert load_validation_bytes(tmp_path / "nothing", 9) is None
    got = load_validation_tokens(tmp_path, 4)  # the sidecar's shard is not read as tokens
    assert got.tolist() == tokens
    counts = load_validation_bytes(tmp_path, got.numel())
    val = ValData(got, build_byte_tables(HandMadeSP(), 5), seq_len=4, batch_tokens=4, grad_accum_steps=1,
                  byte_counts=counts)
    assert val.bytes_source == "sidecar"
    loss, bpb = eval_val(FixedLoss(1.5), val)
    assert bpb == pytest.approx(1.5 * 8 / math.log(2) / sum(sidecar[1:]))
    with pytest.raises(Exception, match="entries for"):
        load_validation_bytes(tmp_path, 20)


def test_documents_start_at_bos_and_cover_every_position_once():
    tables = build_byte_tables(HandMadeSP(), 5)
    tokens = torch.tensor([3, 4, 0, 3, 4, 3, 0, 2, 0, 4, 3], dtype=torch.int64)  # BOS is 0 here
    val = ValData(tokens, tables, seq_len=5, batch_tokens=5, grad_accum_steps=1, bos_id=0)
    docs = val.documents()
    assert docs == [(0, 3), (2, 5), (6, 3), (8, 3)]  # a document's last target is the next BOS
    covered = sorted(p for s, n in docs for p in range(s + 1, s + n))
    assert covered == list(range(1, val.num_targets + 1))


def test_the_eval_clock_leaves_the_warmup_out():
    import time

    from golfplan.core.evaluate.score import EvalClock

    clock = EvalClock(limit_s=0.05)
    with clock.measure(final=True):
        with clock.warmup():
            time.sleep(0.1)
        time.sleep(0.02)
    assert clock.warmup_s >= 0.1 and 0.02 <= clock.eval_s < 0.1 and not clock.over_limit
    with clock.measure(final=False):  # periodic evaluations are not on the clock
        time.sleep(0.06)
    assert clock.eval_s < 0.1
    assert "compile_warmup:" in clock.report() and "eval_limit:0.05s" in clock.report()
