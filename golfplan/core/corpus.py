"""The embedded default dataset: English text from this Python installation's own docs.

Built offline on first use (or by ``golfplan data build``): the ``pydoc_data`` topics
and the standard library's docstrings (about 2 MB), a SentencePiece BPE tokenizer
trained on them (byte fallback, the challenge's special-token layout), and train/val
shards in the challenge's format. Each document starts with the BOS token, as in the
challenge's FineWeb shards. Cached under ``$GOLFPLAN_CACHE`` or the user's cache dir.
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
from pathlib import Path

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


def dataset_dir(vocab_size: int = 1024) -> Path:
    return cache_root() / "data" / f"pydocs_sp{vocab_size}"


def tokenizer_path(vocab_size: int = 1024) -> Path:
    return dataset_dir(vocab_size) / "tokenizer.model"


def is_built(vocab_size: int = 1024) -> bool:
    return (dataset_dir(vocab_size) / "meta.json").is_file()


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


def train_tokenizer(docs: list[tuple[str, str]], vocab_size: int, model_prefix: Path) -> None:
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
        normalization_rule_name="nmt_nfkc", pad_id=0, bos_id=1, eos_id=2, unk_id=3,
        num_threads=max(os.cpu_count() or 1, 1), minloglevel=2, hard_vocab_limit=True,
    )


def build(vocab_size: int = 1024, force: bool = False, log=print) -> Path:
    """Build (or reuse) the embedded dataset for ``vocab_size``; returns its folder."""
    import sentencepiece as spm

    target = dataset_dir(vocab_size)
    if is_built(vocab_size) and not force:
        return target
    t0 = time.perf_counter()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".build-sp{vocab_size}-", dir=target.parent))
    try:
        log(f"building the embedded dataset (vocab {vocab_size}) in {target} ...")
        docs = documents()
        n_bytes = sum(len(t.encode()) for _, t in docs)
        train_tokenizer(docs, vocab_size, tmp / "tokenizer")
        sp = spm.SentencePieceProcessor(model_file=str(tmp / "tokenizer.model"))
        splits: dict[str, list[int]] = {"train": [], "val": []}
        for name, text in docs:
            splits["val" if is_val(name) else "train"].extend([sp.bos_id(), *sp.encode(text)])
        write_shard(tmp / "fineweb_train_000000.bin", np.asarray(splits["train"], dtype=np.int64))
        write_shard(tmp / "fineweb_val_000000.bin", np.asarray(splits["val"], dtype=np.int64))
        (tmp / "tokenizer.vocab").unlink(missing_ok=True)
        meta = {
            "source": "pydoc_data topics + standard library docstrings",
            "python": sys.version.split()[0], "documents": len(docs), "text_bytes": n_bytes,
            "vocab_size": vocab_size, "train_tokens": len(splits["train"]), "val_tokens": len(splits["val"]),
            "build_seconds": round(time.perf_counter() - t0, 2),
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
        if force and target.exists():
            shutil.rmtree(target)
        try:
            os.rename(tmp, target)
        except OSError:
            if not is_built(vocab_size):  # another process won the race with a complete build: use it
                raise
        log(f"built {meta['train_tokens']:,} train + {meta['val_tokens']:,} val tokens from "
            f"{n_bytes / 1e6:.2f} MB of text in {meta['build_seconds']:.1f}s")
        return target
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def meta(vocab_size: int = 1024) -> dict:
    return json.loads((dataset_dir(vocab_size) / "meta.json").read_text())
