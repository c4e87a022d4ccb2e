"""The artifact: the export chain, the challenge's int8 + zlib as its default, and the loader.

The chain (``export_artifact``), once training and calibration are done:

1. every unique tensor (tensors that share storage, weight sharing, are stored once) gets its
   group by the core rule (``golfplan.core.export.quant.tensor_group``: attn, mlp, embed, gate, small,
   other) and is stored by the first ``quantize_tensor`` plugin that takes it, else by the
   challenge's rule (``default_qtensor``): 2-D float tensors over 65,536 elements one int8 row
   each with an fp16 scale from the 99.99984th percentile of |w|, smaller ones fp16 (control
   tensors fp32), non-float tensors as they are;
2. the ``export_postpass`` plugins, in order, may replace stored tensors (LQER adds low-rank
   corrections);
3. the ``compressor`` plugin's ``Packing`` (``golfplan.core.export.codec``) serialises and compresses,
   else ``torch.save`` + zlib level 9.

With no plugin in any link the bytes are the challenge's ``export_int8_zlib``'s, byte for byte.
``load_artifact`` decodes any artifact from its bytes alone: the container records the packing,
each stored tensor its format and the method that made it. ``golfplan.core.export.sizing`` answers how
many bytes a state dict (meta tensors too) would take through a run's chain.
"""

from __future__ import annotations

import io
import time
import zlib
from dataclasses import dataclass, replace
from typing import Any, Callable

import torch
from torch import Tensor

from golfplan.core.export.codec import DEFAULT_PACKING, Packing, pack, unpack
from golfplan.core.errors import PluginError
from golfplan.core.hooks import call_order, impl_owner
from golfplan.core.model.gpt import CONTROL_TENSOR_NAME_PATTERNS
from golfplan.core.export.quant import QTensor, tensor_group

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


# ---- the export chain ------------------------------------------------------------------
#
# quantize (the ``quantize_tensor`` hook per stored tensor, else ``default_qtensor``) -> the
# ``export_postpass`` hooks in plugin order -> the ``compressor`` hook's Packing (else the
# challenge's torch.save + zlib 9). With no plugin the artifact is the challenge's, byte for byte.

CHAIN_FORMAT = "golfplan_chain_v1"
INT8_ROW, INT8_TENSOR = "int8 per-row (challenge)", "int8 per-tensor (challenge)"
KEPT, CONTROL, RAW = "kept float (challenge)", "fp32 control (challenge)", "raw"
DEFAULT_METHODS = frozenset((INT8_ROW, INT8_TENSOR, KEPT, CONTROL, RAW))


def default_qtensor(name: str, t: Tensor) -> QTensor:
    """The challenge's rule for one tensor, as a QTensor (meta tensors give its shapes only)."""
    plan = storage_plan(name, t)
    if not t.is_meta:
        t = t.detach().to("cpu").contiguous()
    if plan == "raw":
        return QTensor("raw", t, method=RAW)
    if plan == "keep":
        recorded: dict[str, str] = {}
        kept = keep_float_tensor(name, t, recorded)
        control = any(p in name for p in CONTROL_TENSOR_NAME_PATTERNS)
        return QTensor("float", kept, dtype=recorded.get(name, ""), method=CONTROL if control else KEPT)
    if t.is_meta:
        q = torch.empty(t.shape, dtype=torch.int8, device="meta")
        s = torch.empty((t.shape[0],) if t.ndim == 2 else (), dtype=torch.float16 if t.ndim == 2 else torch.float32,
                        device="meta")
    else:
        q, s = quantize_float_tensor(t)
    return QTensor("int", q, s, bits=8, rule="max", dtype=str(t.dtype).removeprefix("torch."),
                   method=INT8_ROW if s.ndim else INT8_TENSOR)


@dataclass
class Chain:
    """What the chain stores: a QTensor per unique tensor, the aliases of shared ones, the packing."""

    qtensors: dict[str, QTensor]
    aliases: dict[str, str]
    packing: Packing

    def is_challenge(self) -> bool:
        """True when every link is the default: the artifact is the challenge's int8 + zlib."""
        return not self.packing.container and all(
            q.method in DEFAULT_METHODS and q.lowrank is None and q.perm is None for q in self.qtensors.values())

    def format(self) -> str:
        if self.is_challenge():
            return "int8_zlib"
        bits = sorted({q.bits for q in self.qtensors.values() if q.kind == "int"})
        return f"{'-'.join(f'int{b}' for b in bits) or 'float'}_{self.packing.codec}"

    def describe(self) -> list[str]:
        """One line per tensor group: how many tensors each method stored, then the packing."""
        by_group: dict[str, dict[str, int]] = {}
        for q in self.qtensors.values():
            label = q.method + (" + low-rank" if q.lowrank is not None else "")
            by_group.setdefault(q.group, {}).setdefault(label, 0)
            by_group[q.group][label] += 1
        lines = [f"{g}: " + ", ".join(f"{n} x {m}" for m, n in ms.items()) for g, ms in sorted(by_group.items())]
        return lines + [f"packing: {self.packing.describe()}" + (f" ({self.packing.made_by})" if self.packing.made_by else "")]


def _checked(name: str, shape: tuple, qt: Any, where: str) -> QTensor:
    if not isinstance(qt, QTensor):
        raise PluginError(f"{where} returned {type(qt).__name__} for {name}; expected a golfplan.core.export.quant.QTensor")
    if qt.shape != shape:
        raise PluginError(f"{where} stored {name} with shape {list(qt.shape)}, not its {list(shape)}")
    return qt


def run_chain(hooks: Any, state_dict: dict[str, Tensor], stats: dict[str, Any], config: Any) -> Chain:
    """Quantize every unique tensor, run the post-passes, pick the packing (no bytes yet).
    ``hooks`` may be None (the defaults alone); ``state_dict`` may hold meta tensors."""
    unique, aliases = unique_tensors(state_dict)
    h = hooks.pm.hook if hooks is not None else None
    out: dict[str, QTensor] = {}
    for name, tensor in unique.items():
        t = tensor.detach()
        group = tensor_group(name, t)
        qt = None
        if h is not None and t.is_floating_point():
            qt = h.quantize_tensor(name=name, tensor=t, group=group, stats=stats, config=config)
        qt = default_qtensor(name, t) if qt is None else _checked(name, tuple(t.shape), qt, "quantize_tensor")
        out[name] = replace(qt.cpu(), group=group)
    if h is None:
        return Chain(out, aliases, DEFAULT_PACKING)
    caller = h.export_postpass
    for owner, fn in zip(impl_owner(caller), call_order(caller)):
        for name, qt in (fn(qtensors=dict(out), state_dict=unique, stats=stats, config=config) or {}).items():
            if name not in out:
                raise PluginError(f"export_postpass of '{owner}' returned '{name}', which is not a stored tensor")
            out[name] = replace(_checked(name, out[name].shape, qt, f"export_postpass of '{owner}'").cpu(),
                                group=out[name].group)
    packing = h.compressor(config=config)
    if packing is not None and not isinstance(packing, Packing):
        raise PluginError(f"compressor returned {type(packing).__name__}; expected a golfplan.core.export.codec.Packing")
    return Chain(out, aliases, packing or DEFAULT_PACKING)


def chain_object(chain: Chain) -> dict[str, Any]:
    """What is serialised: the challenge's layout when every link is the default, else the chain's."""
    if not chain.is_challenge():
        obj: dict[str, Any] = {"__quant_format__": CHAIN_FORMAT,
                               "tensors": {n: q.to_record() for n, q in chain.qtensors.items()}}
        if chain.aliases:
            obj["aliases"] = dict(chain.aliases)
        return obj
    quantized, scales, dtypes, passthrough, orig, qmeta = {}, {}, {}, {}, {}, {}
    for name, q in chain.qtensors.items():
        if q.kind == "int":
            quantized[name], scales[name], dtypes[name] = q.data, q.scale, q.dtype
            if q.scale.ndim > 0:
                qmeta[name] = {"scheme": "per_row", "axis": 0}
        else:
            passthrough[name] = q.data
            if q.dtype:
                orig[name] = q.dtype
    obj = {"__quant_format__": "int8_clean_per_row_v1", "quantized": quantized, "scales": scales, "dtypes": dtypes,
           "passthrough": passthrough}
    for key, value in (("qmeta", qmeta), ("passthrough_orig_dtypes", orig), ("aliases", chain.aliases)):
        if value:
            obj[key] = dict(value)
    return obj


def load_artifact(blob: bytes) -> dict[str, Tensor]:
    """The state dict any artifact of the chain stands for, from its bytes alone."""
    obj = unpack(blob)
    if obj.get("__quant_format__") != CHAIN_FORMAT:
        return dequantize_state_dict_int8(obj)
    out = {name: QTensor.from_record(rec).dequantize() for name, rec in obj["tensors"].items()}
    for name, target in obj.get("aliases", {}).items():
        out[name] = out[target]
    return out


def export_artifact(hooks: Any, state_dict: dict[str, Tensor], stats: dict[str, Any], config: Any) -> Artifact:
    """The run's artifact: a plugin's whole-artifact ``export``, else the chain (int8 + zlib when no
    plugin fills a link)."""
    art = hooks.pm.hook.export(state_dict=state_dict, config=config)
    if art is not None:
        return art
    t0 = time.perf_counter()
    chain = run_chain(hooks, state_dict, stats, config)
    t1 = time.perf_counter()
    blob = pack(chain_object(chain), chain.packing)
    unique, _ = unique_tensors(state_dict)
    info = {"param_count": sum(int(t.numel()) for t in unique.values()), "num_tensors": len(unique),
            "baseline_tensor_bytes": sum(int(t.numel()) * t.element_size() for t in unique.values()),
            "payload_bytes": sum(q.stored_bytes() for q in chain.qtensors.values()),
            "chain": chain.describe(), "quantize_s": round(t1 - t0, 3),
            "pack_s": round(time.perf_counter() - t1, 3)}
    return Artifact(blob=blob, load=load_artifact, format=chain.format(), stats=info)
