"""SmearGate with the BOS fix: each token's raw embedding takes in a gated share of the previous one's,
never across a document boundary.

    x_t += λ·σ(W·x_t[:w])·x_{t−1}·[t does not start a document]

on the raw token embeddings, before the embedding norm, in every forward (training, evaluation and
anything that scores), as the record (F:1244-1251 the parameters, F:1330-1337 the forward, F:1431-1436
the same on its TTT path): window w = 12 (``GATE_WINDOW``), W a 1x12 linear and λ a scalar, both
zero-initialised, so the module is the identity at init and λ gets the first gradient. The gate reads
the current token's first w embedding dimensions. Position 0 of a row has no predecessor.

The BOS fix (the record's contribution): the smear is cut where the current token starts a
document, so the last token of document N never reaches document N+1. Where the loader gives
document ``segments`` (``doc_packing``) a document starts wherever the segment changes, which also
cuts the smear where a long document was split into pieces (the record, masking on BOS only, smears
across its 2048-token cuts; here nothing crosses a boundary that attention does not cross either);
without segments a document starts at every ``config.bos_id`` token, as the record's ``not_bos``.

W (2-D) and λ are routed to the ``scalar`` optimizer (Adam) by ``param_role``, as the record's
control tensors; W is a CastedLinear, so a bf16 run keeps it in fp32.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from golfplan.core.model.gpt import CastedLinear
from golfplan.core.state import ForwardContext
from golfplan.core.technique import Int, Technique, hookimpl

SOURCE = "2026-04-27_SP8192_LQER_SparseGate_BOSSmearFix_9HpStack_1.0611"


class SmearGate(nn.Module):
    def __init__(self, dim: int, window: int, bos_id: int) -> None:
        super().__init__()
        self.window = min(window, dim)
        self.bos_id = bos_id
        self.smear_gate = CastedLinear(self.window, 1, bias=False)
        nn.init.zeros_(self.smear_gate.weight)
        self.smear_lambda = nn.Parameter(torch.zeros(1, dtype=torch.float32))

    def forward(self, x: Tensor, ctx: ForwardContext) -> Tensor:
        keep = (~ctx.document_starts(self.bos_id)[:, 1:]).to(dtype=x.dtype).unsqueeze(-1)
        g = self.smear_lambda.to(dtype=x.dtype) * torch.sigmoid(self.smear_gate(x[:, 1:, : self.window]))
        return torch.cat([x[:, :1], x[:, 1:] + g * x[:, :-1] * keep], dim=1)


class SmearGateTechnique(Technique):
    name = "smear_gate"
    summary = "x_t += λ·σ(W·x_t[:12])·x_{t-1} on the raw embeddings, cut at every document start (BOS fix)"
    params = {"window": Int(12, 1, 64, help="embedding dims the gate reads (record GATE_WINDOW=12)")}
    source = SOURCE
    source_result = ("part of the record's stack, 1.06108 BPB (3-seed mean); the BOS fix is a legality fix, "
                     "its effect not measured on its own")

    @hookimpl
    def build_embed(self, config):
        return SmearGate(config.model_dim, self.p.window, config.bos_id)

    @hookimpl
    def param_role(self, name, param, config):
        return "scalar" if name.endswith((".smear_gate.weight", ".smear_lambda")) else None
