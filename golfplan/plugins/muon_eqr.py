"""MuonEq-R: normalise every row of Muon's update to unit L2 norm before orthogonalising it.

Muon's Newton-Schulz iteration sees the Nesterov update ``g + momentum·buf`` of each matrix.
Dividing each row by its own norm first gives every output unit an update of the same scale going
into the iteration ("row equilibration", the R of MuonEq-R). Zero parameters, zero artifact bytes.

The record's code (records/.../2026-04-27_..._1.0611/train_gpt.py:1832-1870, ``row_normalize``,
on by ``MUON_ROW_NORMALIZE=1``): after the Nesterov step and before ``zeropower_via_newtonschulz5``,
``update / update.float().norm(dim=-1, keepdim=True).clamp_min(1e-7)``: the norm of each row
along the last axis (a weight is ``(out_features, in_features)``, so one row per output unit),
computed in fp32, floored at 1e-7 (a clamp, not an added eps: an all-zero row stays zero) and cast
back to the update's dtype before dividing. Here the same runs as a ``muon_precondition`` on the
core's Muon, which then orthogonalises and scales the result exactly as without it.
"""

from __future__ import annotations

from torch import Tensor

from golfplan.core.technique import Technique, hookimpl

ROW_NORM_FLOOR = 1e-7  # the record's clamp_min


def row_normalize(G: Tensor) -> Tensor:
    """``G`` with every row (last axis) divided by its L2 norm, floored at 1e-7."""
    norms = G.float().norm(dim=-1, keepdim=True).clamp_min(ROW_NORM_FLOOR)
    return G / norms.to(G.dtype)


class MuonEqR(Technique):
    name = "muon_eqr"
    summary = "MuonEq-R: row-normalise Muon's Nesterov update before Newton-Schulz"
    source = "2026-04-03_MuonEqR_DepthRecurrence_WD090_AllInt6"
    source_result = ("README: '~0.001 BPB improvement', not isolated in a table; with depth recurrence, WD 0.090 "
                     "and all-int6 GPTQ: 1.0912 BPB (3 seeds) vs PR #1218's 1.0979; on in the 1.0611 record")

    @hookimpl
    def muon_precondition(self, config):
        return row_normalize
