"""Muon momentum warmup 0.92 -> 0.97 over the first 1500 steps.

The record (records/.../2026-04-27_..._1.0611/train_gpt.py:270-285, 3375-3395):
``MUON_MOMENTUM=0.97``, ``MUON_MOMENTUM_WARMUP_START=0.92``, ``MUON_MOMENTUM_WARMUP_STEPS=1500``;
at step ``s`` the momentum is ``(1 - f)·0.92 + f·0.97`` with ``f = min(s / 1500, 1)``. The core's
step applies exactly that rule from three config fields, which this plugin sets in ``configure``.

Absolute steps or a fraction of the run? Absolute steps, as the record, wherever the run is capped by
wallclock: there the number of steps the run will take is unknown when it is configured
(``iterations`` is only an upper bound: the record has 20,000 and took 4,945), and most records
since 03-19 kept the same 1500 steps (a few 500) whether a run took 4,900 or 7,400 steps. A run capped by steps alone
(``max_wallclock_seconds=0``, as the ``cpu`` profile's 40 steps) knows its length and would never
finish a 1500-step warmup, so there the warmup is capped at the share of the run the record's took:
``min(warmup_steps, round(1500/4945 · iterations))`` (30 %).

Conflicts with ``lr``, which sets ``muon_momentum`` too.
"""

from __future__ import annotations

from golfplan.core.technique import Float, Int, Technique, hookimpl

RECORD_WARMUP_SHARE = 1500 / 4945  # the record's warmup over the steps its seed-42 run took


def warmup_steps_for(config, steps: int) -> int:
    """``steps`` when the run is wallclock-capped; at most the record's share of a step-capped run."""
    if config.max_wallclock_seconds > 0:
        return steps
    return min(steps, round(RECORD_WARMUP_SHARE * config.iterations))


class MuonMomentum(Technique):
    name = "muon_momentum"
    summary = "Muon momentum warmed from 0.92 to 0.97 over the first 1500 steps"
    conflicts = ("lr",)
    params = {
        "start": Float(0.92, 0.8, 0.97, help="Muon momentum at step 0"),
        "end": Float(0.97, 0.85, 0.995, at_least="start", help="Muon momentum after the warmup"),
        "warmup_steps": Int(1500, 0, 5000, help="steps to go from start to end (absolute; capped at 30 % of a "
                                                "step-capped run, see the module doc)"),
    }
    source = "2026-04-09_A2_Muon097_3Seed"
    source_result = ("momentum 0.97 instead of 0.99 (warmup from 0.92 over 1500 steps unchanged): "
                     "'consistently reduces BPB by ~0.0005 across seeds' (README); 0.92 -> 0.97 / 1500 in the 1.0611 record")

    @hookimpl
    def configure(self, config):
        return {"muon_momentum": self.p.end, "muon_momentum_warmup_start": self.p.start,
                "muon_momentum_warmup_steps": warmup_steps_for(config, self.p.warmup_steps)}
