"""Every hook a technique can implement (pluggy project ``golfplan``).

Hooks are resolved once, when a run is built (``golfplan.core.hooks.resolve``).
Build-time hooks (``configure``, ``build_*``, ``on_model_built``) are called while
the model is made. Forward hooks (``on_batch``, ``on_embed``, ``on_branch``,
``token_loss``, ``reduce_loss``, ``on_loss``) are called once at build time and
*return plain tensor functions* that the model calls inside the compiled region:
no plugin dispatch happens there, so they cost nothing per step and cannot break
the graph by themselves (what their functions do can). Per-step hooks
(``lr_schedule``, ``wd_schedule``, ``after_backward``, ``on_step``) are resolved
to plain callables and run outside the compiled region; they must not force a
GPU sync (no ``.item()``, no Python branch on a tensor value).

``clock`` is a :class:`golfplan.core.state.Clock`: ``step``, ``iterations``,
``elapsed_s``, ``wallclock_s`` and ``progress = max(step/iterations,
elapsed/wallclock)`` in [0, 1], so a wallclock-capped run still finishes its
schedule. ``ctx`` is a :class:`golfplan.core.state.ForwardContext`.

Each hook's docstring names the built-in techniques that use it.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("golfplan")


# ---- build time -------------------------------------------------------------------


@hookspec
def configure(config):
    """Before anything is built: return ``{field: value}`` overrides of the run's Config, or None.

    Two plugins setting one field to different values, or a plugin setting a field the
    user set explicitly, is an error naming both. Used by: gqa, untied, softcap, rope_base,
    qk_gain, unet, depth, width, mlp_width, lr, head_pruning, wd_ramp, predator_prey,
    predator_prey_wd.
    """


@hookspec(firstresult=True)
def build_attention(config, layer_idx):
    """Model build, once per layer: return the attention module, or None for the default.

    The default is ``golfplan.core.model.CausalSelfAttention``. Used by: head_pruning.
    """


@hookspec(firstresult=True)
def activation(config):
    """Model build: return the MLP's activation, a function Tensor -> Tensor.

    The default is relu². Used by: relu2, leaky_relu2, gelu2, silu2.
    """


@hookspec(firstresult=True)
def build_mlp(config, layer_idx, activation):
    """Model build, once per layer: return the MLP module, or None for the default.

    The default is ``golfplan.core.model.MLP`` with ``activation``. Used by: swiglu.
    """


@hookspec(firstresult=True)
def build_block(config, layer_idx, attn, mlp):
    """Model build, once per layer: return the block wiring ``attn`` and ``mlp``, or None.

    A block is a ``golfplan.core.model.Block`` subclass (``forward(x, x0, ctx)``).
    The default is the baseline's sequential pre-norm block. Used by: parallel,
    sandwich_norm, attention_recycling.
    """


@hookspec(firstresult=True)
def wrap_block(config, layer_idx, block):
    """Model build, once per layer, after ``build_block``: return a module wrapping ``block``, or None.

    Used by: layer_dropout, progressive_growing.
    """


@hookspec
def on_model_built(model, config):
    """After the model is built and initialised, before optimizers exist.

    May re-wire modules (share them), register buffers, or record initial state.
    Used by: weight_sharing, synaptic_scaling.
    """


# ---- forward (build time; the returned functions run inside the compiled region) ----


@hookspec
def on_batch(config):
    """Return ``f(input_ids, target_ids, ctx) -> (input_ids, target_ids)`` applied in training, or None.

    Used by: mirror_training.
    """


@hookspec
def on_embed(config):
    """Return ``f(h, ctx) -> h`` applied to the normed token embeddings in training, or None.

    Used by: embed_mixup.
    """


@hookspec
def on_branch(config):
    """Return ``f(y, ctx) -> y`` applied to each block branch (attention, MLP) before the residual add, in training.

    Used by: metamorphosis.
    """


@hookspec(firstresult=True)
def token_loss(config):
    """Return ``f(logits, targets) -> per-token loss`` for training (float32 logits), or None.

    The default is cross-entropy. Validation always uses plain cross-entropy.
    Used by: label_smoothing.
    """


@hookspec(firstresult=True)
def reduce_loss(config):
    """Return ``f(token_loss, ctx) -> scalar`` reducing per-token losses in training, or None.

    The default is the mean. Used by: token_dropout.
    """


@hookspec
def on_loss(config):
    """Return a term ``f(ctx) -> scalar Tensor`` added to the training loss, or None.

    ``ctx`` carries ``logits`` (after the softcap), ``targets``, ``token_loss``,
    ``model`` and ``progress``. Used by: z_loss, logit_penalty, head_diversity.
    """


# ---- every step, outside the compiled region --------------------------------------


@hookspec(firstresult=True)
def lr_schedule(clock, config):
    """Every step: return the LR multiplier (a float >= 0) applied to every optimizer's base LR.

    At most one plugin fills the ``lr_schedule`` slot. The default is the challenge's
    linear warmdown over the last ``warmdown_iters`` steps, measured in wallclock.
    Used by: cosine, cosine_min, cosine_2cycle, tidal, breathing, whale_dive,
    circadian, cosmological, punctuated, predator_prey.
    """


@hookspec(firstresult=True)
def wd_schedule(clock, config):
    """Every step: return the decoupled weight decay applied to the matrix weights (0 for none).

    The default is 0 (the baseline uses no weight decay). Used by: wd_ramp, predator_prey,
    predator_prey_wd.
    """


@hookspec
def after_backward(model, clock):
    """Every step, after the gradients of all micro-steps are accumulated, before the optimizer step.

    Touch gradients in place. Used by: canopy (snapshots the weights), mycorrhizal, thermal_vent.
    """


@hookspec
def on_step(model, optimizers, clock):
    """Every step, after the optimizer step: edit weights in place (``torch.no_grad`` is active).

    Used by: controlled_burn, weight_perturbation, mutation_decay, synaptic_scaling,
    canopy, head_pruning, progressive_growing.
    """


# ---- end of run -------------------------------------------------------------------


@hookspec(firstresult=True)
def evaluate(model, val, config):
    """Evaluation (periodic and final): return ``(val_loss, val_bpb)``, or None for the default.

    ``val`` is a :class:`golfplan.core.evaluate.ValData` (tokens, byte tables, rank,
    world size, device). The default is the challenge's ``eval_val``.
    """


@hookspec(firstresult=True)
def export(state_dict, config):
    """End of run: return a :class:`golfplan.core.export.Artifact` (bytes + loader), or None.

    The default is the challenge's int8 per-row quantisation + zlib level 9; the
    round-trip BPB is measured on what the artifact's loader gives back.
    """
