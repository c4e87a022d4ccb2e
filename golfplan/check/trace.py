"""The trace check: the composed model, trained by the trainer's own step under
``torch.compile(fullgraph=True, backend="eager")`` on the CPU, through the run's progress.

The model (a shrunken copy of the run's config) is primed with ``golfplan.core.train.step.prime`` as a
run is, then trained with ``golfplan.core.train.step.Step`` at progress 0, 0.25, ... 1.0 with dynamo's
``error_on_recompile`` on: a forward that does not trace, a graph that changes after priming
(a module swapped mid-run, a Python branch on progress) or a parameter set that changes is caught
and reported with the tracer's first line. Every build uses fresh plugin instances.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Sequence

from golfplan.core.config import shrink

PROGRESS_POINTS = (0.25, 0.5, 0.75, 1.0)


class CheckFailed(Exception):
    def __init__(self, message: str, plugin: str | None = None) -> None:
        super().__init__(message)
        self.plugin = plugin


@contextmanager
def dynamo_isolated() -> Iterator[None]:
    import torch._dynamo as dynamo

    dynamo.reset()
    try:
        with dynamo.config.patch(error_on_recompile=False, suppress_errors=False):
            yield
    finally:
        dynamo.reset()


def trace_techniques(config: Any, techniques: Sequence[Any]) -> None:
    """Trace forward + loss of the composed model under ``fullgraph=True`` through the run's progress.

    ``config`` is the run's config with the plugins' ``configure`` overrides already applied (the
    run's ``golfplan.core.hooks.Composition``); it is shrunk here, and the techniques are built
    fresh on it.

    Raises CheckFailed (first line of the tracer's reason) when the forward does not trace,
    recompiles after priming, or the parameter set changes mid-run.
    """
    import torch
    import torch._dynamo as dynamo

    from golfplan.core.hooks import build_model, compose
    from golfplan.core.train.optim import build_optimizers
    from golfplan.core.state import Clock
    from golfplan.core.train.step import Step, prime

    small = shrink(config, steps=20)
    hooks = compose([t.fresh() for t in techniques], small, configure=False).hooks
    torch.manual_seed(0)
    model = build_model(hooks, small)
    model.train()
    optimizers, muon = build_optimizers(model, small, hooks)
    batch = _trace_batch(hooks, small)
    with torch.no_grad():
        model(batch[0], batch[1], **batch[2])  # fill lazily built caches (RoPE tables): the first trace is the steady state
    params_before = _param_signature(model)
    x, y, extras = batch
    with dynamo_isolated():
        compiled = torch.compile(model, fullgraph=True, backend="eager", dynamic=False)
        step = Step(compiled, model, optimizers, muon, hooks, small, lambda: batch, grad_accum=1)
        try:
            prime(step, 1)
        except Exception as e:  # noqa: BLE001 - dynamo raises many types; report the first line
            raise CheckFailed(f"does not trace with fullgraph=True at progress 0: {first_line(e)}") from None
        for p in PROGRESS_POINTS:
            clock = Clock(step=int(p * small.iterations), iterations=small.iterations, seed=small.seed)
            try:
                with dynamo.config.patch(error_on_recompile=True):
                    step(clock)
                    compiled(x, y, **extras)  # the forward must still be the same graph after this step's edits
            except Exception as e:  # noqa: BLE001
                raise CheckFailed(f"the graph changed at progress {p}: {first_line(e)}") from None
            after = _param_signature(model)
            if after != params_before:
                raise CheckFailed(f"the parameter set changed at progress {p} "
                                  f"({_signature_diff(params_before, after)})")


def _trace_batch(hooks: Any, config: Any) -> tuple:
    """Two sequences to trace with: random tokens, or, when a plugin supplies the training loader
    (its batches carry extras such as document segments), one of its real batches."""
    import torch

    if hooks.pm.hook.train_loader.get_hookimpls():
        from golfplan.core.train.step import unpack
        from golfplan.core.train.trainer import resolve_data

        data = resolve_data(config, True, lambda m: None)
        loader = hooks.pm.hook.train_loader(config=data, rank=0, world_size=1, device=torch.device("cpu"))
        if loader is not None:
            return unpack(loader.next_batch(2 * config.train_seq_len, config.train_seq_len, 1))
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, config.vocab_size, (2, config.train_seq_len), generator=gen)
    y = torch.randint(0, config.vocab_size, (2, config.train_seq_len), generator=gen)
    return x, y, {}


def culprit(config: Any, techniques: Sequence[Any]) -> str | None:
    """The first plugin that fails the trace alone, or None when only the combination fails."""
    for t in techniques:
        try:
            trace_techniques(config, [t])
        except CheckFailed:
            return t.name
    return None


def _param_signature(model: Any) -> list[tuple[str, tuple, int]]:
    return [(n, tuple(p.shape), id(p)) for n, p in model.named_parameters()]


def _signature_diff(a: list, b: list) -> str:
    sa, sb = {x[0]: x for x in a}, {x[0]: x for x in b}
    added = [n for n in sb if n not in sa]
    removed = [n for n in sa if n not in sb]
    changed = [n for n in sa if n in sb and sa[n] != sb[n]]
    parts = [f"{label}: {', '.join(v[:3])}{' ...' if len(v) > 3 else ''}"
             for label, v in (("added", added), ("removed", removed), ("replaced", changed)) if v]
    return "; ".join(parts)


def first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("from user code", "File ", "Set TORCH", "For more")):
            return f"{type(e).__name__}: {line}"[:300]
    return type(e).__name__
