"""The embedded default dataset: English text from this Python installation's own docs.

Built offline on first use (or by ``golfplan data build``): the ``pydoc_data`` topics
and the standard library's docstrings (about 2 MB), a SentencePiece BPE tokenizer
trained on them (byte fallback, the challenge's special-token layout), and train/val
shards in the challenge's format. Each document starts with the BOS token, as in the
challenge's FineWeb shards. Cached under ``$GOLFPLAN_CACHE`` or the user's cache dir.

A variant built with a :class:`TextTransform` (a lossless rewrite of the text before
tokenization, such as the case-operator transform of the ``case_ops`` plugin) trains its
tokenizer on the rewritten text (identity normalisation, whitespace kept, the transform's
symbols as pieces of their own) and writes the validation byte sidecar
``fineweb_val_bytes_000000.bin``: per token, the original UTF-8 bytes it stands for, so BPB
counts the original text's bytes. It lives in ``pydocs_sp{vocab}_{name}``. :func:`convert` does
the same to shards already made (the challenge's FineWeb shards): each document decoded with the
tokenizer that made it, rewritten and tokenized again.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import shutil
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from golfplan.core.data.shards import TRAIN_PATTERN, load_data_shard, shard_files, validation_files, write_shard
from golfplan.core.data.tokenizer import piece_surfaces

SKIP_DIRS = {"test", "tests", "site-packages", "dist-packages", "idlelib", "lib2to3", "__pycache__", "turtledemo",
             "ensurepip", "tkinter", "pydoc_data"}
VAL_EVERY = 10  # about one document in ten goes to the validation split


def cache_root() -> Path:
    if os.environ.get("GOLFPLAN_CACHE"):
        return Path(os.environ["GOLFPLAN_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "golfplan"


@dataclass(frozen=True)
class TextTransform:
    """A lossless rewrite of each document before tokenization. ``encode`` rewrites a document;
    ``original_bytes`` maps the texts of a rewritten document's pieces, in order, to the original
    UTF-8 bytes each stands for (they sum to the original document's bytes); ``symbols`` are the
    characters it introduces, each kept as a piece of its own by the tokenizer."""

    name: str
    encode: Callable[[str], str]
    original_bytes: Callable[[Iterable[str]], list[int]]
    symbols: tuple[str, ...] = ()


def dataset_dir(vocab_size: int = 1024, variant: str = "") -> Path:
    return cache_root() / "data" / (f"pydocs_sp{vocab_size}" + (f"_{variant}" if variant else ""))


def tokenizer_path(vocab_size: int = 1024, variant: str = "") -> Path:
    return dataset_dir(vocab_size, variant) / "tokenizer.model"


def is_built(vocab_size: int = 1024, variant: str = "") -> bool:
    return (dataset_dir(vocab_size, variant) / "meta.json").is_file()


def documents() -> list[tuple[str, str]]:
    """(name, text) pairs: each pydoc topic, and each stdlib module's docstrings joined."""
    import pydoc_data.topics as topics

    docs = [(f"topic:{k}", v.strip()) for k, v in sorted(topics.topics.items()) if v.strip()]
    root = Path(sysconfig.get_paths()["stdlib"])
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        for fname in sorted(filenames):
            if not fname.endswith(".py"):
                continue
            path = Path(dirpath) / fname
            try:
                tree = ast.parse(path.read_text(encoding="utf-8"))
            except (SyntaxError, UnicodeDecodeError, OSError, ValueError):
                continue
            parts = []
            for node in ast.walk(tree):
                if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                    doc = ast.get_docstring(node)
                    if doc and len(doc) > 40:
                        parts.append(doc.strip())
            if parts:
                docs.append((f"module:{path.relative_to(root)}", "\n\n".join(parts)))
    return docs


def is_val(name: str) -> bool:
    return int(hashlib.sha1(name.encode()).hexdigest(), 16) % VAL_EVERY == 0


def train_tokenizer(docs: list[tuple[str, str]], vocab_size: int, model_prefix: Path,
                    transform: TextTransform | None = None) -> None:
    import sentencepiece as spm

    def lines():
        for _, text in docs:
            for line in text.splitlines():
                line = line.strip()
                if line:
                    yield line[:4000]

    spm.SentencePieceTrainer.train(
        sentence_iterator=lines(), model_prefix=str(model_prefix), model_type="bpe", vocab_size=vocab_size,
        byte_fallback=True, character_coverage=0.9995, split_digits=True, add_dummy_prefix=False,
        pad_id=0, bos_id=1, eos_id=2, unk_id=3,
        num_threads=max(os.cpu_count() or 1, 1), minloglevel=2, hard_vocab_limit=True,
        # a transformed variant must give its pieces back unchanged for its byte sidecar to be exact
        **(dict(normalization_rule_name="identity", remove_extra_whitespaces=False,
                user_defined_symbols=list(transform.symbols)) if transform else
           dict(normalization_rule_name="nmt_nfkc")),
    )


def build(vocab_size: int = 1024, force: bool = False, log=print, transform: TextTransform | None = None) -> Path:
    """Build (or reuse) the embedded dataset for ``vocab_size`` (with ``transform``: its variant and
    byte sidecar); returns its folder."""
    import sentencepiece as spm

    variant = transform.name if transform else ""
    target = dataset_dir(vocab_size, variant)
    if is_built(vocab_size, variant) and not force:
        return target
    t0 = time.perf_counter()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".build-sp{vocab_size}-", dir=target.parent))
    try:
        log(f"building the embedded dataset (vocab {vocab_size}{', ' + variant if variant else ''}) in {target} ...")
        originals = documents()
        n_bytes = sum(len(t.encode()) for _, t in originals)
        docs = [(name, transform.encode(text)) for name, text in originals] if transform else originals
        train_tokenizer(docs, vocab_size, tmp / "tokenizer", transform)
        sp = spm.SentencePieceProcessor(model_file=str(tmp / "tokenizer.model"))
        splits: dict[str, list[int]] = {"train": [], "val": []}
        sidecar: list[int] = []
        for (name, text), (_, original) in zip(docs, originals):
            ids = sp.encode(text)
            splits["val" if is_val(name) else "train"].extend([sp.bos_id(), *ids])
            if transform and is_val(name):
                sidecar.extend([0, *sidecar_counts(sp, ids, text, original, transform, name)])
        write_shard(tmp / "fineweb_train_000000.bin", np.asarray(splits["train"], dtype=np.int64))
        write_shard(tmp / "fineweb_val_000000.bin", np.asarray(splits["val"], dtype=np.int64))
        if transform:
            write_shard(tmp / "fineweb_val_bytes_000000.bin", np.asarray(sidecar, dtype=np.int64))
        (tmp / "tokenizer.vocab").unlink(missing_ok=True)
        meta = {
            "source": "pydoc_data topics + standard library docstrings",
            "python": sys.version.split()[0], "documents": len(docs), "text_bytes": n_bytes,
            "vocab_size": vocab_size, "train_tokens": len(splits["train"]), "val_tokens": len(splits["val"]),
            "text_transform": variant or "identity",
            "val_text_bytes": sum(len(t.encode()) for name, t in originals if is_val(name)),
            "build_seconds": round(time.perf_counter() - t0, 2),
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
        if force and target.exists():
            shutil.rmtree(target)
        try:
            os.rename(tmp, target)
        except OSError:
            if not is_built(vocab_size, variant):  # another process won the race with a complete build: use it
                raise
        log(f"built {meta['train_tokens']:,} train + {meta['val_tokens']:,} val tokens from "
            f"{n_bytes / 1e6:.2f} MB of text in {meta['build_seconds']:.1f}s")
        return target
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def sidecar_counts(sp, ids: list[int], text: str, original: str, transform: TextTransform, name: str) -> list[int]:
    """The original bytes of each token of a transformed document; checks the pieces give back the
    transformed text and the counts sum to the original's bytes (else the BPB would not be exact)."""
    surfaces = piece_surfaces(sp, ids)
    if "".join(surfaces) != text:
        raise RuntimeError(f"{name}: the {transform.name} tokenizer's pieces do not give the text back")
    counts = transform.original_bytes(surfaces)
    if sum(counts) != len(original.encode("utf-8")):
        raise RuntimeError(f"{name}: {transform.name} byte counts sum to {sum(counts)}, "
                           f"the original has {len(original.encode('utf-8'))} bytes")
    return counts


def meta(vocab_size: int = 1024, variant: str = "") -> dict:
    return json.loads((dataset_dir(vocab_size, variant) / "meta.json").read_text())


def convert(src: Path, tokenizer: Path, transform: TextTransform, out: Path, target: Path | None = None,
            vocab_size: int = 0, tokenizer_docs: int = 20_000, train_shards: int = 0, log=print) -> dict:
    """Rewrite the shards in ``src`` (made with ``tokenizer``) with ``transform`` into ``out``: every
    document (BOS to BOS) decoded to its text, rewritten, tokenized again with ``target`` (or a
    tokenizer trained here on the rewritten text of the first ``tokenizer_docs`` training documents,
    ``vocab_size`` pieces, default the source's), BOS kept; the validation shards get the byte sidecar
    of the decoded text (the bytes the source's byte tables count, for a source tokenizer with byte
    fallback, as the challenge's sp8192: an unknown token decodes to " ⁇ "). Shards keep their names (the first
    ``train_shards`` training shards; 0: all). Returns what ``out/meta.json`` records."""
    import sentencepiece as spm

    from golfplan.core.data.tokenizer import build_byte_tables, load_tokenizer

    t0 = time.perf_counter()
    source = load_tokenizer(tokenizer)
    train_files = shard_files(src, TRAIN_PATTERN)[: train_shards or None]
    out.mkdir(parents=True, exist_ok=True)
    if target is None:
        docs = [("", transform.encode(t)) for t, _ in documents_of(source, load_data_shard(train_files[0]), tokenizer_docs)]
        train_tokenizer(docs, vocab_size or int(source.vocab_size()), out / "tokenizer", transform)
        (out / "tokenizer.vocab").unlink(missing_ok=True)
    elif Path(target).resolve() != (out / "tokenizer.model").resolve():
        shutil.copyfile(target, out / "tokenizer.model")
    sp = spm.SentencePieceProcessor(model_file=str(out / "tokenizer.model"))
    meta = {"source": str(src), "source_tokenizer": str(tokenizer), "text_transform": transform.name,
            "vocab_size": int(sp.vocab_size()), "documents": 0, "tokens_in": 0, "tokens_out": 0,
            "val_text_bytes": 0, "val_source_table_bytes": 0, "val_documents_not_exact": 0, "unknown_tokens": 0}
    tables = build_byte_tables(source, int(source.vocab_size()))
    for f in [*validation_files(src), *train_files]:
        tokens = load_data_shard(f)
        val = f.name.startswith("fineweb_val_")
        meta["unknown_tokens"] += int((tokens == source.unk_id()).sum())  # no byte fallback: decoded as " ⁇ "
        ids: list[np.ndarray] = []
        sidecar: list[np.ndarray] = []
        for text, bos in documents_of(source, tokens):
            enc = transform.encode(text)
            new = sp.encode(enc)
            head = [sp.bos_id()] if bos else []
            ids.append(np.asarray(head + new, dtype=np.int64))
            if val:
                pieces = piece_surfaces(sp, new)
                if pieces and pieces[0][:1] == " " and enc[:1] != " ":  # the space of a dummy prefix
                    pieces[0] = pieces[0][1:]
                counts = transform.original_bytes(pieces)
                meta["val_documents_not_exact"] += sum(counts) != len(text.encode("utf-8"))
                sidecar.append(np.asarray([0] * len(head) + counts, dtype=np.int64))
            meta["documents"] += 1
        joined = np.concatenate(ids) if ids else np.zeros(0, dtype=np.int64)
        write_shard(out / f.name, joined)
        meta["tokens_in"] += tokens.numel()
        meta["tokens_out"] += int(joined.size)
        if val:
            counts = np.concatenate(sidecar) if sidecar else np.zeros(0, dtype=np.int64)
            write_shard(out / f.name.replace("fineweb_val_", "fineweb_val_bytes_"), counts)
            meta["val_text_bytes"] += int(counts.sum())
            meta["val_source_table_bytes"] += int(tables.per_token(tokens)[1:].sum())
        log(f"{f.name}: {tokens.numel():,} -> {joined.size:,} tokens")
    meta["convert_seconds"] = round(time.perf_counter() - t0, 2)
    if meta["unknown_tokens"]:
        log(f"warning: {meta['unknown_tokens']:,} unknown tokens in the source (its tokenizer has no byte fallback): "
            f"each decodes to ' ⁇ ' and is converted as that text")
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    return meta


def documents_of(sp, tokens, limit: int = 0, batch: int = 4096) -> Iterator[tuple[str, bool]]:
    """``(text, starts with BOS)`` of each document of a shard (the first ``limit``; 0: all), decoded
    ``batch`` at a time. A document runs from a BOS to the next (or from the shard's first token)."""
    arr = tokens.numpy()
    bounds = sorted({0, *np.flatnonzero(arr == sp.bos_id()).tolist()}) + [arr.size]
    n = min(limit, len(bounds) - 1) if limit else len(bounds) - 1
    for i in range(0, n, batch):
        spans = list(zip(bounds[i : min(i + batch, n)], bounds[i + 1 : min(i + batch, n) + 1]))
        bos = [bool(arr[a] == sp.bos_id()) for a, _ in spans]
        yield from zip(sp.decode([arr[a + o : b].tolist() for (a, b), o in zip(spans, bos)]), bos)
