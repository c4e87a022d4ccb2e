"""The record's LR schedule: flat at 1.0 until progress 0.15, then linear down to a 0.10 floor.

The record (records/.../2026-04-27_..._1.0611/train_gpt.py:232, 266, 3346-3362; the seed-42 log's
header): ``lr_mul(frac) = 1`` while ``frac < 1 - WARMDOWN_FRAC``, else
``max((1 - frac) / WARMDOWN_FRAC, MIN_LR)`` with ``WARMDOWN_FRAC=0.85`` (the code's default is
0.75; 0.85 is one of the run's nine overrides) and ``MIN_LR=0.10`` (from PR #1787). No warmup.
So 1.0 up to 0.15, 0.5 at 0.575, and the floor 0.10 from 0.915 to the end. ``frac`` is
``elapsed / (600 s - GPTQ_RESERVE_SECONDS)`` (0.5 s in the run: 599.5 s), or ``step / iterations``
without a cap.

Here the multiplier reads ``clock.progress``, which the trainer measures the same way: the larger of
``step / iterations`` and ``elapsed / (max_wallclock_seconds - calibration_reserve_seconds)``
(in a wallclock-capped run the second one, as the record's). This plugin does not set
``calibration_reserve_seconds``: the reserve exists for the calibration that runs after the loop
(GPTQ's Hessians), so it belongs to the plugin that calibrates; the schedule only follows whatever
reserve the run has, as the record's follows ``GPTQ_RESERVE_SECONDS``. Setting it here would cost
training time in runs that calibrate nothing, and clash with the calibrating plugin's own value.
"""

from __future__ import annotations

from golfplan.core.technique import Float, Technique, hookimpl


def frontier_lr(progress: float, warmdown_frac: float = 0.85, min_lr: float = 0.10) -> float:
    """1 until ``1 - warmdown_frac``, then ``(1 - progress) / warmdown_frac``, never below ``min_lr``."""
    if warmdown_frac <= 0:
        return 1.0
    p = min(max(progress, 0.0), 1.0)
    if p >= 1.0 - warmdown_frac:
        return max((1.0 - p) / warmdown_frac, min_lr)
    return 1.0


class FrontierLR(Technique):
    name = "frontier_lr"
    summary = "the record's LR: flat to progress 0.15, then linear decay to a 0.10 floor (wallclock progress)"
    slot = "lr_schedule"
    params = {
        "warmdown_frac": Float(0.85, 0.1, 1.0, help="share of the run (from the end) over which the LR decays"),
        "min_lr": Float(0.10, 0.0, 0.5, help="floor of the LR multiplier"),
    }
    source = "2026-04-27_SP8192_LQER_SparseGate_BOSSmearFix_9HpStack_1.0611"
    source_result = ("not isolated: WARMDOWN_FRAC 0.85 (vs 0.75) was one of the record's 9 overrides kept by greedy "
                     "forward selection (fixed-step trials, seed 42); MIN_LR 0.10 came with "
                     "2026-04-23_..._PolarNS_MinLR_FusedCE (with 3 other changes: -0.00214 BPB, 3 seeds)")

    @hookimpl
    def lr_schedule(self, clock, config):
        return frontier_lr(clock.progress, self.p.warmdown_frac, self.p.min_lr)
