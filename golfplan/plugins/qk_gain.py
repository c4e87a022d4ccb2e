"""Q gain init: the initial value of the learned per-head query gain (baseline 1.5).

Sets ``qk_gain_init``; queries are RMS-normalised and then multiplied by this
learned per-head gain, so it sets the initial attention temperature. The seed
found 2.0 a near-tie with parallel blocks (B5) and no help later (E7, F9).
"""

from __future__ import annotations

from golfplan.core.technique import Float, Technique, hookimpl


class QKGain(Technique):
    name = "qk_gain"
    summary = "initial per-head query gain (baseline 1.5)"
    slot = "qk_gain"
    params = {"init": Float(2.0, 0.5, 4.0, help="initial q_gain of every head")}
    seed_refs = ("B5", "E7", "F9")
    seed_result = ("B5: Parallel+QK2.0+HD+AggrLR 1.5535 (-0.058, close second to B4 1.5527); "
                   "E7 QK 2.0 on 1/8 1.5400 (no help); F9 QK 2.0 on E8 1.5401 (worse)")

    @hookimpl
    def configure(self, config):
        return {"qk_gain_init": self.p.init}
