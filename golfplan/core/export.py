"""The artifact: int8 per-row quantisation of the weights + zlib level 9, and its loader.

As the challenge: 2-D float tensors get one int8 row each with an fp16 scale from the
99.99984th-percentile of |w|; tensors of at most 65,536 elements stay as fp16 (the
control tensors as fp32); everything is ``torch.save``d and zlib-compressed at level 9.
Tensors that share storage (weight sharing) are stored once.
"""

from __future__ import annotations

import io
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor

from golfplan.core.model import CONTROL_TENSOR_NAME_PATTERNS

INT8_KEEP_FLOAT_MAX_NUMEL = 65_536
INT8_KEEP_FLOAT_STORE_DTYPE = torch.float16
INT8_PER_ROW_SCALE_DTYPE = torch.float16
INT8_CLIP_PERCENTILE = 99.99984
INT8_CLIP_Q = INT8_CLIP_PERCENTILE / 100.0


@dataclass
class Artifact:
    """What is submitted: the compressed model bytes and how to load them back."""

    blob: bytes
    load: Callable[[bytes], dict[str, Tensor]]
    format: str = "int8_zlib"
    stats: dict[str, Any] | None = None


def keep_float_tensor(name: str, t: Tensor, orig_dtypes: dict[str, str]) -> Tensor:
    if any(p in name for p in CONTROL_TENSOR_NAME_PATTERNS):
        return t.float().contiguous()
    if t.dtype in {torch.float32, torch.bfloat16}:
        orig_dtypes[name] = str(t.dtype).removeprefix("torch.")
        return t.to(dtype=INT8_KEEP_FLOAT_STORE_DTYPE).contiguous()
    return t


def quantize_float_tensor(t: Tensor) -> tuple[Tensor, Tensor]:
    t32 = t.float()
    if t32.ndim == 2:
        clip_abs = (torch.quantile(t32.abs(), INT8_CLIP_Q, dim=1) if t32.numel()
                    else torch.empty((t32.shape[0],), dtype=torch.float32))
        clipped = torch.maximum(torch.minimum(t32, clip_abs[:, None]), -clip_abs[:, None])
        scale = (clip_abs / 127.0).clamp_min(1.0 / 127.0)
        q = torch.clamp(torch.round(clipped / scale[:, None]), -127, 127).to(torch.int8).contiguous()
        return q, scale.to(dtype=INT8_PER_ROW_SCALE_DTYPE).contiguous()
    clip_abs = float(torch.quantile(t32.abs().flatten(), INT8_CLIP_Q).item()) if t32.numel() else 0.0
    scale = torch.tensor(clip_abs / 127.0 if clip_abs > 0 else 1.0, dtype=torch.float32)
    q = torch.clamp(torch.round(torch.clamp(t32, -clip_abs, clip_abs) / scale), -127, 127).to(torch.int8).contiguous()
    return q, scale


def _share_key(t: Tensor) -> Any:
    """Identity of a tensor's storage (meta tensors have none: their object identity stands in)."""
    if not t.numel():
        return None
    if t.is_meta:
        return ("meta", id(t))
    return (t.data_ptr(), tuple(t.shape), t.dtype, t.device)


def unique_tensors(state_dict: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, str]]:
    """The state dict without repeats of shared tensors, and ``{alias: stored name}`` for them."""
    unique: dict[str, Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[Any, str] = {}
    for name, tensor in state_dict.items():
        key = _share_key(tensor)
        if key is not None and key in seen:
            aliases[name] = seen[key]
            continue
        if key is not None:
            seen[key] = name
        unique[name] = tensor
    return unique, aliases


def storage_plan(name: str, t: Tensor) -> str:
    """How the int8 export stores a tensor: ``raw`` (non-float, as is), ``keep`` (small float: fp16,
    control tensors fp32) or ``int8`` (per-row int8 + fp16 scales for matrices, one scale otherwise)."""
    if not t.is_floating_point():
        return "raw"
    return "keep" if t.numel() <= INT8_KEEP_FLOAT_MAX_NUMEL else "int8"


def stored_bytes(name: str, t: Tensor) -> int:
    """Bytes the int8 export's payload holds for this tensor (works on meta tensors)."""
    plan, n = storage_plan(name, t), t.numel()
    if plan == "raw":
        return n * t.element_size()
    if plan == "keep":  # as keep_float_tensor stores it
        if any(p in name for p in CONTROL_TENSOR_NAME_PATTERNS):
            return n * 4
        return n * (2 if t.dtype in (torch.float32, torch.bfloat16) else t.element_size())
    return n + (t.shape[0] * 2 if t.ndim == 2 else 4)


def payload_bytes(state_dict: dict[str, Tensor]) -> int:
    """How many bytes the int8 export's payload would take for this state dict, before zlib
    (shared tensors counted once). Exact for real and for meta tensors: the budget check asks it."""
    unique, _ = unique_tensors(state_dict)
    return sum(stored_bytes(name, t) for name, t in unique.items())


def quantize_state_dict_int8(state_dict: dict[str, Tensor]) -> tuple[dict[str, Any], dict[str, int]]:
    quantized: dict[str, Tensor] = {}
    scales: dict[str, Tensor] = {}
    dtypes: dict[str, str] = {}
    passthrough: dict[str, Tensor] = {}
    orig_dtypes: dict[str, str] = {}
    qmeta: dict[str, dict] = {}
    unique, aliases = unique_tensors(state_dict)
    stats = dict.fromkeys(("param_count", "num_tensors", "num_float_tensors", "num_nonfloat_tensors",
                           "baseline_tensor_bytes", "int8_payload_bytes"), 0)
    for name, tensor in unique.items():
        t = tensor.detach().to("cpu").contiguous()
        stats["param_count"] += int(t.numel())
        stats["num_tensors"] += 1
        stats["baseline_tensor_bytes"] += int(t.numel()) * int(t.element_size())
        stats["int8_payload_bytes"] += stored_bytes(name, t)
        plan = storage_plan(name, t)
        if plan == "raw":
            stats["num_nonfloat_tensors"] += 1
            passthrough[name] = t
        elif plan == "keep":
            passthrough[name] = keep_float_tensor(name, t, orig_dtypes)
        else:
            stats["num_float_tensors"] += 1
            q, s = quantize_float_tensor(t)
            if s.ndim > 0:
                qmeta[name] = {"scheme": "per_row", "axis": 0}
            quantized[name], scales[name] = q, s
            dtypes[name] = str(t.dtype).removeprefix("torch.")
    obj: dict[str, Any] = {"__quant_format__": "int8_clean_per_row_v1", "quantized": quantized,
                           "scales": scales, "dtypes": dtypes, "passthrough": passthrough}
    if qmeta:
        obj["qmeta"] = qmeta
    if orig_dtypes:
        obj["passthrough_orig_dtypes"] = orig_dtypes
    if aliases:
        obj["aliases"] = aliases
    return obj, stats


def dequantize_state_dict_int8(obj: dict[str, Any]) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    qmeta = obj.get("qmeta", {})
    orig_dtypes = obj.get("passthrough_orig_dtypes", {})
    for name, q in obj["quantized"].items():
        dtype = getattr(torch, obj["dtypes"][name])
        s = obj["scales"][name]
        if qmeta.get(name, {}).get("scheme") == "per_row" or s.ndim > 0:
            s = s.to(dtype=torch.float32)
            out[name] = (q.float() * s.view(q.shape[0], *([1] * (q.ndim - 1)))).to(dtype=dtype).contiguous()
        else:
            out[name] = (q.float() * float(s.item())).to(dtype=dtype).contiguous()
    for name, t in obj["passthrough"].items():
        out_t = t.detach().to("cpu").contiguous()
        orig = orig_dtypes.get(name)
        if isinstance(orig, str):
            out_t = out_t.to(dtype=getattr(torch, orig)).contiguous()
        out[name] = out_t
    for name, target in obj.get("aliases", {}).items():
        out[name] = out[target]
    return out


def load_int8_zlib(blob: bytes) -> dict[str, Tensor]:
    obj = torch.load(io.BytesIO(zlib.decompress(blob)), map_location="cpu", weights_only=True)
    return dequantize_state_dict_int8(obj)


def export_int8_zlib(state_dict: dict[str, Tensor]) -> Artifact:
    obj, stats = quantize_state_dict_int8(state_dict)
    buf = io.BytesIO()
    torch.save(obj, buf)
    raw = buf.getvalue()
    stats["raw_torch_bytes"] = len(raw)
    return Artifact(blob=zlib.compress(raw, level=9), load=load_int8_zlib, format="int8_zlib", stats=stats)


def export_artifact(hooks: Any, state_dict: dict[str, Tensor], stats: dict[str, Any], config: Any) -> Artifact:
    """The run's artifact: a plugin's whole-artifact ``export``, else the default int8 + zlib."""
    art = hooks.pm.hook.export(state_dict=state_dict, config=config)
    return art if art is not None else export_int8_zlib(state_dict)


# ---- code bytes -------------------------------------------------------------------

CORE_CODE_MODULES = ("config", "model", "optim", "data", "tokenizer", "evaluate", "export", "hooks",
                     "hookspecs", "state", "technique", "trainer", "errors", "profiles")


def code_bytes(plugin_files: list[str | Path] = ()) -> int:
    """Bytes of the code a submission needs: the core trainer's modules + each enabled plugin's file."""
    core = Path(__file__).resolve().parent
    files = {core / f"{m}.py" for m in CORE_CODE_MODULES}
    files |= {Path(p).resolve() for p in plugin_files}
    return sum(f.stat().st_size for f in files if f.is_file())
