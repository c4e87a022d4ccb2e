"""Hardware profiles: overrides of the baseline Config that size a run to a machine.

``ms_per_step_hint`` is a measured figure (where it is not 0) used by the budget
estimate of ``golfplan check``; each entry says where its figure comes from.
"""

from __future__ import annotations

from typing import Any

PROFILES: dict[str, dict[str, Any]] = {
    # A tiny model on the CPU, capped by work, not time: 40 steps of 4,096 tokens, so a result never
    # depends on how fast or how busy the machine is (the wallclock cap is off; time_limit_seconds
    # only fails a run still going after 20 minutes: a hang, not a slow machine). Sized so the README's main job (a
    # 20-trial study, each trial a fresh process) takes about 4 minutes on 2 cores and every run
    # lands well below an untrained model (benchmarks/cpu_run.py).
    "cpu": dict(
        num_layers=4, model_dim=128, num_heads=4, num_kv_heads=2, mlp_mult=2.0,
        train_seq_len=256, train_batch_tokens=4096, iterations=40, warmdown_iters=12,
        warmup_steps=0, max_wallclock_seconds=0.0, time_limit_seconds=1200.0,
        val_batch_size=16384, val_loss_every=0, val_max_tokens=32768, train_log_every=10,
        muon_momentum_warmup_steps=20, device="cpu", compile="off", dtype="fp32",
    ),
    # A CPU proxy shaped like the seed's model: its 9 layers, 8 heads and 4 KV heads, at 3/16 of its width
    # (96: heads of 12), so the seed's depth, U-Net split and KV-head settings mean on it what they meant
    # on the GPU; and the seed's horizon ratio for Muon's momentum warmup, 500 steps of the seed's 240 (it
    # never finished there: 40 x 500/240 = 83). Same tokens, steps and evaluation as `cpu`; a run costs
    # 1.8x a `cpu` run in CPU time (55 s against 30.5 s on one thread; benchmarks/proxy_agreement.py,
    # which also measures how far its verdicts agree with the seed's GPU verdicts).
    "cpu-deep": dict(
        num_layers=9, model_dim=96, num_heads=8, num_kv_heads=4, mlp_mult=2.0,
        train_seq_len=256, train_batch_tokens=4096, iterations=40, warmdown_iters=12,
        warmup_steps=0, max_wallclock_seconds=0.0, time_limit_seconds=2400.0,
        val_batch_size=16384, val_loss_every=0, val_max_tokens=32768, train_log_every=10,
        muon_momentum_warmup_steps=83, device="cpu", compile="off", dtype="fp32",
    ),
    # The seed log's machine: one RTX 4000 Ada, baseline model, 600 s cap.
    # ms/step: the seed's own figure for its cosine baseline (240 steps in 600 s).
    "rtx4000": dict(device="cuda", ms_per_step_hint=2500.0),
    # One H100, baseline model, 600 s cap (grad accumulation 8 as the baseline on one GPU).
    # ms/step: measured by benchmarks/gpu_check.sh on an H100 80GB HBM3 (torch 2.11, 2026-11-26).
    "1xh100": dict(device="cuda", ms_per_step_hint=331.4),
    # The challenge's setting: 8xH100 under torchrun, 600 s cap; evaluation: 600 s more (README R:221).
    "8xh100": dict(device="cuda", max_eval_seconds=600.0),
}
# `cpu` at three times its horizon (120 steps; warmdown and Muon's momentum warmup the same shares of
# the run), to tell what a longer run changes in a verdict (schedules, slow regularizers) from what
# the shape changes (`cpu-deep`). Measured against the seed's GPU verdicts on its cosine base by
# benchmarks/proxy_agreement.py (benchmarks/README.md): it agrees less than `cpu` there (11 of 17
# signs against 13) at 3 times the CPU a verdict, so plan on `cpu`; the schedules `cpu` misses it
# misses by more.
PROFILES["cpu-long"] = dict(PROFILES["cpu"], iterations=120, warmdown_iters=36, muon_momentum_warmup_steps=60,
                           time_limit_seconds=2400.0, train_log_every=30)

# Processes a profile's runs use (torchrun's --nproc_per_node); 1 where not listed.
WORLD_SIZES: dict[str, int] = {"8xh100": 8}


def world_size(profile: str) -> int:
    return WORLD_SIZES.get(profile, 1)


def step_capped(config: Any) -> bool:
    """True when runs end at ``iterations`` alone (no wallclock cap): results do not depend on speed."""
    return config.max_wallclock_seconds <= 0


def default_profile() -> str:
    """``cpu`` when no CUDA device is present, else ``1xh100``."""
    try:
        import torch

        return "1xh100" if torch.cuda.is_available() else "cpu"
    except Exception:  # pragma: no cover - torch import problems surface elsewhere
        return "cpu"
