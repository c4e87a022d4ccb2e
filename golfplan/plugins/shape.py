"""Model shape: depth (layers), width (model dim) and the MLP's hidden multiple.

Three config setters in three slots, so they combine:

- ``depth`` sets ``num_layers`` (baseline 9; the seed tried 10 and 12),
- ``width`` sets ``model_dim`` (baseline 512; the seed tried 576 and 640). It must
  stay divisible by ``num_heads`` with an even head dim; ``Config.validate`` checks
  the final combination (head count included) and names the problem,
- ``mlp_width`` sets ``mlp_mult`` (baseline 2; hidden = int(mlp_mult x model_dim)).

The seed's lesson: on a wallclock cap, bigger models lose more to fewer steps than
they gain per step (NF11, B2, B3, H2, H3, A15, A16); the planner sees that trade-off
through ms/step and the artifact bytes.
"""

from __future__ import annotations

from golfplan.core.technique import Float, Int, Technique, hookimpl


class Depth(Technique):
    name = "depth"
    summary = "number of transformer layers (baseline 9)"
    slot = "depth"
    params = {"num_layers": Int(10, 2, 16, help="transformer layers")}
    seed_refs = ("B2", "B3", "NF11", "U7")
    seed_result = ("B2 Parallel+10L: 1.5979 (-0.014, 233 steps, 10L hurts); B3 +HD+AggrLR: 1.5885 (234 steps); "
                   "NF11 12L/448D: 1.6620 (+0.050, 197 steps); U7 12L/448D/1 enc not reached")

    @hookimpl
    def configure(self, config):
        return {"num_layers": self.p.num_layers}


class Width(Technique):
    name = "width"
    summary = "model dimension (baseline 512)"
    slot = "width"
    params = {"model_dim": Int(640, 256, 1024, help="model dim; must divide into num_heads even-sized heads")}
    seed_refs = ("NF12", "A16", "U8")
    seed_result = ("NF12 640D/7L/MQA: 1.6013 (-0.010, 234 steps, slightly better); "
                   "A16 SwiGLU 576D/8L: 1.6090 (-0.003, 206 steps, too slow); U8 640D/7L/MQA not reached")

    @hookimpl
    def configure(self, config):
        return {"model_dim": self.p.model_dim}


class MLPWidth(Technique):
    name = "mlp_width"
    summary = "MLP hidden multiple of the model dim (baseline 2)"
    slot = "mlp_width"
    params = {"mlp_mult": Float(3.0, 1.0, 6.0, help="MLP hidden = int(mlp_mult x model_dim)")}
    seed_refs = ("A15", "H2", "H3")
    seed_result = ("A15 LeakyReLU²+MLP3x: 1.6098 (-0.002, 216 steps, too slow); H2 MLP 3x: 1.5481 (244 steps vs 276, "
                   "too slow); H3 3x + pure decoder: 1.5474")

    @hookimpl
    def configure(self, config):
        return {"mlp_mult": self.p.mlp_mult}
