"""Muon (momentum + Newton-Schulz orthogonalisation) and the baseline's optimizer split.

Block matrices go to Muon; the embedding, the untied head and the small control
tensors go to Adam, each with its own base LR, exactly as the challenge baseline.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn

from golfplan.core.config import Config
from golfplan.core.model import CONTROL_TENSOR_NAME_PATTERNS

NS_COEFFS = (3.4445, -4.7750, 2.0315)


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


_compiled_ns = None


def newton_schulz(G: Tensor, steps: int) -> Tensor:
    """Compiled on CUDA (as the baseline), eager elsewhere."""
    global _compiled_ns
    if G.is_cuda:
        if _compiled_ns is None:
            _compiled_ns = torch.compile(zeropower_via_newtonschulz5)
        return _compiled_ns(G, steps=steps)
    return zeropower_via_newtonschulz5(G, steps=steps)


class Muon(torch.optim.Optimizer):
    """Nesterov momentum, then the orthogonalised update; ranks split the matrices and all-reduce."""

    def __init__(self, params, lr: float, momentum: float, backend_steps: int, nesterov: bool = True) -> None:
        super().__init__(params, dict(lr=lr, momentum=momentum, backend_steps=backend_steps, nesterov=nesterov))

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
                    g = newton_schulz(g, steps=group["backend_steps"])
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


def split_params(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """The baseline's grouping: ``embed``, ``head``, ``matrix`` (Muon) and ``scalar`` (Adam).

    Every parameter other than the embedding and the untied head is a Muon matrix when it is
    2-D and not a control tensor, else an Adam scalar (the baseline's rule for block params,
    applied to any parameter a technique adds). Shared parameters appear once.
    """
    groups: dict[str, list[nn.Parameter]] = {"embed": [], "head": [], "matrix": [], "scalar": []}
    for name, p in model.named_parameters():
        if name == "tok_emb.weight":
            groups["embed"].append(p)
        elif name == "lm_head.weight":
            groups["head"].append(p)
        elif p.ndim == 2 and not any(pat in name for pat in CONTROL_TENSOR_NAME_PATTERNS):
            groups["matrix"].append(p)
        elif p.numel() > 0:
            groups["scalar"].append(p)
    return groups


def build_optimizers(model: nn.Module, config: Config, fused: bool = False) -> tuple[list[torch.optim.Optimizer], Muon]:
    """Adam(embed), [Adam(head)], Muon(matrices), Adam(scalars), each group with a ``base_lr``."""
    g = split_params(model)
    adam = dict(betas=(config.beta1, config.beta2), eps=config.adam_eps, fused=fused)
    token_lr = config.tied_embed_lr if config.tie_embeddings else config.embed_lr
    opt_tok = torch.optim.Adam([{"params": g["embed"], "lr": token_lr, "base_lr": token_lr}], **adam)
    muon = Muon(g["matrix"], lr=config.matrix_lr, momentum=config.muon_momentum, backend_steps=config.muon_backend_steps)
    for group in muon.param_groups:
        group["base_lr"] = config.matrix_lr
    opt_scalar = torch.optim.Adam([{"params": g["scalar"], "lr": config.scalar_lr, "base_lr": config.scalar_lr}], **adam)
    optimizers: list[torch.optim.Optimizer] = [opt_tok, muon, opt_scalar]
    if g["head"]:
        optimizers.insert(1, torch.optim.Adam([{"params": g["head"], "lr": config.head_lr, "base_lr": config.head_lr}], **adam))
    return optimizers, muon
