"""Sparse attention gate: a per-head sigmoid gate on the attention output, read from 12 dims.

y_h <- σ(scale · W_h · x[:12]) · y_h        (before the heads are merged and projected)

``x`` is the attention's input (the block's normed stream), of which only the first
``window`` dims feed the gate; ``W`` (heads x window) is zero-initialised, so at init every
head's output is halved (σ(0) = 0.5), as in the record, whose per-block ``attn_scale``
(init 1) compensates while training. Each token decides, per head, how much of that head to
let through (heads can switch off on tokens where they only add noise), for 12 x heads
parameters per layer.

Source: the modded-nanogpt sparse head-output gate, brought in by record
2026-04-23_SP8192_CaseOps_SparseGate_QuantGate_Loop45_PhasedTTT_PolarNS_MinLR_FusedCE as a
narrow replacement of the dense gated attention (8 x 512 per layer) of 2026-04-19; the
frontier record runs it on all 11 layers with ``SPARSE_ATTN_GATE_SCALE=0.5``,
``SPARSE_ATTN_GATE_INIT_STD=0`` (zero init), ``GATE_WINDOW=12`` (log of seed 42;
F:352-361, 992-1001, 1060-1066).

Settings: ``window`` (12) is clamped to the model dim; ``scale`` (0.5, the frontier's run;
the code's default is 1.0). The gate weight is a ``CastedLinear`` (kept in fp32 under bf16,
like the record's ``attn_gate_w``, which its control-tensor patterns keep fp32) and goes to the
``scalar`` optimizer (Adam), not Muon, through ``param_role``, as the record routes
``attn_gate_w`` to its scalar AdamW. An attention tap's ``out``: plain tensor code.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from golfplan.core.model.gpt import AttentionTap, CastedLinear
from golfplan.core.technique import Float, Int, Technique, hookimpl

GATE_NAME = "sparse_attn_gate"  # the tap's linear: parameters named "...taps.N.sparse_attn_gate.weight"


class SparseAttnGateTap(AttentionTap):
    """Multiplies head h's output by σ(scale · W_h · x[:window]); W starts at zero."""

    def __init__(self, num_heads: int, window: int, scale: float) -> None:
        super().__init__()
        self.window = window
        self.scale = scale
        self.sparse_attn_gate = CastedLinear(window, num_heads, bias=False)
        nn.init.zeros_(self.sparse_attn_gate.weight)

    def gate(self, x: Tensor) -> Tensor:
        """Per-token, per-head gates (batch, seq, heads) from the attention input x (batch, seq, dim)."""
        return torch.sigmoid(self.scale * self.sparse_attn_gate(x[..., : self.window].contiguous()))

    def out(self, y, q, k, v, x, ctx):
        return y * self.gate(x).transpose(1, 2).unsqueeze(-1)  # y: (batch, heads, seq, head_dim)


class SparseAttnGate(Technique):
    name = "sparse_attn_gate"
    summary = "per-head sigmoid gate on the attention output from the first 12 input dims (zero init: 0.5)"
    params = {
        "window": Int(12, 4, 64, help="leading dims of the attention input the gate reads (clamped to the model dim)"),
        "scale": Float(0.5, 0.125, 2.0, log=True, help="gate logit = scale * W·x[:window] (the frontier's 0.5)"),
    }
    source = "2026-04-23_SP8192_CaseOps_SparseGate_QuantGate_Loop45_PhasedTTT_PolarNS_MinLR_FusedCE"
    source_result = ("replaced the dense gated attention (8x512/layer) with 8x12/layer: ~44K params and ~44 KB "
                     "saved 'with no measurable BPB cost' (README), in a -0.00214 BPB step shared with Polar NS, "
                     "MIN_LR and fused CE; dense output gates: -0.0005 (leaderboard-techniques); frontier: scale 0.5")

    @hookimpl
    def attention_taps(self, config, layer_idx):
        return SparseAttnGateTap(config.num_heads, min(self.p.window, config.model_dim), self.p.scale)

    @hookimpl
    def param_role(self, name, param, config):
        return "scalar" if name.endswith(f"{GATE_NAME}.weight") else None
