"""RoPE base: the rotary frequency base (baseline 10000; the seed's best 5000).

Sets ``rope_base``; every attention layer's ``Rotary.inv_freq`` becomes
``1 / base^(2i/head_dim)``. A smaller base rotates faster: sharper, more local
positional attention at the train length.
"""

from __future__ import annotations

from golfplan.core.technique import Float, Technique, hookimpl


class RopeBase(Technique):
    name = "rope_base"
    summary = "rotary embedding frequency base (baseline 10000; the seed's best 5000)"
    slot = "rope"
    params = {"base": Float(5000.0, 1000.0, 20000.0, log=True, help="RoPE base")}
    seed_refs = ("NF14", "C7", "C8", "W0d", "U9")
    seed_result = ("NF14: SC20+RoPE5k 1.5765 (-0.035, Breakthrough); C7 RoPE 3000 1.5553 (+0.003 vs B4), "
                   "C8 RoPE 7500 1.5544 (+0.002); W0d RoPE 3k 1.5845 vs W0b-class RoPE 5k 1.5774; U9 not reached")

    @hookimpl
    def configure(self, config):
        return {"rope_base": self.p.base}
