"""Every hook a technique can implement (pluggy project ``golfplan``).

Hooks are resolved once, when a run is built (``golfplan.core.hooks.resolve``).
Build-time hooks (``configure``, ``build_*``, ``attention_taps``, ``layer_orders``,
``skip_merge``, ``on_model_built``, the optimizer hooks) are called while the model and its
optimizers are made. Forward hooks (``on_batch``, ``on_embed``, ``on_branch``,
``token_loss``, ``reduce_loss``, ``on_loss``) are called once at build time and
*return plain tensor functions* that the model calls inside the compiled region:
no plugin dispatch happens there, so they cost nothing per step and cannot break
the graph by themselves (what their functions do can). Per-step hooks
(``lr_schedule``, ``wd_schedule``, ``after_backward``, ``on_step``) are resolved
to plain callables and run outside the compiled region; they must not force a
GPU sync (no ``.item()``, no Python branch on a tensor value). End-of-run hooks run once
the loop ends: ``on_train_end`` (swap in averaged weights), ``calibrate`` (on the training
clock, or after it: ``calibration_clock``), the export chain (``quantize_tensor``,
``export_postpass``, ``compressor``) and the evaluation strategy (``evaluate``).

``golfplan hooks`` prints this reference; ``golfplan hooks NAME`` one hook in full.

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
    user set explicitly, is an error naming both. Used by: adamw, case_ops, depth, gptq, gqa,
    grad_clip, head_pruning, lr, mlp_width, muon_momentum, muon_wd, partial_rope, polar_express,
    predator_prey, predator_prey_wd, qk_gain, rope_base, softcap, unet, untied, wd_ramp,
    width.
    """


@hookspec(firstresult=True)
def build_attention(config, layer_idx):
    """Model build, once per layer: return the attention module, or None for the default.

    The default is ``golfplan.core.model.gpt.CausalSelfAttention``. Used by: head_pruning.
    """


@hookspec(firstresult=True)
def activation(config):
    """Model build: return the MLP's activation, a function Tensor -> Tensor.

    The default is relu². Used by: gelu2, leaky_relu2, relu2, silu2.
    """


@hookspec(firstresult=True)
def build_mlp(config, layer_idx, activation):
    """Model build, once per layer: return the MLP module, or None for the default.

    The default is ``golfplan.core.model.gpt.MLP`` with ``activation``. Used by: swiglu.
    """


@hookspec(firstresult=True)
def build_block(config, layer_idx, attn, mlp):
    """Model build, once per layer: return the block wiring ``attn`` and ``mlp``, or None.

    A block is a ``golfplan.core.model.gpt.Block`` subclass (``forward(x, x0, ctx)``).
    The default is the baseline's sequential pre-norm block. Used by: attention_recycling,
    parallel.
    """


@hookspec(firstresult=True)
def wrap_block(config, layer_idx, block):
    """Model build, once per layer, after ``build_block``: return a module wrapping ``block``, or None.

    Used by: layer_dropout, progressive_growing.
    """


@hookspec
def build_embed(config):
    """Model build: return a module applied to the raw token embeddings, or None.

    Its ``forward(x, ctx) -> x`` runs before the embedding norm in every forward (training,
    evaluation and anything that scores), in plugin order; it may own parameters and may put
    tensors in ``ctx.extras`` for the attention taps. ``ctx.input_ids`` and ``ctx.segments``
    (or ``config.bos_id``) say where documents start: nothing may cross a document boundary.
    Used by: bigram_hash, smear_gate, value_embed.
    """


@hookspec
def attention_taps(config, layer_idx):
    """Model build, once per layer: return a ``golfplan.core.model.gpt.AttentionTap`` for this
    layer's attention, or None.

    A tap's ``qkv(q, k, v, x, ctx)`` runs just before attention (after RoPE and the q gain),
    its ``out(y, q, k, v, x, ctx)`` on the per-head outputs before the output projection; taps
    run in plugin order and may own parameters. Used by: sparse_attn_gate, value_embed, xsa.
    """


@hookspec(firstresult=True)
def layer_orders(config):
    """Model build: return ``{name: (encoder block indices, decoder block indices)}``, or None.

    The first order is active from the start; a technique switches ``model.stack.active``
    between steps (``on_step``). Every order is primed before the timed loop (and by the
    check's trace), so a switch costs no recompilation. The default is the baseline's U-Net
    split. Used by: depth_recurrence.
    """


@hookspec(firstresult=True)
def skip_merge(config, num_skips):
    """Model build: return the module that joins a U-Net skip into the decoder, or None.

    ``forward(x, skip, weight, i) -> x``; ``weight`` is ``model.skip_weights[i]``. The default
    is the baseline's ``x + weight * skip``. Used by: skip_gates.
    """


@hookspec(firstresult=True)
def build_stack(config, orders, merge):
    """Model build: return the ``golfplan.core.model.gpt.Stack`` (subclass) that runs the blocks, or None.

    ``orders`` and ``merge`` are what ``layer_orders`` and ``skip_merge`` gave; a stack calls
    ``block.attn_out``/``block.mlp_out`` when it needs the branches separately. The default runs
    the encoder then the decoder with U-Net skips. Used by: parallel_lanes.
    """


@hookspec
def on_model_built(model, config):
    """After the model is built and initialised, before optimizers exist.

    May re-wire modules (share them), register buffers, or record initial state.
    Used by: ln_scale, ortho_init, parallel_lanes, qat, sandwich_norm, synaptic_scaling,
    weight_sharing.
    """


# ---- optimizers (build time) ---------------------------------------------------------


@hookspec(firstresult=True)
def param_role(name, param, config):
    """Optimizer build, once per parameter: return its role, or None to leave it to others.

    Roles of the baseline: ``embed`` (the token embedding), ``head`` (an untied head),
    ``matrix`` (2-D block matrices: Muon) and ``scalar`` (vectors, scalars and control
    tensors: Adam). A technique routes its own small gate tensors to ``scalar`` here. Used by:
    bigram_hash, parallel_lanes, skip_gates, smear_gate, sparse_attn_gate, value_embed.
    """


@hookspec(firstresult=True)
def build_optimizer(role, params, config):
    """Optimizer build, once per role with parameters: return its optimizer, or None.

    Every param group needs an ``lr``; the step scales ``base_lr`` (set from ``lr`` when
    missing) by the schedule. The default is the baseline's: Adam for ``embed``, ``head`` and
    ``scalar`` with their LRs, Muon for ``matrix``. Used by: adamw.
    """


@hookspec(firstresult=True)
def muon_orthogonalize(config):
    """Optimizer build: return ``f(G, steps) -> X``, Muon's orthogonalisation of an update, or None.

    The default is the baseline's quintic Newton-Schulz iteration (3.4445, -4.7750, 2.0315).
    Compiled on CUDA. Used by: polar_express.
    """


@hookspec
def muon_precondition(config):
    """Optimizer build: return ``f(G) -> G`` applied to Muon's Nesterov update before it is
    orthogonalised, or None. Used by: muon_eqr.
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
    ``model`` and ``progress``. Used by: head_diversity, logit_penalty, z_loss.
    """


# ---- every step, outside the compiled region --------------------------------------


@hookspec(firstresult=True)
def lr_schedule(clock, config):
    """Every step: return the LR multiplier (a float >= 0) applied to every optimizer's base LR.

    At most one plugin fills the ``lr_schedule`` slot. The default is the challenge's
    linear warmdown over the last ``warmdown_iters`` steps, measured in wallclock.
    Used by: breathing, circadian, cosine, cosine_2cycle, cosine_min, cosmological, frontier_lr,
    predator_prey, punctuated, tidal, whale_dive.
    """


@hookspec(firstresult=True)
def wd_schedule(clock, config):
    """Every step: return the decoupled weight decay applied to the matrix weights (0 for none).

    The default is 0 (the baseline uses no weight decay). Used by: muon_wd, predator_prey,
    predator_prey_wd, wd_ramp.
    """


@hookspec
def after_backward(model, clock):
    """Every step, after the gradients of all micro-steps are accumulated, before the optimizer step.

    Touch gradients in place (the step's LRs and Muon momentum are already set: a technique may
    still change them here). Used by: canopy, ema, muon_momentum, mycorrhizal, thermal_vent.
    """


@hookspec
def on_step(model, optimizers, clock):
    """Every step, after the optimizer step: edit weights in place (``torch.no_grad`` is active).

    Used by: canopy, controlled_burn, depth_recurrence, ema, head_pruning, muon_momentum, mutation_decay,
    progressive_growing, qat, swa, synaptic_scaling, weight_perturbation.
    """


# ---- data ---------------------------------------------------------------------------


@hookspec(firstresult=True)
def train_loader(config, rank, world_size, device):
    """Run start (and again after priming): return the training-batch loader, or None.

    A loader has ``next_batch(global_tokens, seq_len, grad_accum)`` returning ``(x, y)`` or
    ``(x, y, extras)``; ``extras`` (``segments``, a document index per position, and
    ``cu_seqlens`` for flash varlen: ``golfplan.core.model.attention.doc_extras``) are passed to the
    model's forward and reach attention. Its optional
    ``batch_extras(x) -> dict`` gives the same extras for any batch (evaluation and
    calibration use it). The default is the baseline's ``DistributedTokenLoader``.
    Used by: doc_packing.
    """


# ---- end of run -------------------------------------------------------------------


@hookspec
def on_train_end(model, optimizers, clock):
    """Once the training loop ends, before the final evaluation, calibration and export
    (``torch.no_grad`` is active): swap averaged weights in. Used by: ema, swa.
    """


@hookspec
def calibrate(model, batches, config):
    """After ``on_train_end``, on the training clock (see below): return statistics for the export chain
    (``{name: tensor}``, e.g. GPTQ's Hessians), or None.

    ``batches`` is an iterator of training batches ``(x, y, extras)`` from a fresh training
    loader: calibration never sees validation tokens. The time it takes is logged, and charged to
    the wallclock budget (``calibration_reserve_seconds`` of the cap is kept for it) or, with
    ``calibration_clock: after`` (the record's accounting), reported after the training clock.
    The statistics of every plugin are merged into one dict. Used by: gptq.
    """


@hookspec(firstresult=True)
def quantize_tensor(name, tensor, group, stats, config):
    """Export chain, once per stored float tensor (tensors sharing storage once): return a
    :class:`golfplan.core.export.quant.QTensor` of the tensor's shape, or None to leave it to the next
    plugin and finally to the default.

    ``group`` is the tensor's role by the core rule (``golfplan.core.export.quant.tensor_group``):
    ``attn``, ``mlp``, ``embed``, ``gate``, ``small`` or ``other``; ``stats`` is what the
    ``calibrate`` hooks returned. ``tensor`` may be on the training device, or a meta tensor when
    the budget estimate sizes the chain without data: then return the layout only
    (``golfplan.core.export.quant.planned``). Non-float tensors are stored as they are and never reach
    this hook. The default is the challenge's: int8 per row with an fp16 scale for tensors over
    65,536 elements, fp16 below (control tensors fp32). Used by: gptq, gptq_lite, mixed_bits.
    """


@hookspec
def export_postpass(qtensors, state_dict, stats, config):
    """Export chain, after every tensor is stored, in plugin order: return ``{name: QTensor}``
    replacing entries of ``qtensors``, or None.

    ``qtensors`` is ``{name: QTensor}`` as the previous links left it (each pass sees the ones
    before it); ``state_dict`` holds the unquantised tensors (meta tensors in the budget
    estimate). Used by: lqer.
    """


@hookspec(firstresult=True)
def compressor(config):
    """Export chain, last: return a :class:`golfplan.core.export.codec.Packing` (codec, byte shuffle, row
    sort, layout), or None.

    The default is the challenge's ``torch.save`` + zlib level 9. A plugin's packing is written
    in a container that records it, so the artifact's loader decodes any chain without the
    plugins. Used by: compress.
    """


@hookspec(firstresult=True)
def evaluate(model, val, config, final):
    """Evaluation: return ``(val_loss, val_bpb)``, or None for the default.

    ``val`` is a :class:`golfplan.core.evaluate.score.ValData`. ``final`` is False for the periodic
    and pre-export evaluations, True once, for the score of the round-tripped artifact: a
    strategy that adapts weights (test-time training) must return None unless ``final``.
    Score with ``golfplan.core.evaluate.score.score_tokens``/``score_windows`` and add every position
    once to a ``Tally`` (the causality probe, ``golfplan.check.causality``, reads it). ``val``
    carries per-token bytes (the sidecar's where the data has one), ``documents()`` and
    ``clock``: run a compile warm-up on random tokens inside ``val.clock.warmup()``.
    The default is the challenge's ``eval_val``. Used by: sliding_window, ttt_lora, ttt_sgd.
    """


@hookspec(firstresult=True)
def export(state_dict, config):
    """End of run: return a :class:`golfplan.core.export.artifact.Artifact` (bytes + loader), or None.

    A returned artifact replaces the whole export chain (``quantize_tensor``,
    ``export_postpass``, ``compressor``), whose default is the challenge's int8 per-row
    quantisation + zlib level 9; the round-trip BPB is measured on what the artifact's loader
    gives back. Used by: none yet.
    """
