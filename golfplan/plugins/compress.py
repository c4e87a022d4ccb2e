"""The artifact's compressor: zlib, lzma, zstd, brotli or ZPAQ, with byte shuffling, row sorting and a
per-group layout.

The leaderboard's compressors, strongest settings as the records ran them: zlib level 9 (the
challenge), zstd level 22 (2026-03-19_MLP3x_QAT_Int6: "saves ~1.5MB vs zlib"), lzma preset 9
(the 1.0611 record's ``_compress``, F:2429-2445), brotli quality 11 with a 16 MiB window (the
1.0611 record's default ``COMPRESSOR=brotli``, and its remainder stream, F:2459), ZPAQ level 5 (the
1.0611 record's ``lrzip -z -L 9`` on each group, F:2352-2507; in memory through the ``zpaq``
package, single-threaded so the bytes do not depend on the machine). Options:

- ``byte_shuffle``: stride-2 byte shuffle of every stream before the codec (every even byte,
  then every odd one; 2026-03-31_ParallelResiduals_MiniDepthRecurrence's ``_byte_shuffle``);
- ``row_sort``: the rows of integer code matrices reordered along a greedy L1 nearest-neighbour
  path, the order stored (int16) and undone on load: ``hot`` sorts the embedding, c_q and mlp.fc
  codes as the record's ``_SIMSORT_KEYS`` (F:2361-2378), ``all`` every code matrix;
- ``layout=grouped``: the record's "pergroup" serialiser (F:2352-2507): the integer codes of each
  role across layers (``blocks.*.attn.c_q.weight`` ...) transposed, concatenated and compressed
  as a stream of their own, the rest (scales, small tensors, LQER factors, metadata) in one more.

The record's pergroup ran each group through the external ``lrzip -z -L 9`` (ZPAQ) binary; here
every stream uses the chosen codec (``zstandard``, ``brotli`` and ``zpaq`` are PyPI packages with
prebuilt wheels, the others the standard library), so ``grouped`` + ``hot`` + zpaq is the record's
chain without its binary (``benchmarks/compressors.py`` compares it with lrzip where lrzip is
installed). The container records the packing; the artifact's loader needs no plugin to read it.
"""

from __future__ import annotations

from golfplan.core.export.codec import CODECS, packing_for
from golfplan.core.technique import Bool, Choice, Technique, hookimpl


class Compress(Technique):
    name = "compress"
    summary = "artifact compressor: zlib / lzma / zstd / brotli / zpaq, byte shuffle, row sort, per-group streams"
    slot = "compressor"
    params = {
        "codec": Choice("brotli", CODECS, help="zlib-9, lzma-9, zstd-22, brotli-11 or zpaq-5 (the record's lrzip)"),
        "byte_shuffle": Bool(False, help="stride-2 byte shuffle of each stream before the codec"),
        "row_sort": Choice("none", ("none", "hot", "all"),
                           help="L1 nearest-neighbour row order of code matrices: hot = embedding, c_q, mlp.fc"),
        "layout": Choice("single", ("single", "grouped"),
                         help="one stream, or the codes of each role across layers in a stream of their own"),
    }
    source = "2026-04-27_SP8192_LQER_SparseGate_BOSSmearFix_9HpStack_1.0611"
    source_result = ("pergroup (role groups, row sort, lrzip; brotli-11 remainder) ~280 KB smaller than brotli-11 "
                     "alone: 15,865,260-byte model (seed 42); zstd-22 vs zlib: ~1.5 MB smaller (2026-03-19_MLP3x)")

    @hookimpl
    def compressor(self, config):
        return packing_for(self.p.codec, byte_shuffle=self.p.byte_shuffle, layout=self.p.layout,
                           row_sort=self.p.row_sort, made_by=self.name)
