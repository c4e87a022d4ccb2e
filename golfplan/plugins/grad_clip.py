"""Gradient clipping: scale all gradients down so their global L2 norm is at most 0.3.

The record (records/.../2026-04-27_..._1.0611/train_gpt.py:282, 3400): ``GRAD_CLIP_NORM=0.3``,
``torch.nn.utils.clip_grad_norm_`` over every trainable parameter after the micro-batches are
accumulated and the LRs set, before the optimizers step. The core's step does exactly that when
``grad_clip_norm > 0`` (after the ``after_backward`` hooks, before the weight decay and the
optimizers); this plugin sets the field. Muon (orthogonalised) and Adam (divided by its second
moment) are both nearly blind to a gradient's overall scale, so clipping acts by down-weighting the
steps with unusually large gradients in their momentum and moment averages.
"""

from __future__ import annotations

from golfplan.core.technique import Float, Technique, hookimpl


class GradClip(Technique):
    name = "grad_clip"
    summary = "clip the global gradient norm to 0.3 before the optimizer step"
    params = {"max_norm": Float(0.3, 0.05, 2.0, log=True, help="largest global L2 norm of the gradients")}
    source = "2026-04-27_SP8192_LQER_SparseGate_BOSSmearFix_9HpStack_1.0611"
    source_result = ("not isolated: 0.3 in the record's stack (1.06108 BPB, 3 seeds) and in most records since "
                     "2026-03-19_Seq2048_FP16Emb_TunedLR, which introduced it among 11 stacked changes")

    @hookimpl
    def configure(self, config):
        return {"grad_clip_norm": self.p.max_norm}
