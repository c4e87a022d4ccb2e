"""The plugin manager of a run, the one-time resolution of its hooks, and the run's composition.

``make_manager`` registers the core defaults (``trylast``) and the run's technique
instances, then calls ``pm.check_pending()`` so a misspelt hook name fails loudly.
``resolve`` turns the manager into plain callables (``Hooks``), once per run: the
trainer never dispatches through pluggy inside the step loop.

``compose(techniques, config)`` is the one place a run's plugins are put together: resolved, then
configured (every plugin's ``configure`` applied to the config, once), and judged eager or
compiled. The trainer, ``golfplan check`` (its static stage configures; its trace, smoke run and
budget compose fresh instances of the same plugins on the configured config, ``configure=False``),
``golfplan check --legal`` and ``golfplan export`` (a finished run's configured config) all go
through it. A packed train_gpt.py
bakes the configured config, so there ``configure`` never runs (and is not packed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import pluggy
from torch import nn

from golfplan.core import hookspecs
from golfplan.core.config import FIELD_TYPES, Config, coerce_field
from golfplan.core.errors import ConfigError, PluginError, closest
from golfplan.core.model.gpt import (GPT, MLP, Block, CausalSelfAttention, ForwardFns, LayerOrder, Parts, SkipAdd, Stack,
                                 relu2, unet_order)
from golfplan.core.train.optim import baseline_optimizer, baseline_role, zeropower_via_newtonschulz5
from golfplan.core.export.pack import PACKED
from golfplan.core.state import Clock
from golfplan.core.technique import PROJECT, Technique, hookimpl


class CoreDefaults:
    """The baseline's behaviour, as ``trylast`` hookimpls every technique can override."""

    def __init__(self) -> None:
        self.pm: pluggy.PluginManager | None = None  # set by make_manager: Muon's parts are hooks too

    @hookimpl(trylast=True)
    def build_attention(self, config: Config, layer_idx: int) -> nn.Module:
        return CausalSelfAttention(config)

    @hookimpl(trylast=True)
    def activation(self, config: Config) -> Callable:
        return relu2

    @hookimpl(trylast=True)
    def build_mlp(self, config: Config, layer_idx: int, activation: Callable) -> nn.Module:
        return MLP(config, activation)

    @hookimpl(trylast=True)
    def build_block(self, config: Config, layer_idx: int, attn: nn.Module, mlp: nn.Module) -> nn.Module:
        return Block(config, attn, mlp)

    @hookimpl(trylast=True)
    def param_role(self, name: str, param: Any, config: Config) -> str:
        return baseline_role(name, param)

    @hookimpl(trylast=True)
    def build_optimizer(self, role: str, params: list, config: Config) -> Any:
        fused = bool(params) and params[0].is_cuda
        if role != "matrix" or self.pm is None:
            return baseline_optimizer(role, params, config, fused=fused)
        h = self.pm.hook
        return baseline_optimizer(role, params, config, fused=fused,
                                  orthogonalize=h.muon_orthogonalize(config=config),
                                  precondition=collect(h.muon_precondition, config=config))

    @hookimpl(trylast=True)
    def muon_orthogonalize(self, config: Config) -> Callable:
        return zeropower_via_newtonschulz5

    @hookimpl(trylast=True)
    def lr_schedule(self, clock: Clock, config: Config) -> float:
        return linear_warmdown(clock, config)

    @hookimpl(trylast=True)
    def wd_schedule(self, clock: Clock, config: Config) -> float:
        return 0.0


def linear_warmdown(clock: Clock, config: Config) -> float:
    """The challenge's ``lr_mul``: linear decay over the last ``warmdown_iters`` steps.

    With a wallclock cap the warmdown window is measured in time: ``warmdown_iters``
    times the mean step time so far, counted back from the cap.
    """
    if config.warmdown_iters <= 0:
        return 1.0
    if config.max_wallclock_seconds <= 0:
        start = max(config.iterations - config.warmdown_iters, 0)
        if start <= clock.step < config.iterations:
            return max((config.iterations - clock.step) / max(config.warmdown_iters, 1), 0.0)
        return 1.0
    step_ms = 1000.0 * clock.elapsed_s / max(clock.step, 1)
    warmdown_ms = config.warmdown_iters * step_ms
    remaining_ms = max(1000.0 * (config.max_wallclock_seconds - clock.elapsed_s), 0.0)
    return remaining_ms / max(warmdown_ms, 1e-9) if remaining_ms <= warmdown_ms else 1.0


def make_manager(techniques: Sequence[Technique]) -> pluggy.PluginManager:
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    defaults = CoreDefaults()
    pm.register(defaults, name="golfplan.core.defaults")
    defaults.pm = pm
    for t in techniques:
        pm.register(t, name=t.name)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as e:  # (a packed file's plugins were validated when it was packed)
        raise PluginError(str(e) if PACKED else _pending_message(e, pm)) from None
    return pm


def _pending_message(e: pluggy.PluginValidationError, pm: pluggy.PluginManager) -> str:
    names = [n for n in dir(hookspecs) if not n.startswith("_") and callable(getattr(hookspecs, n))
             and n not in ("hookspec", "annotations")]
    msg = str(e)
    for word in msg.replace("'", " ").split():
        if word.isidentifier() and word not in names and "_" in word:
            return f"plugin '{getattr(e.plugin, 'name', e.plugin)}' implements unknown hook '{word}'{closest(word, names)}"
    return f"plugin '{getattr(e.plugin, 'name', e.plugin)}': {msg}"


def call_order(caller: Any) -> list[Callable[..., Any]]:
    """The hookimpls of ``caller`` in the order pluggy would call them, as plain callables.

    Each takes the hook's arguments by keyword and passes on only those its impl
    declares (pluggy lets an impl accept a subset of the spec's arguments).
    """
    return [_bound(impl) for impl in reversed(caller.get_hookimpls())]


def _bound(impl: Any) -> Callable[..., Any]:
    fn, names = impl.function, tuple(impl.argnames)

    def call(**kwargs: Any) -> Any:
        return fn(*(kwargs[n] for n in names))

    call.__name__ = f"{impl.plugin_name}.{fn.__name__}"
    return call


def impl_owner(caller: Any) -> list[str]:
    return [impl.plugin_name for impl in reversed(caller.get_hookimpls())]


@dataclass
class Hooks:
    """A run's hooks, resolved once: plain callables, no dispatch in the step loop."""

    pm: pluggy.PluginManager
    techniques: list[Technique]
    lr_schedule: Callable[[Clock, Config], float]
    wd_schedule: Callable[[Clock, Config], float]
    after_backward: list[Callable] = field(default_factory=list)
    on_step: list[Callable] = field(default_factory=list)
    on_train_end: list[Callable] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.techniques]


def resolve(techniques: Sequence[Technique]) -> Hooks:
    pm = make_manager(techniques)
    h = pm.hook
    return Hooks(
        pm=pm,
        techniques=list(techniques),
        lr_schedule=call_order(h.lr_schedule)[0],
        wd_schedule=call_order(h.wd_schedule)[0],
        after_backward=call_order(h.after_backward),
        on_step=call_order(h.on_step),
        on_train_end=call_order(h.on_train_end),
    )


def apply_configure(hooks: Hooks, config: Config, explicit: set[str] | frozenset[str] = frozenset()) -> Config:
    """Apply every plugin's ``configure`` overrides; two sources setting one field differently is an error."""
    setters: dict[str, tuple[str, Any]] = {}
    caller = hooks.pm.hook.configure
    for owner, fn in zip(impl_owner(caller), call_order(caller)):
        out = fn(config=config)
        if not out:
            continue
        for key, value in out.items():
            if key not in FIELD_TYPES:
                raise PluginError(f"plugin '{owner}' configures unknown key '{key}'{closest(key, FIELD_TYPES)}")
            value = coerce_field(key, value)
            if key in setters and setters[key][1] != value:
                other = setters[key][0]
                raise PluginError(f"plugins '{other}' and '{owner}' both set {key} "
                                  f"({setters[key][1]!r} vs {value!r})")
            if key in explicit and getattr(config, key) != value:
                raise ConfigError(f"{key} is set to {getattr(config, key)!r} in the config and to {value!r} "
                                  f"by plugin '{owner}'; drop one (or set the plugin's param)")
            setters[key] = (owner, value)
    if not setters:
        return config
    return config.replace(**{k: v for k, (_, v) in setters.items()})


@dataclass
class Composition:
    """A run's plugins, composed once: the technique instances, their resolved hooks and the config
    after every plugin's ``configure``."""

    techniques: list[Technique]
    hooks: Hooks
    config: Config

    @property
    def eager_reasons(self) -> list[str]:
        """Why the run cannot compile: one line per compile-unsafe technique (empty: it can)."""
        return [f"{t.name}: {t.unsafe_reason or 'not compile-safe'}" for t in self.techniques if not t.compile_safe]


def compose(techniques: Sequence[Technique], config: Config, explicit: set[str] | frozenset[str] = frozenset(),
            configure: bool = True) -> Composition:
    """Resolve the techniques' hooks and, unless ``configure`` is False (the config is already the
    configured one: a rebuilt run, a packed file), apply their ``configure`` overrides."""
    hooks = resolve(techniques)
    if configure and not PACKED:
        config = apply_configure(hooks, config, explicit)
    return Composition(list(techniques), hooks, config)


def collect(caller: Any, **kwargs: Any) -> list[Any]:
    """Every non-None result of a collecting hook, in the order the plugins were given (pluggy
    itself calls the last registered first)."""
    return [out for fn in call_order(caller) if (out := fn(**kwargs)) is not None]


def forward_fns(hooks: Hooks, config: Config) -> ForwardFns:
    h = hooks.pm.hook
    fns = ForwardFns(
        batch=collect(h.on_batch, config=config),
        embed=collect(h.on_embed, config=config),
        branch=collect(h.on_branch, config=config),
        loss_terms=collect(h.on_loss, config=config),
    )
    token_loss = h.token_loss(config=config)
    if token_loss is not None:
        fns.token_loss = token_loss
    reduce = h.reduce_loss(config=config)
    if reduce is not None:
        fns.reduce_loss = reduce
    return fns


def build_model(hooks: Hooks, config: Config) -> GPT:
    """Build the GPT through the build hooks, then run ``on_model_built``."""
    h = hooks.pm.hook
    act = h.activation(config=config)
    blocks: list[nn.Module] = []
    for i in range(config.num_layers):
        attn = h.build_attention(config=config, layer_idx=i)
        taps = collect(h.attention_taps, config=config, layer_idx=i)
        if taps:
            if not isinstance(getattr(attn, "taps", None), nn.ModuleList):
                raise PluginError(f"attention taps need an attention built on golfplan.core.model.gpt.CausalSelfAttention; "
                                  f"layer {i}'s is {type(attn).__name__}")
            attn.taps.extend(taps)
        mlp = h.build_mlp(config=config, layer_idx=i, activation=act)
        block = h.build_block(config=config, layer_idx=i, attn=attn, mlp=mlp)
        wrapped = h.wrap_block(config=config, layer_idx=i, block=block)
        blocks.append(wrapped if wrapped is not None else block)
    orders = h.layer_orders(config=config) or {"default": unet_order(config)}
    check_orders(orders, config.num_layers)
    num_skips = max(min(len(e), len(d)) for e, d in orders.values())
    merge = h.skip_merge(config=config, num_skips=num_skips) or SkipAdd()
    stack = h.build_stack(config=config, orders=orders, merge=merge) or Stack(orders, merge)
    parts = Parts(blocks=blocks, embeds=collect(h.build_embed, config=config), stack=stack, fns=forward_fns(hooks, config))
    model = GPT(config, parts=parts)
    for fn in call_order(h.on_model_built):
        fn(model=model, config=config)
    return model


def check_orders(orders: dict[str, LayerOrder], num_layers: int) -> None:
    if not orders:
        raise PluginError("layer_orders returned no order")
    for name, (encoder, decoder) in orders.items():
        bad = [i for i in (*encoder, *decoder) if not 0 <= int(i) < num_layers]
        if bad:
            raise PluginError(f"layer order '{name}' names block {bad[0]}, but there are {num_layers} blocks")


def lr_multiplier(hooks: Hooks, clock: Clock, config: Config) -> float:
    m = float(hooks.lr_schedule(clock=clock, config=config))
    if not math.isfinite(m) or m < 0:
        raise PluginError(f"lr_schedule returned {m} at progress {clock.progress:.3f}; it must be a finite number >= 0")
    return m


# ---- the hook reference (``golfplan hooks``, the README's table, the "Used by" test) ---------


@dataclass
class HookDoc:
    name: str
    phase: str  # the section of hookspecs.py the hook is declared in
    args: list[str]
    firstresult: bool
    summary: str  # the docstring's first sentence
    doc: str
    used_by: list[str]  # the docstring's "Used by:" list

    def signature(self) -> str:
        return f"{self.name}({', '.join(self.args)})"


def hook_reference() -> list[HookDoc]:
    """Every hook of ``hookspecs.py`` in declaration order, with its phase, arguments and users."""
    import inspect
    import re

    source = inspect.getsource(hookspecs).splitlines()
    sections = [(i + 1, m.group(1).strip()) for i, line in enumerate(source)
                if (m := re.match(r"#\s*-{3,}\s*(.*?)\s*-{3,}\s*$", line))]
    out = []
    for name, fn in vars(hookspecs).items():
        opts = getattr(fn, "golfplan_spec", None)
        if opts is None or not callable(fn):
            continue
        line = inspect.getsourcelines(fn)[1]
        phase = next((title for start, title in reversed(sections) if start < line), "")
        doc = inspect.cleandoc(fn.__doc__ or "")
        used = re.search(r"Used by:\s*(.*?)(?:\.\s|\.$|$)", " ".join(doc.split()))
        users = [re.sub(r"\s*\(.*?\)", "", u).strip() for u in used.group(1).split(",")] if used else []
        users = [u for u in users if u and u not in ("none", "none yet")]
        summary = doc.split("\n\n")[0].replace("\n", " ")
        out.append(HookDoc(name, phase, list(inspect.signature(fn).parameters), bool(opts.get("firstresult")),
                           summary, doc, users))
    out.sort(key=lambda h: inspect.getsourcelines(getattr(hookspecs, h.name))[1])
    return out
