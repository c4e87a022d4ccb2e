"""What the export chain stores per tensor (``QTensor``), the tensor groups, and the scale rules.

A ``QTensor`` is one stored tensor in a format the loader decodes without knowing who made it:

- ``int``: integer codes (an int8 container, ``bits`` wide: codes lie in [-2^(b-1), 2^(b-1) - 1])
  times fp16/fp32 scales, one per row (``scale`` of shape (rows,)), one per tensor (a 0-d scale)
  or one per ``group_size`` consecutive elements of the flattened tensor; optionally plus a
  low-rank correction ``A @ B`` whose factors are QTensors themselves (LQER), and optionally
  with its code rows stored in another order (``perm``: stored row i is row ``perm[i]``, a
  compressor's row sort);
- ``float``: the tensor stored as float (fp16, or fp32), restored to ``dtype`` on load;
- ``raw``: a non-float tensor, stored as it is.

``method`` records which quantizer made it (the artifact's provenance); ``rule`` how its scales
were chosen (``max``: from the row's maximum or a percentile of |w|; ``sd``: a multiple of the
row's standard deviation, SDClip), which the budget estimate uses to pick a measured
compression figure.

Tensor groups (``tensor_group``), the core rule every quantizer sees, by role and not by size, so
a shrunken profile quantizes the same tensors the full model does:

1. ``other``  non-float tensors (stored raw; they never reach a quantizer);
2. ``gate``   2-D float tensors of at most 65,536 elements whose last name part contains "gate"
              (the record's ``attn_gate_w``);
3. ``embed``  2-D tensors of the token embedding, an untied head and ``build_embed`` modules
              (names starting ``tok_emb.``, ``lm_head.``, ``embeds.``);
4. ``attn``   2-D tensors with ``.attn.`` in their name (q, k, v, output projections);
5. ``mlp``    2-D tensors with ``.mlp.`` in their name;
6. ``small``  every other float tensor of at most 65,536 elements, and the control tensors
              (``CONTROL_TENSOR_NAME_PATTERNS``) of any size;
7. ``other``  what is left (large float tensors of no known role).

Control tensors are ``small`` even when 2-D (``resid_mix``), before rules 3-5.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from golfplan.core.model.gpt import CONTROL_TENSOR_NAME_PATTERNS

SMALL_MAX_NUMEL = 65_536
GROUPS = ("attn", "mlp", "embed", "gate", "small", "other")
EMBED_PREFIXES = ("tok_emb.", "lm_head.", "embeds.")
SCALE_FLOOR = 1e-10


def tensor_group(name: str, t: Tensor) -> str:
    """The tensor's group by the core rule of the module docstring."""
    if not t.is_floating_point():
        return "other"
    leaf = name.rsplit(".", 1)[-1] if not name.endswith(".weight") else name.rsplit(".", 2)[-2]
    if t.ndim == 2 and t.numel() <= SMALL_MAX_NUMEL and "gate" in leaf:
        return "gate"
    if any(p in name for p in CONTROL_TENSOR_NAME_PATTERNS):
        return "small"
    if t.ndim == 2:
        if name.startswith(EMBED_PREFIXES):
            return "embed"
        if ".attn." in name:
            return "attn"
        if ".mlp." in name:
            return "mlp"
    return "small" if t.numel() <= SMALL_MAX_NUMEL else "other"


def max_code(bits: int) -> int:
    """The largest code magnitude of a symmetric ``bits``-wide grid: 31 for int6, 127 for int8."""
    return 2 ** (bits - 1) - 1


@dataclass
class QTensor:
    """One stored tensor of the artifact (see the module docstring)."""

    kind: str  # int | float | raw
    data: Tensor
    scale: Tensor | None = None
    bits: int = 0
    group_size: int = 0  # int: scales per group of this many flattened elements (0: per row / per tensor)
    rule: str = ""  # int: how the scales were chosen: max | sd
    dtype: str = ""  # the dtype to restore on load ("" = as stored)
    method: str = ""  # who made it
    group: str = ""  # its tensor group (set by the chain)
    lowrank: tuple[QTensor, QTensor] | None = None  # W += A @ B
    perm: Tensor | None = None  # stored code row i is row perm[i]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    def dequantize(self) -> Tensor:
        """The tensor this stands for (on the CPU)."""
        if self.kind != "int":
            out = self.data.detach().to("cpu")
            return out.to(getattr(torch, self.dtype)).contiguous() if self.dtype else out.contiguous()
        q = self.data.float()
        if self.perm is not None:
            q = q[torch.argsort(self.perm.long())]
        s = self.scale.float()
        if s.ndim == 0:
            w = q * s
        elif self.group_size:
            w = (q.reshape(-1, self.group_size) * s.view(-1, 1)).reshape(q.shape)
        else:
            w = q * s.view(q.shape[0], *([1] * (q.ndim - 1)))
        if self.lowrank is not None:
            a, b = self.lowrank
            w = w + a.dequantize().float() @ b.dequantize().float()
        return w.to(getattr(torch, self.dtype or "float32")).contiguous()

    def stored_bytes(self) -> int:
        """Bytes of the payload before compression (codes take one byte each); works on meta tensors."""
        n = self.data.numel() * self.data.element_size()
        if self.scale is not None:
            n += self.scale.numel() * self.scale.element_size()
        if self.perm is not None:
            n += self.perm.numel() * self.perm.element_size()
        if self.lowrank is not None:
            n += sum(f.stored_bytes() for f in self.lowrank)
        return n

    def to_record(self) -> dict[str, Any]:
        """Plain data for ``torch.save`` (loadable with ``weights_only=True``)."""
        rec: dict[str, Any] = {"kind": self.kind, "data": self.data, "scale": self.scale, "bits": self.bits,
                               "group_size": self.group_size, "rule": self.rule, "dtype": self.dtype,
                               "method": self.method, "group": self.group, "perm": self.perm}
        rec["lowrank"] = [f.to_record() for f in self.lowrank] if self.lowrank is not None else None
        return rec

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> QTensor:
        low = rec.get("lowrank")
        fields = {k: rec.get(k, d) for k, d in (("scale", None), ("bits", 0), ("group_size", 0), ("rule", ""),
                                                ("dtype", ""), ("method", ""), ("group", ""), ("perm", None))}
        return cls(rec["kind"], rec["data"], lowrank=tuple(cls.from_record(f) for f in low) if low else None, **fields)

    def cpu(self) -> QTensor:
        mv = lambda t: t.detach().to("cpu").contiguous() if t is not None and not t.is_meta else t
        low = tuple(f.cpu() for f in self.lowrank) if self.lowrank is not None else None
        return replace(self, data=mv(self.data), scale=mv(self.scale), perm=mv(self.perm), lowrank=low)


# ---- scale rules and integer grids (shared by the quantizer plugins) ------------------------


def sd_scale(w: Tensor, k: float, bits: int) -> Tensor:
    """SDClip: per-row scale k * std(row) / (2^(b-1) - 1), stored fp16 (values beyond k std clip)."""
    return (k * w.float().std(dim=1) / max_code(bits)).clamp_min(SCALE_FLOOR).to(torch.float16)


def rowmax_scale(w: Tensor, bits: int) -> Tensor:
    """Per-row scale max|row| / (2^(b-1) - 1), stored fp16 (nothing clips)."""
    return (w.float().abs().amax(dim=1) / max_code(bits)).clamp_min(SCALE_FLOOR).to(torch.float16)


def round_rows(w: Tensor, scale: Tensor, bits: int, low: int | None = None) -> Tensor:
    """Round-to-nearest codes of ``w`` on the per-row grid ``scale`` (int8 container), clamped to
    [low, 2^(b-1) - 1]; ``low`` defaults to the symmetric -(2^(b-1) - 1)."""
    top = max_code(bits)
    codes = torch.round(w.float() / scale.float().view(-1, *([1] * (w.ndim - 1))))
    return torch.clamp(codes, -top if low is None else low, top).to(torch.int8)


def int_rows(w: Tensor, scale: Tensor, bits: int, rule: str, method: str, low: int | None = None) -> QTensor:
    """A per-row integer QTensor of ``w`` rounded to nearest on ``scale``."""
    return QTensor("int", round_rows(w, scale, bits, low), scale, bits=bits, rule=rule,
                   dtype=str(w.dtype).removeprefix("torch."), method=method)


def absmax_rows(w: Tensor, bits: int, method: str) -> QTensor:
    """Per-row symmetric codes with scale max|row| / (2^(b-1) - 1) (the record's int8 gate rows)."""
    return int_rows(w, rowmax_scale(w, bits), bits, "max", method)


def as_float16(t: Tensor, method: str) -> QTensor:
    """The tensor kept as fp16, restored to its dtype on load."""
    return QTensor("float", t.detach().to(torch.float16).contiguous(), dtype=str(t.dtype).removeprefix("torch."),
                   method=method)


def int_groups(w: Tensor, bits: int, group_size: int, method: str, low: int | None = None,
               top_div: float | None = None) -> QTensor:
    """Codes of flattened ``w`` in groups of ``group_size`` elements, one fp16 scale per group:
    scale = max|group| / ``top_div`` (default 2^(b-1) - 1), codes clamped to [low, 2^(b-1) - 1]."""
    top = max_code(bits)
    g = w.float().reshape(-1, group_size)
    s = (g.abs().amax(dim=1) / (top_div or top)).clamp_min(SCALE_FLOOR).to(torch.float16)
    q = torch.clamp(torch.round(g / s.float().view(-1, 1)), -top if low is None else low, top)
    return QTensor("int", q.to(torch.int8).reshape(w.shape), s, bits=bits, group_size=group_size, rule="max",
                   dtype="float32", method=method)


def int_tensor(w: Tensor, bits: int, method: str, low: int | None = None, top_div: float | None = None) -> QTensor:
    """Codes of ``w`` with one fp16 scale for the whole tensor: max|w| / ``top_div``."""
    top = max_code(bits)
    s = (w.float().abs().amax() / (top_div or top)).clamp_min(SCALE_FLOOR).to(torch.float16)
    q = torch.clamp(torch.round(w.float() / s.float()), -top if low is None else low, top).to(torch.int8)
    return QTensor("int", q, s, bits=bits, rule="max", dtype="float32", method=method)


def planned(t: Tensor, bits: int, rule: str, method: str, group_size: int = 0) -> QTensor:
    """The QTensor a quantizer would store for ``t``, without data (meta tensors): what the budget
    estimate asks of a quantizer that is handed a meta tensor."""
    if bits >= 16:
        return QTensor("float", torch.empty(t.shape, dtype=torch.float16, device="meta"),
                       dtype=str(t.dtype).removeprefix("torch."), method=method)
    n_scales = t.numel() // group_size if group_size else t.shape[0]
    return QTensor("int", torch.empty(t.shape, dtype=torch.int8, device="meta"),
                   torch.empty(n_scales, dtype=torch.float16, device="meta"), bits=bits, group_size=group_size,
                   rule=rule, dtype=str(t.dtype).removeprefix("torch."), method=method)


# ---- the record's per-group layout (its mixed-width quantizers: mixed_bits, gptq) ---------------

RECORD_OTHER_K = 12.85  # the 1.0611 record's matrix_clip_sigmas: matrices outside attention/MLP/embedding


def group_width(p: Any, group: str) -> tuple[int, float]:
    """(bits, SDClip k) of a matrix group under a quantizer's ``attn_/mlp_/embed_`` ``bits`` and ``k``
    params; any other matrix takes attention's width and the record's k."""
    return {"attn": (p.attn_bits, p.attn_k), "mlp": (p.mlp_bits, p.mlp_k),
            "embed": (p.embed_bits, p.embed_k)}.get(group, (p.attn_bits, RECORD_OTHER_K))


def fixed_group(t: Tensor, group: str) -> QTensor | None:
    """What the record stores whatever the widths: fp16 for small tensors and for the non-matrix
    tensors of the matrix groups, int8 absmax rows for gates (planned only, for meta tensors);
    None for a matrix the quantizer codes at its group's width."""
    if group == "small" or (group in ("attn", "mlp", "embed", "other") and t.ndim != 2):
        return planned(t, 16, "", "fp16") if t.is_meta else as_float16(t, "fp16")
    if group == "gate":
        return planned(t, 8, "max", "int8 gate rows") if t.is_meta else absmax_rows(t, 8, "int8 gate rows")
    return None
