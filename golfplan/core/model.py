"""The challenge baseline's GPT, read top to bottom.

RMSNorm, RoPE, grouped-query attention with a learned per-head q gain, a relu² MLP,
pre-norm blocks with ``resid_mix`` (a learned mix of the stream and the embedding
``x0``) and learned branch scales, U-Net encoder/decoder halves joined by learned
skip weights, tied embeddings and a tanh logit softcap. All initialisation is in
``GPT._init_weights``.

Techniques change the model only through the build hooks (``build_attention``,
``activation``, ``build_mlp``, ``build_block``, ``wrap_block``) and the forward
functions of ``ForwardFns``, which are resolved once when the run is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from golfplan.core.config import Config
from golfplan.core.state import ForwardContext

# Small "control" tensors: trained with Adam, kept in fp32, stored unquantised in the artifact.
CONTROL_TENSOR_NAME_PATTERNS = (
    "attn_scale", "attn_scales", "mlp_scale", "mlp_scales", "resid_mix", "resid_mixes",
    "q_gain", "skip_weight", "skip_weights",
)


class RMSNorm(nn.Module):
    def __init__(self, eps: float | None = None) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        return F.rms_norm(x, (x.size(-1),), eps=self.eps)


class CastedLinear(nn.Linear):
    """A linear layer whose fp32 weight is cast to the activations' dtype (bf16 under autocast)."""

    def forward(self, x: Tensor) -> Tensor:
        bias = self.bias.to(x.dtype) if self.bias is not None else None
        return F.linear(x, self.weight.to(x.dtype), bias)


def zero_init(linear: nn.Linear) -> nn.Linear:
    """Mark an output projection to be zero-initialised by ``GPT._init_weights``."""
    linear._zero_init = True
    return linear


class Rotary(nn.Module):
    def __init__(self, dim: int, base: float = 10000.0) -> None:
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self._seq_len_cached = 0
        self._cos_cached: Tensor | None = None
        self._sin_cached: Tensor | None = None

    def forward(self, seq_len: int, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        if self._cos_cached is None or self._seq_len_cached != seq_len or self._cos_cached.device != device:
            t = torch.arange(seq_len, device=device, dtype=self.inv_freq.dtype)
            freqs = torch.outer(t, self.inv_freq.to(device))
            self._cos_cached = freqs.cos()[None, None, :, :]
            self._sin_cached = freqs.sin()[None, None, :, :]
            self._seq_len_cached = seq_len
        return self._cos_cached.to(dtype=dtype), self._sin_cached.to(dtype=dtype)


def apply_rotary_emb(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    half = x.size(-1) // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat((x1 * cos + x2 * sin, x1 * (-sin) + x2 * cos), dim=-1)


class CausalSelfAttention(nn.Module):
    """Grouped-query attention: ``num_kv_heads`` key/value heads shared by ``num_heads`` query heads."""

    def __init__(self, config: Config) -> None:
        super().__init__()
        dim = config.model_dim
        self.num_heads = config.num_heads
        self.num_kv_heads = config.num_kv_heads
        self.head_dim = dim // config.num_heads
        kv_dim = self.num_kv_heads * self.head_dim
        self.c_q = CastedLinear(dim, dim, bias=False)
        self.c_k = CastedLinear(dim, kv_dim, bias=False)
        self.c_v = CastedLinear(dim, kv_dim, bias=False)
        self.proj = zero_init(CastedLinear(dim, dim, bias=False))
        self.q_gain = nn.Parameter(torch.full((self.num_heads,), config.qk_gain_init, dtype=torch.float32))
        self.rotary = Rotary(self.head_dim, base=config.rope_base)

    def heads(self, x: Tensor) -> Tensor:
        """Per-head attention outputs, shape (batch, num_heads, seq, head_dim)."""
        bsz, seqlen, _ = x.shape
        q = self.c_q(x).reshape(bsz, seqlen, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.c_k(x).reshape(bsz, seqlen, self.num_kv_heads, self.head_dim).transpose(1, 2)
        v = self.c_v(x).reshape(bsz, seqlen, self.num_kv_heads, self.head_dim).transpose(1, 2)
        q = F.rms_norm(q, (q.size(-1),))
        k = F.rms_norm(k, (k.size(-1),))
        cos, sin = self.rotary(seqlen, x.device, q.dtype)
        q = apply_rotary_emb(q, cos, sin)
        k = apply_rotary_emb(k, cos, sin)
        q = q * self.q_gain.to(dtype=q.dtype)[None, :, None, None]
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=None, is_causal=True, enable_gqa=(self.num_kv_heads != self.num_heads)
        )

    def merge(self, y: Tensor) -> Tensor:
        bsz, _, seqlen, _ = y.shape
        return self.proj(y.transpose(1, 2).contiguous().reshape(bsz, seqlen, self.num_heads * self.head_dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.merge(self.heads(x))


def relu2(x: Tensor) -> Tensor:
    return torch.relu(x).square()


class MLP(nn.Module):
    def __init__(self, config: Config, activation: Callable[[Tensor], Tensor] = relu2) -> None:
        super().__init__()
        self.fc = CastedLinear(config.model_dim, config.mlp_hidden, bias=False)
        self.proj = zero_init(CastedLinear(config.mlp_hidden, config.model_dim, bias=False))
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(self.activation(self.fc(x)))


class Block(nn.Module):
    """The baseline's pre-norm block: x = mix(x, x0); x += s_a·attn(n(x)); x += s_m·mlp(n(x))."""

    def __init__(self, config: Config, attn: nn.Module, mlp: nn.Module) -> None:
        super().__init__()
        dim = config.model_dim
        self.attn_norm = RMSNorm()
        self.mlp_norm = RMSNorm()
        self.attn = attn
        self.mlp = mlp
        self.attn_scale = nn.Parameter(torch.ones(dim, dtype=torch.float32))
        self.mlp_scale = nn.Parameter(torch.ones(dim, dtype=torch.float32))
        self.resid_mix = nn.Parameter(torch.stack((torch.ones(dim), torch.zeros(dim))).float())

    def mix(self, x: Tensor, x0: Tensor) -> Tensor:
        mix = self.resid_mix.to(dtype=x.dtype)
        return mix[0][None, None, :] * x + mix[1][None, None, :] * x0

    def scaled(self, scale: Tensor, y: Tensor, ctx: ForwardContext) -> Tensor:
        """A branch output on its way into the residual: the ``on_branch`` functions, then the scale."""
        return scale.to(dtype=y.dtype)[None, None, :] * ctx.model.branch(y, ctx)

    def forward(self, x: Tensor, x0: Tensor, ctx: ForwardContext) -> Tensor:
        x = self.mix(x, x0)
        x = x + self.scaled(self.attn_scale, self.attn(self.attn_norm(x)), ctx)
        x = x + self.scaled(self.mlp_scale, self.mlp(self.mlp_norm(x)), ctx)
        return x


def cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    return F.cross_entropy(logits, targets, reduction="none")


def mean_loss(token_loss: Tensor, ctx: ForwardContext) -> Tensor:
    return token_loss.mean()


@dataclass
class ForwardFns:
    """Plain functions the forward calls, resolved from the forward hooks at build time."""

    batch: list[Callable] = field(default_factory=list)
    embed: list[Callable] = field(default_factory=list)
    branch: list[Callable] = field(default_factory=list)
    token_loss: Callable = cross_entropy
    reduce_loss: Callable = mean_loss
    loss_terms: list[Callable] = field(default_factory=list)


class GPT(nn.Module):
    def __init__(self, config: Config, blocks: list[nn.Module] | None = None, fns: ForwardFns | None = None) -> None:
        super().__init__()
        if config.logit_softcap <= 0.0:
            raise ValueError(f"logit_softcap must be positive, got {config.logit_softcap}")
        self.config = config
        self.tie_embeddings = config.tie_embeddings
        self.logit_softcap = config.logit_softcap
        self.fns = fns or ForwardFns()
        self.tok_emb = nn.Embedding(config.vocab_size, config.model_dim)
        self.num_encoder_layers = config.num_encoder_layers
        self.num_decoder_layers = config.num_layers - self.num_encoder_layers
        self.num_skip_weights = min(self.num_encoder_layers, self.num_decoder_layers)
        self.skip_weights = nn.Parameter(torch.ones(self.num_skip_weights, config.model_dim, dtype=torch.float32))
        if blocks is None:
            blocks = [Block(config, CausalSelfAttention(config), MLP(config)) for _ in range(config.num_layers)]
        self.blocks = nn.ModuleList(blocks)
        self.final_norm = RMSNorm()
        self.lm_head = None if config.tie_embeddings else zero_init(
            CastedLinear(config.model_dim, config.vocab_size, bias=False))
        # Training progress in [0, 1], updated in place every step (read by forward hooks, never recompiles).
        self.register_buffer("progress", torch.zeros((), dtype=torch.float32), persistent=False)
        self._init_weights()

    def _init_weights(self) -> None:
        if self.tie_embeddings:
            nn.init.normal_(self.tok_emb.weight, mean=0.0, std=self.config.tied_embed_init_std)
        for module in self.modules():
            if isinstance(module, nn.Linear) and getattr(module, "_zero_init", False):
                nn.init.zeros_(module.weight)

    def branch(self, y: Tensor, ctx: ForwardContext) -> Tensor:
        if ctx.training:
            for f in self.fns.branch:
                y = f(y, ctx)
        return y

    def hidden(self, input_ids: Tensor, ctx: ForwardContext) -> Tensor:
        """Final normed hidden states, shape (batch*seq, model_dim)."""
        x = self.tok_emb(input_ids)
        x = F.rms_norm(x, (x.size(-1),))
        if ctx.training:
            for f in self.fns.embed:
                x = f(x, ctx)
        x0 = x
        skips: list[Tensor] = []
        for i in range(self.num_encoder_layers):
            x = self.blocks[i](x, x0, ctx)
            skips.append(x)
        for i in range(self.num_decoder_layers):
            if skips:
                x = x + self.skip_weights[i].to(dtype=x.dtype)[None, None, :] * skips.pop()
            x = self.blocks[self.num_encoder_layers + i](x, x0, ctx)
        return self.final_norm(x).reshape(-1, x.size(-1))

    def logits(self, h: Tensor) -> Tensor:
        proj = F.linear(h, self.tok_emb.weight) if self.lm_head is None else self.lm_head(h)
        return self.logit_softcap * torch.tanh(proj / self.logit_softcap)

    def forward(self, input_ids: Tensor, target_ids: Tensor) -> Tensor:
        ctx = ForwardContext(self, self.progress, input_ids, target_ids, self.training)
        if self.training:
            for f in self.fns.batch:
                input_ids, target_ids = f(input_ids, target_ids, ctx)
            ctx.input_ids, ctx.targets = input_ids, target_ids
        logits = self.logits(self.hidden(input_ids, ctx))
        targets = target_ids.reshape(-1)
        if not self.training:
            return F.cross_entropy(logits.float(), targets, reduction="mean")
        token_loss = self.fns.token_loss(logits.float(), targets)
        ctx.logits, ctx.targets, ctx.token_loss = logits, targets, token_loss
        loss = self.fns.reduce_loss(token_loss, ctx)
        for term in self.fns.loss_terms:
            loss = loss + term(ctx)
        return loss


def restore_low_dim_params_to_fp32(module: nn.Module) -> None:
    """After a bf16 cast: vectors, scalars and control tensors go back to fp32 (as the baseline)."""
    with torch.no_grad():
        for name, param in module.named_parameters():
            if (param.ndim < 2 or any(p in name for p in CONTROL_TENSOR_NAME_PATTERNS)) and param.dtype != torch.float32:
                param.data = param.data.float()


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
