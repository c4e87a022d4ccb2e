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
counts the original text's bytes. It lives in ``pydocs_sp{vocab}_{name}``.
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
from typing import Callable, Iterable

import numpy as np

from golfplan.core.data import write_shard

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
    from golfplan.core.tokenizer import piece_surfaces

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
