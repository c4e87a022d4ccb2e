"""Optimizer learning rates: the token embedding's Adam LR, Muon's matrix LR and momentum.

Sets ``embed_lr``, ``matrix_lr`` and ``muon_momentum`` (the seed's "aggressive LR":
embed 0.8, matrix 0.06 -> 0.08 -> 0.11 as the stack grew).

``embed_lr`` only acts with untied embeddings: like the challenge baseline, the
embedding's LR is ``tied_embed_lr`` (0.05) when embeddings are tied and ``embed_lr``
(0.6) when they are not. This plugin deliberately does NOT set ``tied_embed_lr``:
every seed run before G1 set ``EMBED_LR`` with tied embeddings (NF13, W0b, C9, C11),
where it had no effect, which is why "Embed LR 1.0" (C9, C11) moved BPB only within
noise; copying 0.8 onto the tied embedding (16x its LR) would be a different,
untested technique. With ``untied`` the param acts as the seed's best config (H1)
had it. ``muon_momentum`` is the value after the momentum warmup (from
``muon_momentum_warmup_start`` over ``muon_momentum_warmup_steps``).
"""

from __future__ import annotations

from golfplan.core.technique import Float, Technique, hookimpl


class LR(Technique):
    name = "lr"
    summary = "learning rates: embed_lr (untied only), matrix_lr (Muon) and Muon momentum"
    slot = "lr"
    params = {
        "embed_lr": Float(0.8, 0.05, 2.0, log=True, help="token embedding Adam LR (acts only with untied embeddings)"),
        "matrix_lr": Float(0.11, 0.01, 0.3, log=True, help="Muon LR of the block matrices"),
        "muon_momentum": Float(0.95, 0.8, 0.99, help="Muon momentum after its warmup"),
    }
    seed_refs = ("NF13", "C9", "C10", "C11", "E4", "E5", "F5", "F6", "U10")
    seed_result = ("NF13 embed 0.8 + matrix 0.06: 1.5877 (-0.024); C10 matrix 0.08: 1.5501 (-0.003 vs B4, new best); "
                   "C9 embed 1.0: 1.5552 (+0.003), C11 both: 1.5541; E4/E5 matrix 0.10/0.12 on 1/8: 1.5392/1.5391; "
                   "F5 0.09: 1.5377 (worse), F6 0.11: 1.5341 (new best); U10 muon 0.98 not reached")

    @hookimpl
    def configure(self, config):
        return {"embed_lr": self.p.embed_lr, "matrix_lr": self.p.matrix_lr, "muon_momentum": self.p.muon_momentum}
