"""Untied embeddings: a separate, zero-initialised output head instead of reusing ``tok_emb``.

Sets ``tie_embeddings=False``. The input embedding then trains with ``embed_lr``
(0.6) and the head with ``head_lr`` (0.008), as the challenge baseline does when
``TIE_EMBEDDINGS=0``; the artifact grows by one vocab x model_dim matrix (the
seed's G1: ~14 MB instead of ~12.9 MB). The seed's biggest late-stage win.
"""

from __future__ import annotations

from golfplan.core.technique import Technique, hookimpl


class Untied(Technique):
    name = "untied"
    summary = "untied input/output embeddings (a separate lm_head)"
    slot = "tie"
    seed_refs = ("G1",)
    seed_result = "G1: 1.5211 (-0.091 vs baseline, -0.012 on top of F7 1.5329; 266 steps; artifact ~14MB, Huge win)"

    @hookimpl
    def configure(self, config):
        return {"tie_embeddings": False}
