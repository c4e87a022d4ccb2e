"""Muon momentum warmup 0.92 -> 0.97 over the first 30 % of the run (the record's 1500 of 4,945 steps).

The record (records/.../2026-04-27_..._1.0611/train_gpt.py:270-285, 3375-3395):
``MUON_MOMENTUM=0.97``, ``MUON_MOMENTUM_WARMUP_START=0.92``, ``MUON_MOMENTUM_WARMUP_STEPS=1500``;
at step ``s`` the momentum is ``(1 - f)·0.92 + f·0.97`` with ``f = min(s / 1500, 1)``.

**Horizon (golfplan.core.train.horizon).** The warmup is a fraction of the run, ``warmup_frac`` 0.3033: the
record's 1500 steps over the 4,945 its seed-42 run took. Every step, ``f = min(progress / warmup_frac,
1)``, with ``progress`` the clock every LR schedule reads, so a 4,945-step run warms over exactly 1500
steps, the ``cpu`` profile's 40 steps over 12, and a run capped by time over the same 30 % of its cap.
A 1500-step warmup on a short run never ends (a 40-step run would stay near 0.92 + 0.05 x 40/1500),
and a 600 s run on one H100 takes a fraction of the record's steps, so there too the fraction is what
carries the record's meaning. One difference on the record's own run, which is capped by time: it was
faster per step before its depth recurrence switched on at 35 %, so its 1500th step came before 30 %
of its wallclock, and this warmup, on the wallclock's share, ends some steps later than the record's.

How: ``configure`` sets the core's three fields (``muon_momentum_warmup_steps`` to the fraction of
``iterations``, which is what the core's step applies on a run capped by steps, and at least 1 so step
0 runs at ``start``; on a run capped by time ``iterations`` is only an upper bound, so that field is
too: 6,067 of the ``8xh100`` profile's 20,000), and ``after_backward``, which runs after the core has set the step's momentum and
before the optimizers step, sets the momentum of the matrix optimizer (Muon, the one the core warms)
from progress (from the second step on: its groups are found in the first ``on_step``). On a run capped by steps both give the same value
(up to the rounding of the warmup to whole steps, which the fraction does not have).

Conflicts with ``lr``, which sets ``muon_momentum`` too.
"""

from __future__ import annotations

from golfplan.core.technique import Float, Technique, hookimpl

RECORD_WARMUP_STEPS, RECORD_STEPS = 1500, 4945  # MUON_MOMENTUM_WARMUP_STEPS; the steps of the record's seed-42 run


def momentum_at(progress: float, start: float, end: float, warmup_frac: float) -> float:
    """``start`` at progress 0, linear to ``end`` at ``warmup_frac`` of the run, then ``end``."""
    f = min(progress / warmup_frac, 1.0) if warmup_frac > 0 else 1.0
    return (1.0 - f) * start + f * end


class MuonMomentum(Technique):
    name = "muon_momentum"
    summary = "Muon momentum warmed from 0.92 to 0.97 over the first 30 % of the run (the record's 1500 steps)"
    conflicts = ("lr",)
    params = {
        "start": Float(0.92, 0.8, 0.97, help="Muon momentum at the start of the run"),
        "end": Float(0.97, 0.85, 0.995, at_least="start", help="Muon momentum after the warmup"),
        "warmup_frac": Float(RECORD_WARMUP_STEPS / RECORD_STEPS, 0.0, 1.0,
                             help="fraction of the run to go from start to end (0.3033: the record's 1500 of "
                                  "its 4,945 steps)"),
    }
    source = "2026-04-09_A2_Muon097_3Seed"
    source_result = ("momentum 0.97 instead of 0.99 (warmup from 0.92 over 1500 steps unchanged): "
                     "'consistently reduces BPB by ~0.0005 across seeds' (README); 0.92 -> 0.97 / 1500 in the 1.0611 record")

    def __init__(self, **values) -> None:
        super().__init__(**values)
        self.groups: list[dict] | None = None  # the matrix optimizer's groups (Muon's), found in the first on_step

    @hookimpl
    def configure(self, config):
        steps = max(1, round(self.p.warmup_frac * config.iterations)) if self.p.warmup_frac > 0 else 0
        return {"muon_momentum": self.p.end, "muon_momentum_warmup_start": self.p.start,
                "muon_momentum_warmup_steps": steps}

    @hookimpl
    def after_backward(self, model, clock):
        if self.groups is None:
            return
        m = momentum_at(clock.progress, self.p.start, self.p.end, self.p.warmup_frac)
        for group in self.groups:
            group["momentum"] = m

    @hookimpl
    def on_step(self, model, optimizers, clock):
        if self.groups is None:
            self.groups = [g for opt in optimizers for g in opt.param_groups if g.get("role") == "matrix"]
