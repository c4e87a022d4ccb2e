"""Hardware profiles: overrides of the baseline Config that size a run to a machine.

``ms_per_step_hint`` is a measured figure (where it is not 0) used by the budget
estimate of ``golfplan check``; each entry says where its figure comes from.
"""

from __future__ import annotations

from typing import Any

PROFILES: dict[str, dict[str, Any]] = {
    # A tiny model that learns visibly in 15 s on 2 CPU cores, eager mode, fp32. The cap keeps the
    # README's main job (a 20-trial study, each trial a fresh process) under 10 minutes.
    "cpu": dict(
        num_layers=4, model_dim=128, num_heads=4, num_kv_heads=2, mlp_mult=2.0,
        train_seq_len=256, train_batch_tokens=8192, iterations=400, warmdown_iters=60,
        warmup_steps=2, max_wallclock_seconds=15.0, val_batch_size=32768, val_loss_every=0,
        val_max_tokens=65536, train_log_every=25, muon_momentum_warmup_steps=100,
        device="cpu", compile="off", dtype="fp32",
    ),
    # The seed log's machine: one RTX 4000 Ada, baseline model, 600 s cap.
    # ms/step: the seed's own figure for its cosine baseline (240 steps in 600 s).
    "rtx4000": dict(device="cuda", ms_per_step_hint=2500.0),
    # One H100, baseline model, 600 s cap (grad accumulation 8 as the baseline on one GPU).
    # ms/step: measured by benchmarks/gpu_check.sh on an H100 80GB HBM3 (torch 2.11, 2026-11-26).
    "1xh100": dict(device="cuda", ms_per_step_hint=331.4),
    # The challenge's setting: 8xH100 under torchrun, 600 s cap.
    "8xh100": dict(device="cuda"),
}


def default_profile() -> str:
    """``cpu`` when no CUDA device is present, else ``1xh100``."""
    try:
        import torch

        return "1xh100" if torch.cuda.is_available() else "cpu"
    except Exception:  # pragma: no cover - torch import problems surface elsewhere
        return "cpu"
