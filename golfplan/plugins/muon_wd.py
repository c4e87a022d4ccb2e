"""Muon weight decay: decoupled decay of the Muon matrices, ``p *= 1 - lr·wd`` before each update.

The record's Muon (records/.../2026-04-27_..._1.0611/train_gpt.py:1853-1870, ``MUON_WD=0.095``)
multiplies every matrix by ``1 - lr·wd`` just before adding its orthogonalised update, with ``lr``
the group's scheduled LR (base LR times the LR schedule's multiplier), at every step. The weights'
RMS predicts their compressed size (R² ≈ 0.99, 2026-04-01_Vocab4096_MLPMult4_WD085), so decay buys
artifact bytes as well as regularisation.

Here: ``configure`` sets ``weight_decay`` to ``wd`` and ``wd_schedule`` returns it unchanged at every
step; the core's step then applies ``p *= 1 - lr·wd`` to the Muon matrices before the optimizer step,
with ``lr`` Muon's LR after the schedule: the record's rule. (The record decays each matrix right
before its own update, the core decays all of them before the step; the gradient was computed before
either, so the result is the same.) Embeddings, head and control tensors are not decayed here: the
``adamw`` plugin decays those with their own rates.
"""

from __future__ import annotations

from golfplan.core.technique import Float, Technique, hookimpl


class MuonWD(Technique):
    name = "muon_wd"
    summary = "decoupled weight decay on the Muon matrices, p *= 1 - lr*wd every step (0.095)"
    slot = "wd_schedule"
    params = {"wd": Float(0.095, 0.005, 0.2, log=True, help="decoupled weight decay of the Muon matrices (x LR)")}
    source = "2026-04-27_SP8192_LQER_SparseGate_BOSSmearFix_9HpStack_1.0611"
    source_result = ("0.095 in the record's stack (1.06108 BPB, 3 seeds), not isolated there; "
                     "2026-04-03_MuonEqR_DepthRecurrence_WD090_AllInt6 measured 0.090 vs 0.085: 1.09057 vs 1.09170 "
                     "BPB (seed 42), the smaller weights compressing ~5 % better so all 66 matrices stayed int6")

    @hookimpl
    def configure(self, config):
        return {"weight_decay": self.p.wd}

    @hookimpl
    def wd_schedule(self, clock, config):
        return config.weight_decay
