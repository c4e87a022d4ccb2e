"""Weight sharing: layers in consecutive groups of ``group_size`` share one attention and one MLP.

After the model is built, every layer of a group (layers 0-2, 3-5, 6-8 for the
default 3 on 9 layers; a last short group shares too) gets the group's first
block's ``attn`` and ``mlp`` modules (all their matrices, the q gains and the
rotary cache). Each layer keeps its own small control tensors (``attn_scale``,
``mlp_scale``, ``resid_mix``) and norms, so the three passes through one set of
weights can still differ; that is the reading chosen for the seed's "share weights
between layers in groups of 3". The optimizer sees each shared parameter once
(it gets the gradient summed over the group's layers), and the artifact stores
each shared tensor once (``golfplan.core.export.artifact`` aliases tensors with one
storage), so the model shrinks to about 1/``group_size`` of its block weights.

Static: the same graph every step, compile-safe. Works with any block that has
``attn`` and ``mlp`` attributes (the baseline, parallel, sandwich_norm,
attention_recycling), wrapped (``layer_dropout``, ``progressive_growing``) or not.
"""

from __future__ import annotations

from torch import nn

from golfplan.core.errors import PluginError
from golfplan.core.technique import Int, Technique, hookimpl


def inner_block(module: nn.Module) -> nn.Module:
    """The block itself, under any wrappers that keep it as ``.block``."""
    while not (hasattr(module, "attn") and hasattr(module, "mlp")):
        inner = getattr(module, "block", None)
        if not isinstance(inner, nn.Module):
            raise PluginError(f"weight_sharing: block {type(module).__name__} has no attn/mlp to share")
        module = inner
    return module


def share_groups(blocks: nn.ModuleList, group_size: int) -> None:
    """Give every block of each consecutive group the first block's attention and MLP."""
    for start in range(0, len(blocks), group_size):
        first = inner_block(blocks[start])
        for i in range(start + 1, min(start + group_size, len(blocks))):
            other = inner_block(blocks[i])
            other.attn = first.attn
            other.mlp = first.mlp


class WeightSharing(Technique):
    name = "weight_sharing"
    summary = "layers in groups of group_size share one attention + MLP (own scales/mixes)"
    params = {"group_size": Int(3, 2, 9, help="consecutive layers sharing one set of matrices")}
    seed_refs = ("U2",)
    seed_result = "U2: Weight Sharing groups of 3 - CRASH: AttributeError (no BPB)"

    @hookimpl
    def on_model_built(self, model, config):
        share_groups(model.blocks, self.p.group_size)
