"""One training step and the priming routine: the only copy, called by the trainer and by
``golfplan check``'s trace, so a hook added here is traced exactly as it will train.

A step, in order:

1. ``model.progress`` <- clock.progress (a buffer: forward hooks read it without recompiling);
2. the LR multiplier from ``lr_schedule``;
3. forward + backward over ``grad_accum`` micro-batches (the compiled region);
4. Muon's momentum warmup, the LRs (base LR x multiplier);
5. ``after_backward`` hooks, gradient clipping, decoupled weight decay from ``wd_schedule``;
6. every optimizer's step, then the ``on_step`` hooks (under ``no_grad``).

Nothing here forces a GPU sync: the returned loss stays a tensor.
"""

from __future__ import annotations

import copy
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import Tensor

from golfplan.core.config import Config
from golfplan.core.hooks import Hooks, lr_multiplier
from golfplan.core.state import Clock

Batch = tuple  # (x, y) or (x, y, extras): extras are keyword arguments of the model's forward


def unpack(batch: Batch) -> tuple[Tensor, Tensor, dict[str, Any]]:
    x, y, *rest = batch
    return x, y, (rest[0] if rest else {})


@dataclass
class Step:
    """Everything a training step touches, assembled once per run."""

    model: Any  # what the forward is called on: the compiled module, or DDP around it
    base: Any  # the plain GPT that hooks see
    optimizers: list[torch.optim.Optimizer]
    muon: torch.optim.Optimizer
    hooks: Hooks
    config: Config
    next_batch: Callable[[], Batch]
    grad_accum: int = 1
    amp: Callable[[], Any] = nullcontext
    ddp: bool = False
    matrix_params: list[Tensor] = field(init=False)

    def __post_init__(self) -> None:
        self.matrix_params = [p for g in self.muon.param_groups for p in g["params"]]

    def zero_grad(self) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)

    def forward_backward(self) -> Tensor:
        """Accumulate gradients over the micro-batches; the mean loss as a tensor."""
        total = None
        for micro in range(self.grad_accum):
            if self.ddp:
                self.model.require_backward_grad_sync = micro == self.grad_accum - 1
            x, y, extras = unpack(self.next_batch())
            with self.amp():
                loss = self.model(x, y, **extras)
            total = loss.detach() if total is None else total + loss.detach()
            (loss * (1.0 / self.grad_accum)).backward()
        assert total is not None
        return total / self.grad_accum

    def __call__(self, clock: Clock) -> Tensor:
        c, base = self.config, self.base
        base.progress.fill_(clock.progress)
        scale = lr_multiplier(self.hooks, clock, c)
        self.zero_grad()
        loss = self.forward_backward()
        warm = c.muon_momentum_warmup_steps
        frac = min(clock.step / warm, 1.0) if warm > 0 else 1.0
        for group in self.muon.param_groups:
            group["momentum"] = (1 - frac) * c.muon_momentum_warmup_start + frac * c.muon_momentum
        for opt in self.optimizers:
            for group in opt.param_groups:
                group["lr"] = group["base_lr"] * scale
        for fn in self.hooks.after_backward:
            fn(model=base, clock=clock)
        if c.grad_clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(base.parameters(), c.grad_clip_norm)
        wd = float(self.hooks.wd_schedule(clock=clock, config=c))
        if wd > 0:
            with torch.no_grad():
                lr = self.muon.param_groups[0]["lr"]
                for p in self.matrix_params:
                    p.mul_(1.0 - lr * wd)
        for opt in self.optimizers:
            opt.step()
        with torch.no_grad():
            for fn in self.hooks.on_step:
                fn(model=base, optimizers=self.optimizers, clock=clock)
        self.zero_grad()
        return loss


def prime(step: Step, steps: int, log: Callable[[str], None] = lambda m: None) -> None:
    """Warm the compiled paths with ``steps`` forward/backward + optimizer steps (no schedule, no
    hooks: as the baseline) for each layer order of the stack (a technique that switches orders
    mid-run then switches between graphs already compiled), then restore the initial weights,
    optimizer state and order."""
    if steps <= 0:
        return
    stack = step.base.stack
    first = stack.active
    init_model = {k: v.detach().cpu().clone() for k, v in step.base.state_dict().items()}
    init_opts = [copy.deepcopy(opt.state_dict()) for opt in step.optimizers]
    step.model.train()
    for name in stack.orders:
        stack.active = name
        tag = f" ({name})" if len(stack.orders) > 1 else ""
        for i in range(steps):
            step.zero_grad()
            step.forward_backward()
            for opt in step.optimizers:
                opt.step()
            step.zero_grad()
            if steps <= 20 or (i + 1) % 10 == 0 or i + 1 == steps:
                log(f"warmup_step:{i + 1}/{steps}{tag}")
    stack.active = first
    step.base.load_state_dict(init_model, strict=True)
    for opt, state in zip(step.optimizers, init_opts):
        opt.load_state_dict(state)
    step.zero_grad()
    if step.ddp:
        step.model.require_backward_grad_sync = True
