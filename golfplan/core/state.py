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

    ``model`` is the GPT; ``progress`` is a 0-d float tensor buffer of the model, updated in
    place each step, so reading it never recompiles; ``input_ids``/``targets`` are the batch
    (batch, seq); ``training`` says whether this is a training forward; ``segments`` is the
    document index of each position (batch, seq) when the loader gives one, else None (then
    ``input_ids == config.bos_id`` marks document starts); ``extras`` is a dict the forward's
    modules may use to pass tensors to one another (an embedding module to the attention
    taps, say). ``logits``, ``token_loss`` are filled before the ``on_loss`` terms run.
    """

    def __init__(self, model: Any, progress: torch.Tensor, input_ids: torch.Tensor, targets: torch.Tensor,
                 training: bool, segments: torch.Tensor | None = None) -> None:
        self.model = model
        self.progress = progress
        self.input_ids = input_ids
        self.targets = targets
        self.training = training
        self.segments = segments
        self.extras: dict[str, Any] = {}
        self.logits: torch.Tensor | None = None
        self.token_loss: torch.Tensor | None = None

    def document_starts(self, bos_id: int) -> torch.Tensor:
        """(batch, seq) bool: position t starts a document (its segment changes, or it holds the BOS
        token when there are no segments); position 0 always does. What nothing may cross."""
        marks = self.segments if self.segments is not None else self.input_ids
        first = torch.ones_like(marks[:, :1], dtype=torch.bool)
        rest = marks[:, 1:] != marks[:, :-1] if self.segments is not None else marks[:, 1:] == bos_id
        return torch.cat([first, rest], dim=1)


def floating_state(model: Any) -> tuple[list[str], list[torch.Tensor]]:
    """The floating entries of ``model.state_dict(keep_vars=True)``, a shared tensor once: names and
    the live tensors (weight averages such as EMA and SWA keep a shadow of these)."""
    names, tensors, seen = [], [], set()
    for name, t in model.state_dict(keep_vars=True).items():
        if t.is_floating_point() and id(t) not in seen:
            seen.add(id(t))
            names.append(name)
            tensors.append(t)
    return names, tensors
