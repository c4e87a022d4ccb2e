"""Muon (momentum + Newton-Schulz orthogonalisation) and the optimizer split by parameter role.

Each parameter gets a role (``param_role``; the baseline's rule: the embedding ``embed``, an
untied head ``head``, 2-D block matrices ``matrix``, everything else ``scalar``) and each role
its optimizer (``build_optimizer``; the baseline's: Muon for ``matrix``, Adam for the rest, each
with its own base LR). Muon's orthogonalisation (``muon_orthogonalize``) and the transforms of
its update before it (``muon_precondition``) are hooks too.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
import torch.distributed as dist
from torch import Tensor, nn

from golfplan.core.config import Config
from golfplan.core.errors import PluginError
from golfplan.core.model.gpt import CONTROL_TENSOR_NAME_PATTERNS

NS_COEFFS = (3.4445, -4.7750, 2.0315)
ROLES = ("embed", "head", "matrix", "scalar")


def zeropower_via_newtonschulz5(G: Tensor, steps: int = 10, eps: float = 1e-7) -> Tensor:
    """Orthogonalise ``G`` with the quintic Newton-Schulz iteration (in bf16, as the baseline)."""
    a, b, c = NS_COEFFS
    X = G.bfloat16()
    X /= X.norm() + eps
    transposed = G.size(0) > G.size(1)
    if transposed:
        X = X.T
    for _ in range(steps):
        A = X @ X.T
        B = b * A + c * A @ A
        X = a * X + B @ X
    return X.T if transposed else X


def compiled_on_cuda(fn: Callable[[Tensor, int], Tensor]) -> Callable[[Tensor, int], Tensor]:
    """``fn`` compiled (once, lazily) when its input is on CUDA, as the baseline compiles
    Newton-Schulz; eager elsewhere."""
    compiled: list[Callable] = []

    def run(G: Tensor, steps: int) -> Tensor:
        if G.is_cuda:
            if not compiled:
                compiled.append(torch.compile(fn))
            return compiled[0](G, steps)
        return fn(G, steps)

    return run


class Muon(torch.optim.Optimizer):
    """Nesterov momentum, then the orthogonalised update; ranks split the matrices and all-reduce."""

    def __init__(self, params, lr: float, momentum: float, backend_steps: int, nesterov: bool = True,
                 orthogonalize: Callable[[Tensor, int], Tensor] | None = None,
                 precondition: Sequence[Callable[[Tensor], Tensor]] = ()) -> None:
        super().__init__(params, dict(lr=lr, momentum=momentum, backend_steps=backend_steps, nesterov=nesterov))
        self.orthogonalize = compiled_on_cuda(orthogonalize or zeropower_via_newtonschulz5)
        self.precondition = list(precondition)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        distributed = dist.is_available() and dist.is_initialized()
        world_size = dist.get_world_size() if distributed else 1
        rank = dist.get_rank() if distributed else 0
        for group in self.param_groups:
            params = group["params"]
            if not params:
                continue
            lr, momentum = group["lr"], group["momentum"]
            total = sum(int(p.numel()) for p in params)
            updates_flat = torch.zeros(total, device=params[0].device, dtype=torch.bfloat16)
            curr = 0
            for i, p in enumerate(params):
                if i % world_size == rank and p.grad is not None:
                    g = p.grad
                    state = self.state[p]
                    if "momentum_buffer" not in state:
                        state["momentum_buffer"] = torch.zeros_like(g)
                    buf = state["momentum_buffer"]
                    buf.mul_(momentum).add_(g)
                    if group["nesterov"]:
                        g = g.add(buf, alpha=momentum)
                    for f in self.precondition:
                        g = f(g)
                    g = self.orthogonalize(g, group["backend_steps"])
                    g *= max(1, g.size(0) / g.size(1)) ** 0.5
                    updates_flat[curr : curr + p.numel()] = g.reshape(-1)
                curr += p.numel()
            if distributed:
                dist.all_reduce(updates_flat, op=dist.ReduceOp.SUM)
            curr = 0
            for p in params:
                g = updates_flat[curr : curr + p.numel()].view_as(p).to(dtype=p.dtype)
                p.add_(g, alpha=-lr)
                curr += p.numel()
        return loss


def lr_scale(optimizers: Sequence[torch.optim.Optimizer]) -> float | None:
    """The LR multiplier the last step used: ``lr / base_lr`` of the first group with a positive
    base LR (``build_optimizers`` records ``base_lr``); None when no group has one."""
    for opt in optimizers:
        for group in opt.param_groups:
            base = group.get("base_lr", 0.0)
            if base > 0:
                return group["lr"] / base
    return None


def baseline_role(name: str, param: Tensor) -> str:
    """The baseline's grouping: ``embed``, ``head``, ``matrix`` (Muon) or ``scalar`` (Adam).

    Every parameter other than the embedding and the untied head is a Muon matrix when it is
    2-D and not a control tensor, else an Adam scalar (the baseline's rule for block params,
    applied to any parameter a technique adds).
    """
    if name == "tok_emb.weight":
        return "embed"
    if name == "lm_head.weight":
        return "head"
    if param.ndim == 2 and not any(pat in name for pat in CONTROL_TENSOR_NAME_PATTERNS):
        return "matrix"
    return "scalar"


def split_params(model: nn.Module, role_of: Callable[[str, nn.Parameter], str] | None = None
                 ) -> dict[str, list[nn.Parameter]]:
    """Parameters by role (shared parameters appear once; empty ones are skipped)."""
    role_of = role_of or baseline_role
    groups: dict[str, list[nn.Parameter]] = {r: [] for r in ROLES}
    for name, p in model.named_parameters():
        if p.numel() == 0:
            continue
        groups.setdefault(role_of(name, p), []).append(p)
    return groups


def role_lr(role: str, config: Config) -> float | None:
    """The baseline's Adam learning rate of a role (None for ``matrix`` and unknown roles)."""
    return {"embed": config.tied_embed_lr if config.tie_embeddings else config.embed_lr,
            "head": config.head_lr, "scalar": config.scalar_lr}.get(role)


def baseline_optimizer(role: str, params: list[nn.Parameter], config: Config, fused: bool = False,
                       orthogonalize: Callable | None = None, precondition: Sequence[Callable] = ()
                       ) -> torch.optim.Optimizer:
    """The baseline's optimizer for a role: Muon for ``matrix``, Adam with the role's LR otherwise."""
    if role == "matrix":
        return Muon(params, lr=config.matrix_lr, momentum=config.muon_momentum,
                    backend_steps=config.muon_backend_steps, orthogonalize=orthogonalize, precondition=precondition)
    lr = role_lr(role, config)
    if lr is None:
        raise PluginError(f"no optimizer for parameter role '{role}': a plugin's build_optimizer must provide one")
    return torch.optim.Adam([{"params": params, "lr": lr}], betas=(config.beta1, config.beta2), eps=config.adam_eps,
                            fused=fused)


def build_optimizers(model: nn.Module, config: Config, hooks: Any = None, fused: bool = False
                     ) -> tuple[list[torch.optim.Optimizer], torch.optim.Optimizer]:
    """One optimizer per role that has parameters, in the baseline's order (embed, head, matrix,
    scalar, then any other role), each group with a ``base_lr`` and a ``role``; returns them and
    the ``matrix`` optimizer (the one the momentum warmup and the weight decay act on)."""
    if hooks is None:
        role_of, make = baseline_role, None
    else:
        h = hooks.pm.hook
        role_of = lambda n, p: h.param_role(name=n, param=p, config=config)  # noqa: E731
        make = h.build_optimizer
    groups = split_params(model, role_of)
    optimizers: list[torch.optim.Optimizer] = []
    matrix: torch.optim.Optimizer | None = None
    for role, params in groups.items():
        if not params and role != "matrix":
            continue
        opt = make(role=role, params=params, config=config) if make is not None else \
            baseline_optimizer(role, params, config, fused=fused)
        for group in opt.param_groups:
            group.setdefault("base_lr", group["lr"])
            group["role"] = role
        optimizers.append(opt)
        if role == "matrix":
            matrix = opt
    assert matrix is not None
    # the baseline's order: Adam(embed), [Adam(head)], Muon, Adam(scalar)
    return optimizers, matrix
