"""Weight-decay ramp: decoupled weight decay rising linearly from 0 to ``wd`` over the run.

Sets the config's ``weight_decay`` (the peak) to ``wd``; every step the trainer then
applies ``p *= 1 - lr * wd_now`` to the Muon matrices before the optimizer step, with
``wd_now = weight_decay * progress`` and ``lr`` the matrix LR after the LR schedule
(PyTorch's AdamW convention). The embeddings, head and control tensors are not decayed.
"""

from __future__ import annotations

from golfplan.core.technique import Float, Technique, hookimpl


def wd_ramp(progress: float, wd: float) -> float:
    """0 at progress 0, ``wd`` at progress 1, linear in between."""
    return wd * min(max(progress, 0.0), 1.0)


class WdRamp(Technique):
    name = "wd_ramp"
    summary = "decoupled weight decay on the matrices, ramped linearly from 0 to wd over the run"
    slot = "wd_schedule"
    params = {"wd": Float(0.01, 0.001, 0.1, log=True, help="final (peak) decoupled weight decay")}
    seed_refs = ("G3", "H4")
    seed_result = ("G3 (0.01, on F7): 1.5603 vs F7 1.5329 (Much worse); H4 (0.04, on H1's stack): "
                   "1.6569 vs 1.5207 (Catastrophic); H5 (with 3x MLP): 1.6974")

    @hookimpl
    def configure(self, config):
        return {"weight_decay": self.p.wd}

    @hookimpl
    def wd_schedule(self, clock, config):
        return wd_ramp(clock.progress, config.weight_decay)
