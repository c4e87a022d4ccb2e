"""The challenge baseline's GPT, read top to bottom.

RMSNorm, RoPE, grouped-query attention with a learned per-head q gain, a relu² MLP,
pre-norm blocks with ``resid_mix`` (a learned mix of the stream and the embedding
``x0``) and learned branch scales, U-Net encoder/decoder halves joined by learned
skip weights, tied embeddings and a tanh logit softcap. All initialisation is in
``GPT._init_weights``.

Techniques change the model only through the build hooks, resolved once when the run is
built: modules on the raw embeddings (``build_embed``), taps inside every attention
(``attention_taps``), the attention/MLP/block modules (``build_attention``, ``activation``,
``build_mlp``, ``build_block``, ``wrap_block``), the order the blocks run in
(``layer_orders``), how a skip joins the decoder (``skip_merge``), the stack that runs them
(``build_stack``), and the plain forward functions of ``ForwardFns``.

A forward may carry ``segments`` (a document index per position, from the loader) and
``cu_seqlens``: attention then runs inside pieces of documents (``golfplan.core.model.attention``). An
evaluation strategy may give ``token_losses`` test-time adapters (``lora``), one set per layer run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from golfplan.core.model.attention import attend
from golfplan.core.config import Config
from golfplan.core.state import ForwardContext

# Small "control" tensors: trained with Adam, kept in fp32, stored unquantised in the artifact.
CONTROL_TENSOR_NAME_PATTERNS = (
    "attn_scale", "attn_scales", "mlp_scale", "mlp_scales", "resid_mix", "resid_mixes",
    "q_gain", "skip_weight", "skip_weights",
)


class RMSNorm(nn.Module):
    """RMS normalisation; ``scale`` (a constant, 1 by default) multiplies the output (LN scale)."""

    def __init__(self, eps: float | None = None, scale: float = 1.0) -> None:
        super().__init__()
        self.eps = eps
        self.scale = scale

    def forward(self, x: Tensor) -> Tensor:
        y = F.rms_norm(x, (x.size(-1),), eps=self.eps)
        return y * self.scale if self.scale != 1.0 else y


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
    """RoPE tables for the first ``dim`` dimensions of a head (all of them by default)."""

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


def apply_rotary_emb(x: Tensor, cos: Tensor, sin: Tensor, rope_dims: int = 0) -> Tensor:
    """Rotate the first ``rope_dims`` dims of each head (0: all); the rest pass through."""
    if 0 < rope_dims < x.size(-1):
        return torch.cat((apply_rotary_emb(x[..., :rope_dims], cos, sin), x[..., rope_dims:]), dim=-1)
    half = x.size(-1) // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat((x1 * cos + x2 * sin, x1 * (-sin) + x2 * cos), dim=-1)


class AttentionTap(nn.Module):
    """A module inside every attention (``attention_taps``); override what you need.

    ``qkv`` sees q (batch, heads, seq, head_dim) and k, v (batch, kv_heads, seq, head_dim)
    after RoPE and the q gain, just before attention; ``out`` sees the per-head outputs y
    (batch, heads, seq, head_dim) before they are merged and projected. ``x`` is the
    attention's (normed) input, ``ctx`` the forward context (may be None outside a model
    forward).
    """

    def qkv(self, q: Tensor, k: Tensor, v: Tensor, x: Tensor, ctx: ForwardContext | None) -> tuple[Tensor, Tensor, Tensor]:
        return q, k, v

    def out(self, y: Tensor, q: Tensor, k: Tensor, v: Tensor, x: Tensor, ctx: ForwardContext | None) -> Tensor:
        return y


def adapted(ctx: ForwardContext | None, point: str, x: Tensor, y: Tensor) -> Tensor:
    """``y`` plus the test-time adapter of ``point`` at the layer running now (``ctx.extras["lora"]``,
    given to ``GPT.token_losses``; ``ctx.extras["layer"]`` counts the layers run), or ``y``."""
    lora = ctx.extras.get("lora") if ctx is not None else None
    delta = lora(point, ctx.extras["layer"], x) if lora is not None else None
    return y if delta is None else y + delta


class CausalSelfAttention(nn.Module):
    """Grouped-query attention: ``num_kv_heads`` key/value heads shared by ``num_heads`` query heads."""

    def __init__(self, config: Config, taps: list[nn.Module] | None = None) -> None:
        super().__init__()
        dim = config.model_dim
        self.num_heads = config.num_heads
        self.num_kv_heads = config.num_kv_heads
        self.head_dim = dim // config.num_heads
        self.rope_dims = config.rope_dims if 0 < config.rope_dims < self.head_dim else 0
        kv_dim = self.num_kv_heads * self.head_dim
        self.c_q = CastedLinear(dim, dim, bias=False)
        self.c_k = CastedLinear(dim, kv_dim, bias=False)
        self.c_v = CastedLinear(dim, kv_dim, bias=False)
        self.proj = zero_init(CastedLinear(dim, dim, bias=False))
        self.q_gain = nn.Parameter(torch.full((self.num_heads,), config.qk_gain_init, dtype=torch.float32))
        self.rotary = Rotary(self.rope_dims or self.head_dim, base=config.rope_base)
        self.taps = nn.ModuleList(taps or [])
        self.max_len = config.train_seq_len  # the longest piece of a document attention sees

    def heads(self, x: Tensor, ctx: ForwardContext | None = None) -> Tensor:
        """Per-head attention outputs, shape (batch, num_heads, seq, head_dim)."""
        bsz, seqlen, _ = x.shape
        if ctx is not None and "lora" in ctx.extras:  # one layer more has run: its adapters
            ctx.extras["layer"] += 1
        q = adapted(ctx, "q", x, self.c_q(x)).reshape(bsz, seqlen, self.num_heads, self.head_dim).transpose(1, 2)
        k = adapted(ctx, "k", x, self.c_k(x)).reshape(bsz, seqlen, self.num_kv_heads, self.head_dim).transpose(1, 2)
        v = adapted(ctx, "v", x, self.c_v(x)).reshape(bsz, seqlen, self.num_kv_heads, self.head_dim).transpose(1, 2)
        q = F.rms_norm(q, (q.size(-1),))
        k = F.rms_norm(k, (k.size(-1),))
        cos, sin = self.rotary(seqlen, x.device, q.dtype)
        q = apply_rotary_emb(q, cos, sin, self.rope_dims)
        k = apply_rotary_emb(k, cos, sin, self.rope_dims)
        q = q * self.q_gain.to(dtype=q.dtype)[None, :, None, None]
        for tap in self.taps:
            q, k, v = tap.qkv(q, k, v, x, ctx)
        y = attend(q, k, v, ctx, self.max_len)
        for tap in self.taps:
            y = tap.out(y, q, k, v, x, ctx)
        return y

    def merge(self, y: Tensor) -> Tensor:
        bsz, _, seqlen, _ = y.shape
        return self.proj(y.transpose(1, 2).contiguous().reshape(bsz, seqlen, self.num_heads * self.head_dim))

    def forward(self, x: Tensor, ctx: ForwardContext | None = None) -> Tensor:
        return adapted(ctx, "o", x, self.merge(self.heads(x, ctx)))


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
    """The baseline's pre-norm block: x = mix(x, x0); x += s_a·attn(n(x)); x += s_m·mlp(n(x)).

    ``attn_out``/``mlp_out`` are the two branches as they enter the residual, from the stream
    (a stack with several residual lanes calls them separately); ``attn_branch``/``mlp_branch``
    the same from an already normed input. ``attn_post``/``mlp_post`` act on a branch's output
    before its scale (identities in the baseline; sandwich norm puts norms there)."""

    def __init__(self, config: Config, attn: nn.Module, mlp: nn.Module) -> None:
        super().__init__()
        dim = config.model_dim
        self.attn_norm = RMSNorm()
        self.mlp_norm = RMSNorm()
        self.attn = attn
        self.mlp = mlp
        self.attn_post: nn.Module = nn.Identity()
        self.mlp_post: nn.Module = nn.Identity()
        self.attn_scale = nn.Parameter(torch.ones(dim, dtype=torch.float32))
        self.mlp_scale = nn.Parameter(torch.ones(dim, dtype=torch.float32))
        self.resid_mix = nn.Parameter(torch.stack((torch.ones(dim), torch.zeros(dim))).float())

    def mix(self, x: Tensor, x0: Tensor) -> Tensor:
        mix = self.resid_mix.to(dtype=x.dtype)
        return mix[0][None, None, :] * x + mix[1][None, None, :] * x0

    def scaled(self, scale: Tensor, y: Tensor, ctx: ForwardContext) -> Tensor:
        """A branch output on its way into the residual: the ``on_branch`` functions, then the scale."""
        return scale.to(dtype=y.dtype)[None, None, :] * ctx.model.branch(y, ctx)

    def attn_branch(self, h: Tensor, ctx: ForwardContext) -> Tensor:
        return self.scaled(self.attn_scale, self.attn_post(self.attn(h, ctx)), ctx)

    def mlp_branch(self, h: Tensor, ctx: ForwardContext) -> Tensor:
        return self.scaled(self.mlp_scale, self.mlp_post(adapted(ctx, "mlp", h, self.mlp(h))), ctx)

    def attn_out(self, x: Tensor, ctx: ForwardContext) -> Tensor:
        return self.attn_branch(self.attn_norm(x), ctx)

    def mlp_out(self, x: Tensor, ctx: ForwardContext) -> Tensor:
        return self.mlp_branch(self.mlp_norm(x), ctx)

    def forward(self, x: Tensor, x0: Tensor, ctx: ForwardContext) -> Tensor:
        x = self.mix(x, x0)
        x = x + self.attn_out(x, ctx)
        return x + self.mlp_out(x, ctx)


# ---- the stack: which blocks run in which order, and how the U-Net skips join ----------

LayerOrder = tuple[tuple[int, ...], tuple[int, ...]]  # (encoder block indices, decoder block indices)


def unet_order(config: Config) -> LayerOrder:
    """The baseline's order: the first ``num_encoder_layers`` blocks, then the rest."""
    n_enc = config.num_encoder_layers
    return tuple(range(n_enc)), tuple(range(n_enc, config.num_layers))


class SkipAdd(nn.Module):
    """The baseline's skip: x + w_i · skip."""

    def forward(self, x: Tensor, skip: Tensor, weight: Tensor, i: int) -> Tensor:
        return x + weight.to(dtype=x.dtype)[None, None, :] * skip


class Stack(nn.Module):
    """Runs the blocks in the active layer order: each encoder block's output is kept, and the
    decoder blocks take them back, last first, through ``merge`` (the U-Net skips).

    ``orders`` maps a name to a (encoder, decoder) order; ``active`` names the one in use. A
    technique may switch ``active`` between steps (on the host: no sync); every order is primed
    before the timed loop, so a switch costs no recompilation there.
    """

    def __init__(self, orders: dict[str, LayerOrder], merge: nn.Module) -> None:
        super().__init__()
        self.orders = {name: (tuple(e), tuple(d)) for name, (e, d) in orders.items()}
        self.active = next(iter(self.orders))
        self.merge = merge

    @property
    def num_skips(self) -> int:
        return max(min(len(e), len(d)) for e, d in self.orders.values())

    def forward(self, model: "GPT", x: Tensor, x0: Tensor, ctx: ForwardContext) -> Tensor:
        encoder, decoder = self.orders[self.active]
        skips: list[Tensor] = []
        for i in encoder:
            x = model.blocks[i](x, x0, ctx)
            skips.append(x)
        for j, i in enumerate(decoder):
            if skips:
                x = self.merge(x, skips.pop(), model.skip_weights[j], j)
            x = model.blocks[i](x, x0, ctx)
        return x


# ---- the model --------------------------------------------------------------------------


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


@dataclass
class Parts:
    """What the build hooks made, handed to ``GPT`` (the defaults are the baseline's)."""

    blocks: list[nn.Module] | None = None
    embeds: list[nn.Module] = field(default_factory=list)
    stack: Stack | None = None
    fns: ForwardFns | None = None


class GPT(nn.Module):
    def __init__(self, config: Config, blocks: list[nn.Module] | None = None, fns: ForwardFns | None = None,
                 parts: Parts | None = None) -> None:
        super().__init__()
        if config.logit_softcap <= 0.0:
            raise ValueError(f"logit_softcap must be positive, got {config.logit_softcap}")
        parts = parts or Parts(blocks=blocks, fns=fns)
        self.config = config
        self.tie_embeddings = config.tie_embeddings
        self.logit_softcap = config.logit_softcap
        self.fns = parts.fns or ForwardFns()
        self.tok_emb = nn.Embedding(config.vocab_size, config.model_dim)
        self.embeds = nn.ModuleList(parts.embeds)
        blocks = parts.blocks
        if blocks is None:
            blocks = [Block(config, CausalSelfAttention(config), MLP(config)) for _ in range(config.num_layers)]
        self.blocks = nn.ModuleList(blocks)
        self.stack = parts.stack or Stack({"default": unet_order(config)}, SkipAdd())
        first_encoder, first_decoder = self.stack.orders[self.stack.active]
        self.num_encoder_layers, self.num_decoder_layers = len(first_encoder), len(first_decoder)
        self.num_skip_weights = self.stack.num_skips
        self.skip_weights = nn.Parameter(torch.ones(self.num_skip_weights, config.model_dim, dtype=torch.float32))
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
        for module in self.embeds:  # before the norm, in every forward (training, evaluation, scoring)
            x = module(x, ctx)
        x = F.rms_norm(x, (x.size(-1),))
        if ctx.training:
            for f in self.fns.embed:
                x = f(x, ctx)
        x = self.stack(self, x, x, ctx)
        return self.final_norm(x).reshape(-1, x.size(-1))

    def logits(self, h: Tensor, delta: Tensor | None = None) -> Tensor:
        proj = F.linear(h, self.tok_emb.weight) if self.lm_head is None else self.lm_head(h)
        proj = proj + delta if delta is not None else proj  # a head adapter (LoRA TTT), before the softcap
        return self.logit_softcap * torch.tanh(proj / self.logit_softcap)

    def context(self, input_ids: Tensor, target_ids: Tensor, training: bool, segments: Tensor | None,
                cu_seqlens: Tensor | None) -> ForwardContext:
        ctx = ForwardContext(self, self.progress, input_ids, target_ids, training, segments)
        if cu_seqlens is not None:
            ctx.extras["cu_seqlens"] = cu_seqlens
        return ctx

    def forward(self, input_ids: Tensor, target_ids: Tensor, segments: Tensor | None = None,
                cu_seqlens: Tensor | None = None) -> Tensor:
        ctx = self.context(input_ids, target_ids, self.training, segments, cu_seqlens)
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

    def token_losses(self, input_ids: Tensor, target_ids: Tensor, segments: Tensor | None = None,
                     cu_seqlens: Tensor | None = None, lora: Callable | None = None) -> Tensor:
        """Per-token cross-entropy (batch, seq) under the current mode, no training functions: what
        evaluation strategies score with. ``lora(point, layer, x)`` gives test-time adapters' deltas
        (or None): points ``q``, ``k``, ``v`` (the attention's input projections), ``o`` (the attention
        as a whole) and ``mlp`` (the MLP) of every layer run, counted from 0 in the order they run (a
        block that runs twice is two layers), and ``head`` (layer 0, before the softcap)."""
        ctx = self.context(input_ids, target_ids, False, segments, cu_seqlens)
        if lora is not None:
            ctx.extras.update(lora=lora, layer=-1)
        h = self.hidden(input_ids, ctx)
        delta = lora("head", 0, h.view(*input_ids.shape, -1)) if lora is not None else None
        logits = self.logits(h, delta.reshape(h.size(0), -1) if delta is not None else None)
        return F.cross_entropy(logits.float(), target_ids.reshape(-1), reduction="none").view_as(target_ids)


def restore_low_dim_params_to_fp32(module: nn.Module) -> None:
    """After a bf16 cast: vectors, scalars and control tensors go back to fp32 (as the baseline)."""
    with torch.no_grad():
        for name, param in module.named_parameters():
            if (param.ndim < 2 or any(p in name for p in CONTROL_TENSOR_NAME_PATTERNS)) and param.dtype != torch.float32:
                param.data = param.data.float()


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def layer_at(fraction: float, num_layers: int) -> int:
    """The block index at ``fraction`` of the depth (rounded), for layer-indexed settings that
    must still mean something when a profile shrinks the depth: 3/11 of 11 layers is layer 3."""
    return min(max(int(math.floor(fraction * num_layers + 0.5)), 0), num_layers - 1)
