"""CaseOps: a lossless case transform before tokenization, with BPB counted on the original bytes.

Capitals are taken out of the text and written as operator characters the tokenizer keeps as
pieces of their own, so "the", "The" and "THE" share their pieces. Over each maximal run of ASCII
letters (a word): a lowercase word stays; an all-caps word of two letters or more becomes ALLCAPS
+ the word in lowercase; a capitalised word becomes TITLE + lowercase; any other mixed-case word
gets TITLE if its first letter is a capital, then its letters in lowercase with CAPNEXT before
each later capital. A literal operator character in the text is written ESC + itself. The
operators are U+E001 (TITLE), U+E002 (ALLCAPS), U+E003 (CAPNEXT) and U+E004 (ESC), the record's
``lossless_caps_caseops_v1`` (``encode_lossless_caps_v2`` in its lossless_caps.py); ``decode``
inverts it exactly.

Bytes: the challenge scores bits per byte of the original text, so the validation split carries
a byte sidecar ``fineweb_val_bytes_*.bin`` (prepare_caseops_data.py): per token, the UTF-8 bytes
of the original text it stands for: operators 0, escaped literals their own bytes, letters one
byte each, a BOS 0. golfplan's validation loading reads a sidecar wherever a data folder has one.

In golfplan: with no ``--data`` the plugin builds the embedded dataset's case-transformed variant
(``golfplan.core.data.corpus`` with this transform: a tokenizer of the run's vocabulary trained on the
transformed text, identity normalisation, the four operators as user-defined symbols, byte
fallback; shards and sidecar; ``golfplan data build --caseops``) and points the run at it. With
``--data`` it expects CaseOps shards and checks that their sidecar is there: the record's
(fineweb10B_sp8192_caseops), or the challenge's sp8192 shards converted by ``golfplan data caseops``
(``golfplan.core.data.corpus.convert``: each document decoded, rewritten, tokenized again, with the
record's CaseOps tokenizer or one trained on the converted text; the sidecar counts the bytes the
sp8192 byte tables count, so the BPBs compare). The record
(2026-04-19, from PR #1729; kept by the 04-27 record): "reclaims ~0.005-0.006 nats per token on
FineWeb" with SP8192. Readings chosen: the tokenizer is trained here on the transformed embedded
corpus (the record ships a tokenizer trained on FineWeb); the per-piece byte counts are computed
from the pieces' own texts (the record used SentencePiece's protobuf surfaces). It changes the
data only: compile-safe.
"""

from __future__ import annotations

import glob
import re
import sys
from pathlib import Path
from typing import Iterable

from golfplan.core.data import corpus
from golfplan.core.data.shards import VAL_BYTES_PATTERN
from golfplan.core.errors import PluginError
from golfplan.core.technique import Technique, hookimpl

TITLE, ALLCAPS, CAPNEXT, ESC = "\ue001", "\ue002", "\ue003", "\ue004"
OPERATORS = (TITLE, ALLCAPS, CAPNEXT, ESC)
_WORD_OR_OPERATOR = re.compile("[A-Za-z]+|[\ue001-\ue004]")
_CODE = re.compile("\ue004(.)|\ue002([a-z]+)|[\ue001\ue003]([a-z])", re.DOTALL)


def _encode_match(m: re.Match) -> str:
    word = m.group(0)
    if word in OPERATORS:
        return ESC + word
    if word.islower():
        return word
    if len(word) >= 2 and word.isupper():
        return ALLCAPS + word.lower()
    if word[0].isupper() and word[1:].islower():
        return TITLE + word.lower()
    head = (TITLE if word[0].isupper() else "") + word[0].lower()
    return head + "".join((CAPNEXT + c.lower()) if c.isupper() else c for c in word[1:])


def encode(text: str) -> str:
    """The case-operator form of ``text`` (lossless: ``decode(encode(t)) == t``)."""
    return _WORD_OR_OPERATOR.sub(_encode_match, text)


def decode(text: str) -> str:
    """The original text of a case-operator form."""
    return _CODE.sub(lambda m: m.group(1) or (m.group(2) or m.group(3)).upper(), text)


def original_bytes(pieces: Iterable[str]) -> list[int]:
    """The original UTF-8 bytes each piece of a transformed text stands for (an escape carries over
    from one piece to the next): operators 0, everything else its own bytes."""
    out: list[int] = []
    escaped = False
    for piece in pieces:
        n = 0
        for ch in piece:
            if escaped or ch not in OPERATORS:
                n += len(ch.encode("utf-8"))
                escaped = False
            elif ch == ESC:
                escaped = True
        out.append(n)
    return out


TRANSFORM = corpus.TextTransform("caseops", encode, original_bytes, OPERATORS)


class CaseOps(Technique):
    name = "case_ops"
    summary = "lossless case-operator tokenizer (TITLE/ALLCAPS/CAPNEXT/ESC); BPB on the original bytes (sidecar)"
    slot = "tokenizer"
    compile_safe = True  # data only
    source = "2026-04-19_SP8192_CaseOps_GatedAttn_QuantGate_Loop45_PhasedTTT"
    source_result = ("CaseOps SP8192 with a per-token byte sidecar: 'reclaims ~0.005-0.006 nats per token on FineWeb'; "
                     "part of the 1.06549 record (3 seeds) and of the 04-27 record (1.0611)")

    @hookimpl
    def configure(self, config):
        if config.data_path:  # the challenge's CaseOps shards: BPB needs their sidecar
            if not glob.glob(str(Path(config.data_path) / VAL_BYTES_PATTERN)):
                raise PluginError(f"case_ops: {config.data_path} has no byte sidecar ({VAL_BYTES_PATTERN}); "
                                  f"BPB would count the operator pieces' bytes, not the original text's")
            return None
        path = corpus.build(config.vocab_size, transform=TRANSFORM, log=lambda m: print(m, file=sys.stderr))
        return {"data_path": str(path), "tokenizer_path": str(corpus.tokenizer_path(config.vocab_size, TRANSFORM.name))}
