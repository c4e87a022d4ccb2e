"""The last link of the export chain: serialise the stored tensors and compress them.

A ``Packing`` says how (a ``compressor`` plugin returns one): the codec (zlib level 9, lzma
preset 9, zstd level 22, brotli quality 11 with a 16 MiB window, or ZPAQ level 5: the strongest
settings the records used), a byte shuffle (stride 2: every even byte, then every odd one), a row sort (an
L1 nearest-neighbour order of the rows of integer code matrices, so similar rows sit next to each
other: the record's "simsort") and the layout: ``single`` (one ``torch.save`` of everything,
compressed) or ``grouped`` (the integer codes of each role, e.g. ``blocks.*.mlp.fc.weight`` across
layers, transposed and concatenated into a stream of their own, each stream compressed apart;
the rest in one more stream: the record's "pergroup" layout; its ``lrzip -z -L 9`` binary is ZPAQ
level 5 here, in memory, through the ``zpaq`` package).

ZPAQ runs single-threaded on each stream (``threads=1``): with more threads libzpaq splits its
input into one block per thread, so the bytes would depend on the machine's core count, and a
packed ``train_gpt.py`` must rebuild the same artifact anywhere. The streams of the grouped layout
are compressed (and decompressed) several at once instead, one per core: the same bytes, faster.

The default (no plugin) is the challenge's: ``torch.save`` + zlib level 9, no header. A plugin's
packing is written in a container that records it, so ``unpack`` reads any artifact alone:

    b"GPCK" | version (1 byte) | header length (4 bytes, little-endian) | header (JSON) | streams

The header holds the codec, the shuffle stride, the layout and each stream's length.
"""

from __future__ import annotations

import io
import json
import os
import re
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

MAGIC = b"GPCK"
VERSION = 1
CODECS = ("zlib", "lzma", "zstd", "brotli", "zpaq")
# ZPAQ 5 is the record's lrzip -z -L 9: on the grouped streams of a trained cpu model, 391,042 B here
# against lrzip's 391,157 (benchmarks/compressors.py)
LEVELS = {"zlib": 9, "lzma": 9, "zstd": 22, "brotli": 11, "zpaq": 5}
HOT_ROLES = ("tok_emb.weight", "attn.c_q.weight", "mlp.fc.weight")  # the record's row-sorted groups


@dataclass(frozen=True)
class Packing:
    """How the chain's streams are serialised and compressed (see the module docstring)."""

    codec: str = "zlib"
    level: int = 9
    byte_shuffle: bool = False
    layout: str = "single"  # single | grouped
    row_sort: str = "none"  # none | hot (embedding, c_q, mlp.fc: the record's) | all (every code matrix)
    made_by: str = ""  # the plugin that chose it
    container: bool = True  # False only for the challenge's default: bare zlib, no header

    def describe(self) -> str:
        extras = [x for x in (self.layout if self.layout != "single" else "",
                              "byte shuffle" if self.byte_shuffle else "",
                              f"row sort {self.row_sort}" if self.row_sort != "none" else "") if x]
        return f"{self.codec}-{self.level}" + (f" ({', '.join(extras)})" if extras else "")


DEFAULT_PACKING = Packing(container=False)


def packing_for(codec: str, **kw: Any) -> Packing:
    """A container packing with ``codec`` at the records' level."""
    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec!r}; one of {', '.join(CODECS)}")
    return Packing(codec=codec, level=LEVELS[codec], **kw)


# ---- codecs and byte transforms -------------------------------------------------------------


def compress(data: bytes, codec: str, level: int) -> bytes:
    if codec == "zlib":
        return zlib.compress(data, level=level)
    if codec == "lzma":
        import lzma

        return lzma.compress(data, preset=level)
    if codec == "zstd":
        import zstandard

        return zstandard.ZstdCompressor(level=level).compress(data)
    if codec == "brotli":
        import brotli

        return brotli.compress(data, quality=level, lgwin=24)
    if codec == "zpaq":
        import zpaq

        return zpaq.compress(data, level=level, threads=1, hints=False)  # one thread: the same bytes anywhere
    raise ValueError(f"unknown codec {codec!r}")


def decompress(data: bytes, codec: str) -> bytes:
    if codec == "zlib":
        return zlib.decompress(data)
    if codec == "lzma":
        import lzma

        return lzma.decompress(data)
    if codec == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().decompress(data)
    if codec == "brotli":
        import brotli

        return brotli.decompress(data)
    if codec == "zpaq":
        import zpaq

        return zpaq.decompress(data)
    raise ValueError(f"unknown codec {codec!r}")


def byte_shuffle(data: bytes, stride: int = 2) -> bytes:
    """Bytes 0, s, 2s, ... then 1, 1+s, ...: the high and low bytes of 16-bit values apart."""
    a = np.frombuffer(data, dtype=np.uint8)
    return b"".join(a[i::stride].tobytes() for i in range(stride))


def byte_unshuffle(data: bytes, stride: int = 2) -> bytes:
    a = np.frombuffer(data, dtype=np.uint8)
    out = np.empty_like(a)
    start = 0
    for i in range(stride):
        n = len(range(i, len(a), stride))
        out[i::stride] = a[start:start + n]
        start += n
    return out.tobytes()


def similarity_order(codes: Tensor) -> Tensor:
    """A greedy L1 nearest-neighbour path through the rows, from row 0: each next row is the unused
    one closest to the current, the first such row on a tie (the record's ``_similarity_sort_l1``).
    On a CUDA machine the distances are computed there: integer sums, so the order is the CPU's
    (the record's 11-layer codes take minutes on one CPU core: 8,192 embedding rows, 22,528 of
    mlp.fc)."""
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    x = codes.to(device=device, dtype=torch.int32)
    n = x.shape[0]
    used = torch.zeros(n, dtype=torch.bool, device=device)
    order = torch.empty(n, dtype=torch.long)
    cur = 0
    for i in range(n):
        order[i] = cur
        used[cur] = True
        if i + 1 == n:
            break
        dist = (x - x[cur]).abs().sum(dim=1).to(torch.float64)
        dist[used] = float("inf")
        cur = int(torch.argmin(dist))
    return order


def role(name: str) -> str:
    """A tensor's role across layers: ``blocks.3.mlp.fc.weight`` -> ``blocks.*.mlp.fc.weight``."""
    return re.sub(r"(^|\.)\d+(?=\.)", r"\1*", name)


# ---- the container ------------------------------------------------------------------------


def _each(fn: Any, items: list[bytes]) -> list[bytes]:
    """``fn`` over the streams, several at once on the cores this process may use: the codecs
    release the GIL, and each stream is compressed alone, so the bytes do not depend on how many."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    if len(items) < 2 or cores < 2:
        return [fn(x) for x in items]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(min(cores, len(items))) as pool:
        return list(pool.map(fn, items))


def _stream(data: bytes, p: Packing) -> bytes:
    return compress(byte_shuffle(data) if p.byte_shuffle else data, p.codec, p.level)


def _unstream(data: bytes, header: dict) -> bytes:
    raw = decompress(data, header["codec"])
    return byte_unshuffle(raw, header["shuffle"]) if header["shuffle"] else raw


def _sort_rows(records: dict[str, dict], mode: str) -> None:
    for name, rec in records.items():
        q = rec["data"]
        if rec["kind"] != "int" or q.ndim != 2 or rec.get("perm") is not None or q.shape[0] < 3:
            continue
        if mode == "hot" and not any(name.endswith(h) for h in HOT_ROLES):
            continue
        order = similarity_order(q)
        rec["data"] = q[order].contiguous()
        rec["perm"] = order.to(torch.int16 if q.shape[0] <= 32767 else torch.int32)


def serialise(obj: dict[str, Any], p: Packing) -> list[bytes]:
    """The container's streams before compression: the ``torch.save`` of everything but the grouped
    codes first, then one stream per role group (``grouped`` layout). ``obj`` is left as it was."""
    buf = io.BytesIO()
    streams: list[bytes] = []
    if "tensors" in obj:
        obj = {**obj, "tensors": {n: dict(r) for n, r in obj["tensors"].items()}}
        if p.row_sort != "none":
            _sort_rows(obj["tensors"], p.row_sort)
        if p.layout == "grouped":
            groups: dict[str, list[str]] = {}
            for name, rec in obj["tensors"].items():
                if rec["kind"] == "int" and rec["data"].ndim == 2:
                    groups.setdefault(role(name), []).append(name)
            for names in groups.values():
                chunks = []
                for name in names:
                    rec = obj["tensors"][name]
                    rec["at"] = [len(streams) + 1, sum(len(c) for c in chunks), list(rec["data"].shape)]
                    chunks.append(rec["data"].t().contiguous().numpy().tobytes())
                    rec["data"] = None
                streams.append(b"".join(chunks))
    torch.save(obj, buf)
    return [buf.getvalue(), *streams]


def pack(obj: dict[str, Any], p: Packing) -> bytes:
    """The artifact's bytes for ``obj`` (the chain's or the challenge's layout)."""
    if not p.container:
        buf = io.BytesIO()
        torch.save(obj, buf)
        return zlib.compress(buf.getvalue(), level=p.level)
    packed = _each(lambda s: _stream(s, p), serialise(obj, p))
    header = {"codec": p.codec, "level": p.level, "shuffle": 2 if p.byte_shuffle else 0, "layout": p.layout,
              "row_sort": p.row_sort, "made_by": p.made_by, "streams": [len(s) for s in packed]}
    head = json.dumps(header, separators=(",", ":")).encode()
    return MAGIC + bytes([VERSION]) + len(head).to_bytes(4, "little") + head + b"".join(packed)


def read_header(blob: bytes) -> dict[str, Any] | None:
    """The container's header, or None for the challenge's bare zlib artifact."""
    if blob[:4] != MAGIC:
        return None
    n = int.from_bytes(blob[5:9], "little")
    return json.loads(blob[9:9 + n])


def unpack(blob: bytes) -> dict[str, Any]:
    """The object ``pack`` serialised, from the artifact's bytes alone."""
    header = read_header(blob)
    if header is None:
        return torch.load(io.BytesIO(zlib.decompress(blob)), map_location="cpu", weights_only=True)
    if blob[4] != VERSION:
        raise ValueError(f"artifact container version {blob[4]} is not {VERSION}")
    pos = 9 + int.from_bytes(blob[5:9], "little")
    chunks = []
    for n in header["streams"]:
        chunks.append(blob[pos:pos + n])
        pos += n
    streams = _each(lambda c: _unstream(c, header), chunks)
    obj = torch.load(io.BytesIO(streams[0]), map_location="cpu", weights_only=True)
    for rec in obj.get("tensors", {}).values():
        at = rec.pop("at", None)
        if at is not None:
            index, offset, (rows, cols) = at
            flat = np.frombuffer(streams[index], dtype=np.int8, count=rows * cols, offset=offset)
            rec["data"] = torch.from_numpy(flat.reshape(cols, rows).T.copy())
    return obj
