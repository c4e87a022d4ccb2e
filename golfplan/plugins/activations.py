"""MLP activations: squared ReLU (the baseline), leaky-ReLU², GELU², SiLU², and SwiGLU.

The squared family keeps the baseline MLP (``fc`` -> activation -> zero-init ``proj``)
and only swaps the function:

    relu2(x)       = relu(x)²
    leaky_relu2(x) = leaky_relu(x, slope)²
    gelu2(x)       = gelu(x)²          (exact, erf-based GELU)
    silu2(x)       = (x·sigmoid(x))²

SwiGLU replaces the MLP with the Llama gated form ``proj(silu(gate(x)) * up(x))``:
three matrices instead of two. Its hidden width is ``mlp_hidden`` times
``hidden_scale`` (default 1.0: the baseline's hidden width, so 1.5x the MLP's
parameters and compute, which matches the seed's slower A3/A4 runs; 2/3 gives the
parameter-matched Llama sizing). All five share the ``activation`` slot.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from golfplan.core.config import Config
from golfplan.core.model.gpt import CastedLinear, relu2, zero_init
from golfplan.core.technique import Float, Technique, hookimpl


def leaky_relu2(x: Tensor, slope: float = 0.01) -> Tensor:
    return F.leaky_relu(x, negative_slope=slope).square()


def gelu2(x: Tensor) -> Tensor:
    return F.gelu(x).square()


def silu2(x: Tensor) -> Tensor:
    return F.silu(x).square()


class ReLU2(Technique):
    name = "relu2"
    summary = "squared ReLU MLP activation (the baseline's, made an explicit choice)"
    slot = "activation"
    seed_refs = ("E6",)
    seed_result = "E6: ReLU² on the 1/8 split 1.5413 (-0.070, 267 steps) vs SiLU² 1.5377: SiLU² better"

    @hookimpl
    def activation(self, config):
        return relu2


class LeakyReLU2(Technique):
    name = "leaky_relu2"
    summary = "squared leaky ReLU MLP activation (negative slope a param)"
    slot = "activation"
    params = {"slope": Float(0.01, 0.0, 0.5, help="negative slope before squaring")}
    seed_refs = ("A1", "A2")
    seed_result = "A1: 1.5820 (-0.030, worse than relu²); A2 on cosine: 1.6132 (+0.002, neutral)"

    @hookimpl
    def activation(self, config):
        slope = self.p.slope

        def act(x: Tensor) -> Tensor:
            return leaky_relu2(x, slope)

        return act


class GELU2(Technique):
    name = "gelu2"
    summary = "squared GELU MLP activation"
    slot = "activation"
    seed_refs = ("A5",)
    seed_result = "A5: 1.5779 (-0.034, 240 steps, competitive)"

    @hookimpl
    def activation(self, config):
        return gelu2


class SiLU2(Technique):
    name = "silu2"
    summary = "squared SiLU MLP activation (the seed's best activation)"
    slot = "activation"
    seed_refs = ("A6",)
    seed_result = "A6: 1.5743 (-0.037, ties prev best); B4 with parallel: 1.5527 (-0.059, new best)"

    @hookimpl
    def activation(self, config):
        return silu2


class SwiGLUMLP(nn.Module):
    """Gated MLP: ``proj(silu(gate(x)) * up(x))``, the output projection zero-initialised."""

    def __init__(self, config: Config, hidden: int) -> None:
        super().__init__()
        self.gate = CastedLinear(config.model_dim, hidden, bias=False)
        self.up = CastedLinear(config.model_dim, hidden, bias=False)
        self.proj = zero_init(CastedLinear(hidden, config.model_dim, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(F.silu(self.gate(x)) * self.up(x))


def swiglu_hidden(config: Config, hidden_scale: float) -> int:
    return max(1, int(round(hidden_scale * config.mlp_hidden)))


class SwiGLU(Technique):
    name = "swiglu"
    summary = "SwiGLU gated MLP (three matrices, hidden = mlp_hidden x hidden_scale)"
    slot = "activation"
    params = {"hidden_scale": Float(1.0, 0.5, 1.5, help="hidden width / mlp_hidden (2/3: parameter-matched)")}
    seed_refs = ("A3", "A4")
    seed_result = "A3: 1.5798 (-0.032, 226 steps vs 240, slower); A4 on cosine: 1.6053 (-0.006, slight help but slow)"

    @hookimpl
    def build_mlp(self, config, layer_idx, activation):
        return SwiGLUMLP(config, swiglu_hidden(config, self.p.hidden_scale))

