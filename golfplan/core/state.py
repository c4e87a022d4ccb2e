"""Small state objects handed to hooks: the training clock and the forward context."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class Clock:
    """Where the run is. ``progress`` reaches 1.0 at the last iteration or at the wallclock cap,
    whichever comes first, so a schedule always finishes (the seed's NF15/NF16 bug)."""

    step: int = 0
    iterations: int = 1
    elapsed_s: float = 0.0
    wallclock_s: float = 0.0  # 0: no cap
    warmdown_iters: int = 0
    seed: int = 0

    @property
    def progress(self) -> float:
        p = self.step / max(self.iterations, 1)
        if self.wallclock_s > 0:
            p = max(p, self.elapsed_s / self.wallclock_s)
        return min(max(p, 0.0), 1.0)

    @property
    def step_ms(self) -> float:
        """Mean milliseconds per step so far (0 before the first step)."""
        return 1000.0 * self.elapsed_s / self.step if self.step else 0.0


class ForwardContext:
    """What the forward hooks' functions see inside the compiled region.

    ``progress`` is a 0-d float tensor buffer of the model, updated in place each step,
    so reading it never recompiles. ``logits``, ``token_loss`` are filled before the
    ``on_loss`` terms run.
    """

    def __init__(self, model: Any, progress: torch.Tensor, input_ids: torch.Tensor, targets: torch.Tensor,
                 training: bool) -> None:
        self.model = model
        self.progress = progress
        self.input_ids = input_ids
        self.targets = targets
        self.training = training
        self.logits: torch.Tensor | None = None
        self.token_loss: torch.Tensor | None = None
