"""Logit softcap: ``logits = c·tanh(logits / c)`` with a tighter ``c`` than the baseline's 30.

Sets ``logit_softcap``. The seed found 15-20 best (NF14 with RoPE 5000: 20 was the
"breakthrough"; on the later asymmetric/pure-decoder stack 15 won, E8), with
13-18 all within noise (F1-F4).
"""

from __future__ import annotations

from golfplan.core.technique import Float, Technique, hookimpl


class Softcap(Technique):
    name = "softcap"
    summary = "tanh logit softcap value (baseline 30; the seed's best 15)"
    slot = "softcap"
    params = {"value": Float(15.0, 5.0, 50.0, help="the cap c in c·tanh(logits/c)")}
    seed_refs = ("NF14", "C4", "C5", "C6", "E1", "E2", "E3", "F1", "F2", "F3", "F4", "E13", "U9")
    seed_result = ("NF14: SC20+RoPE5k 1.5765 (-0.035, Breakthrough); C4 SC15 1.5519 (-0.001 vs B4), "
                   "C5 SC25 1.5602 (+0.008), C6 SC18 1.5519; E1 SC15 on 1/8 1.5387, E3 SC12 1.5378; "
                   "E8 SC15+MatLR0.10 1.5354; F1-F4 SC13/14/16/17: 1.5376/1.5363/1.5359/1.5356 (noise); "
                   "E13 SC18+RoPE5k 1.5770; U9 not reached")

    @hookimpl
    def configure(self, config):
        return {"logit_softcap": self.p.value}
