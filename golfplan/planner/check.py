"""``golfplan check``: reject a bad combination of plugins before any GPU time is spent.

Five checks, in order, stopping at the first failure:

1. static       plugins exist, slots/conflicts/requires hold, params in range, the
                resolved config is valid, shards and tokenizer exist and agree;
2. trace        the composed model + loss, on a shrunken copy of the config, traced with
                ``torch.compile(fullgraph=True, backend="eager")`` on the CPU; then the
                run's progress is advanced (0.25 ... 1.0) with real training steps and the
                per-step hooks called as the trainer calls them, and the forward must run
                again without a recompile and with the same parameter set;
3. declarations each plugin's ``compile_safe`` agrees with what the trace found;
4. smoke        a few dozen real training steps of the shrunken model on the CPU: the
                loss must be finite and fall (catches techniques that train nothing);
5. budget       parameters and estimated artifact bytes of the real config against the
                16,000,000-byte limit, and the steps the wallclock allows.

Compile-unsafe plugins pass only when the user allows eager mode (``--allow-eager``);
the report then says the run will be eager.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterator, Sequence

from golfplan.core.config import RunSpec, config_problems, shrink
from golfplan.core.errors import GolfplanError

PROGRESS_POINTS = (0.25, 0.5, 0.75, 1.0)
WARN_FRACTION = 0.95  # artifact estimate above 95 % of the limit: a warning
PROFILE_WORLD = {"8xh100": 8}
BASELINE_PARAMS = 17_059_912  # the profiles' ms/step figures are for the baseline model

# Compressed size of the int8 payload (zlib level 9) as a fraction of its raw bytes. Calibrated on
# the seed log's reported artifacts (240-step models on an RTX 4000): E8 12.9 MB for a 17,172,768-byte
# payload (0.75) and H1 ~14 MB for 17,687,840 bytes (0.79); the larger is used. How well weights
# compress depends on how long they trained (benchmarks/README.md: 0.38 after 121 H100 steps), so
# the budget check also reports the uncompressed payload as an upper bound.
ZLIB_RATIO = 0.79


@dataclass
class CheckResult:
    name: str
    status: str  # pass | fail | warn | skip
    seconds: float = 0.0
    message: str = ""
    plugin: str | None = None


@dataclass
class CheckReport:
    results: list[CheckResult] = field(default_factory=list)
    eager: bool = False
    estimate: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(r.status != "fail" for r in self.results)

    @property
    def reason(self) -> str:
        for r in self.results:
            if r.status == "fail":
                return f"{r.name}: {r.message}"
        return ""

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "reason": self.reason, "eager": self.eager, "estimate": self.estimate,
                "checks": [asdict(r) for r in self.results]}


class CheckFailed(Exception):
    def __init__(self, message: str, plugin: str | None = None) -> None:
        super().__init__(message)
        self.plugin = plugin


# ---- the checks -------------------------------------------------------------------


def run_checks(spec: RunSpec, registry: Any, smoke_steps: int = 30, world_size: int | None = None,
               only_static: bool = False, log: Callable[[CheckResult], None] | None = None) -> CheckReport:
    """Run the checks in order, stopping at the first failure."""
    report = CheckReport()
    ws = world_size or PROFILE_WORLD.get(spec.profile, 1)
    state: dict[str, Any] = {}
    stages: list[tuple[str, Callable[[], tuple[str, str, str | None]]]] = [
        ("static", lambda: _static(spec, registry, ws, state)),
    ]
    if not only_static:
        stages += [
            ("trace", lambda: _trace(state)),
            ("declarations", lambda: _declarations(state)),
            ("smoke", lambda: _smoke(state, smoke_steps)),
            ("budget", lambda: _budget(state, report)),
        ]
    for name, fn in stages:
        t0 = time.perf_counter()
        try:
            status, message, plugin = fn()
        except CheckFailed as e:
            status, message, plugin = "fail", str(e), e.plugin
        except GolfplanError as e:
            status, message, plugin = "fail", str(e), None
        result = CheckResult(name, status, round(time.perf_counter() - t0, 3), message, plugin)
        report.results.append(result)
        if log:
            log(result)
        if status == "fail" and name != "trace":  # a failed trace is explained by the declarations check
            break
        if name == "declarations" and any(r.status == "fail" for r in report.results):
            break
    report.eager = bool(state.get("eager"))
    return report


def _static(spec: RunSpec, registry: Any, world_size: int, state: dict) -> tuple[str, str, str | None]:
    from golfplan.core.data import TRAIN_PATTERN, VAL_PATTERN, load_data_shard, shard_files
    from golfplan.core.hooks import apply_configure, resolve
    from golfplan.core.tokenizer import check_vocab, load_tokenizer

    techniques = registry.instantiate(spec.plugins)  # unknown names, slots, conflicts, requires, params
    hooks = resolve(techniques)
    config = apply_configure(hooks, spec.config, spec.explicit)
    problems = config_problems(config, world_size)
    if problems:
        raise CheckFailed(problems[0])
    unsafe = [t for t in techniques if not t.compile_safe]
    if unsafe and not config.allow_eager:
        t = unsafe[0]
        raise CheckFailed(f"refused: plugin '{t.name}' is not compile-safe ({t.unsafe_reason or 'declared unsafe'}); "
                          f"pass --allow-eager to run it in eager mode", t.name)
    state.update(techniques=techniques, config=config, eager=bool(unsafe))
    notes = []
    if config.data_path:
        if not config.tokenizer_path:
            raise CheckFailed("--data needs --tokenizer")
        for pattern in (TRAIN_PATTERN, VAL_PATTERN):
            load_data_shard(shard_files(config.data_path, pattern)[0])
        check_vocab(load_tokenizer(config.tokenizer_path), config.vocab_size, config.tokenizer_path)
        notes.append("shards and tokenizer agree")
    names = ", ".join(t.name for t in techniques) or "no plugins (baseline)"
    eager = f"; eager run ({', '.join(t.name for t in unsafe)} not compile-safe)" if unsafe else ""
    return "pass", f"{names}; config valid{'; ' + notes[0] if notes else ''}{eager}", None


@contextmanager
def _dynamo_isolated() -> Iterator[None]:
    import torch._dynamo as dynamo

    dynamo.reset()
    try:
        with dynamo.config.patch(error_on_recompile=False, suppress_errors=False):
            yield
    finally:
        dynamo.reset()


def trace_techniques(config: Any, techniques: Sequence[Any]) -> None:
    """Trace forward + loss of the composed model under ``fullgraph=True`` through the run's progress.

    ``config`` is the run's config with the plugins' ``configure`` overrides already applied
    (``golfplan.core.hooks.apply_configure``); it is shrunk here.

    Raises CheckFailed (first line of the tracer's reason) when the forward does not trace,
    recompiles after the run has started, or the parameter set changes mid-run.
    """
    import torch
    import torch._dynamo as dynamo

    from golfplan.core.hooks import build_model, resolve
    from golfplan.core.optim import build_optimizers
    from golfplan.core.state import Clock

    small = shrink(config, steps=20)
    hooks = resolve(techniques)
    torch.manual_seed(0)
    model = build_model(hooks, small)
    model.train()
    optimizers, _ = build_optimizers(model, small)
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, small.vocab_size, (2, small.train_seq_len), generator=gen)
    y = torch.randint(0, small.vocab_size, (2, small.train_seq_len), generator=gen)
    with torch.no_grad():
        model(x, y)  # fill lazily built caches (RoPE tables) so the first trace is the steady state
    params_before = _param_signature(model)
    with _dynamo_isolated():
        compiled = torch.compile(model, fullgraph=True, backend="eager", dynamic=False)
        try:
            compiled(x, y).backward()
        except Exception as e:  # noqa: BLE001 - dynamo raises many types; report the first line
            raise CheckFailed(f"does not trace with fullgraph=True at progress 0: {_first_line(e)}") from None
        for p in PROGRESS_POINTS:
            clock = Clock(step=int(p * small.iterations), iterations=small.iterations, seed=small.seed)
            model.progress.fill_(clock.progress)
            try:
                with dynamo.config.patch(error_on_recompile=True):
                    _train_step(compiled, model, optimizers, hooks, small, clock, x, y)
            except Exception as e:  # noqa: BLE001
                raise CheckFailed(f"the graph changed at progress {p}: {_first_line(e)}") from None
            after = _param_signature(model)
            if after != params_before:
                raise CheckFailed(f"the parameter set changed at progress {p} "
                                  f"({_signature_diff(params_before, after)})")


def _train_step(compiled: Any, model: Any, optimizers: list, hooks: Any, config: Any, clock: Any, x: Any, y: Any) -> None:
    """One step as the trainer runs it: schedule, forward/backward, grad hooks, optimizer, weight hooks."""
    import torch

    from golfplan.core.hooks import lr_multiplier

    scale = lr_multiplier(hooks, clock, config)
    for opt in optimizers:
        opt.zero_grad(set_to_none=True)
        for g in opt.param_groups:
            g["lr"] = g["base_lr"] * scale
    loss = compiled(x, y)
    loss.backward()
    for fn in hooks.after_backward:
        fn(model=model, clock=clock)
    hooks.wd_schedule(clock=clock, config=config)
    for opt in optimizers:
        opt.step()
    with torch.no_grad():
        for fn in hooks.on_step:
            fn(model=model, optimizers=optimizers, clock=clock)
    compiled(x, y)  # the forward must still be the same graph after this step's edits


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


def _first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("from user code", "File ", "Set TORCH", "For more")):
            return f"{type(e).__name__}: {line}"[:300]
    return type(e).__name__


def _trace(state: dict) -> tuple[str, str, str | None]:
    techniques, config = state["techniques"], state["config"]
    try:
        trace_techniques(config, techniques)
    except CheckFailed as e:
        state["trace_error"] = str(e)
        culprit = _culprit(config, techniques) if techniques else None
        state["culprit"] = culprit
        unsafe = {t.name for t in techniques if not t.compile_safe}
        if culprit in unsafe or (culprit is None and unsafe):
            state["trace_expected_failure"] = True
            who = culprit or ", ".join(sorted(unsafe))
            return "pass", f"eager run: {who} does not trace, as declared ({e})", culprit
        who = f"plugin '{culprit}'" if culprit else "the combination"
        raise CheckFailed(f"{who}: {e}", culprit) from None
    safe_note = " (static graph through progress 0, " + ", ".join(map(str, PROGRESS_POINTS)) + ")"
    return "pass", f"forward + loss trace with fullgraph=True{safe_note}", None


def _culprit(config: Any, techniques: Sequence[Any]) -> str | None:
    """The first plugin that fails the trace alone, or None when only the combination fails."""
    for t in techniques:
        try:
            trace_techniques(config, [t])
        except CheckFailed:
            return t.name
    return None


def _declarations(state: dict) -> tuple[str, str, str | None]:
    techniques = state["techniques"]
    culprit = state.get("culprit")
    if "trace_error" in state and not state.get("trace_expected_failure"):
        if culprit:
            raise CheckFailed(f"plugin '{culprit}' declares compile_safe = True but does not trace with "
                              f"fullgraph=True; the declaration is wrong", culprit)
        raise CheckFailed("every plugin declares compile_safe = True, yet together they do not trace; "
                          "an interaction of the declarations is wrong")
    if "trace_error" not in state:
        cautious = [t.name for t in techniques if not t.compile_safe]
        if cautious:
            return ("warn", f"{', '.join(cautious)} declared not compile-safe but the combination traced; "
                    f"the run stays eager", cautious[0])
    n = len(techniques)
    return "pass", f"{n} plugin declaration(s) agree with the trace" if n else "no plugins to check", None


def _smoke(state: dict, steps: int) -> tuple[str, str, str | None]:
    from golfplan.core.trainer import train

    small = shrink(state["config"], steps=steps).replace(allow_eager=True)
    result = train(small, state["techniques"], log=lambda m: None, distributed=False, configure=False)
    if result.status != "complete":
        raise CheckFailed(f"smoke training failed: {result.reason}")
    return ("pass", f"{result.steps} steps: loss {result.first_train_loss:.3f} -> {result.last_train_loss:.3f}, "
            f"val_bpb {result.val_bpb:.3f} (untrained {result.untrained_val_bpb:.3f})", None)


def payload_bytes(named: Sequence[tuple[str, Any]]) -> int:
    """Raw bytes the int8 export stores for these tensors (as ``quantize_state_dict_int8`` counts)."""
    from golfplan.core.export import INT8_KEEP_FLOAT_MAX_NUMEL
    from golfplan.core.model import CONTROL_TENSOR_NAME_PATTERNS

    total = 0
    for name, t in named:
        n = t.numel()
        if not t.is_floating_point():
            total += n * t.element_size()
        elif n <= INT8_KEEP_FLOAT_MAX_NUMEL:
            total += n * (4 if any(p in name for p in CONTROL_TENSOR_NAME_PATTERNS) else 2)
        else:
            total += n + (t.shape[0] * 2 if t.ndim == 2 else 4)
    return total


def _budget(state: dict, report: CheckReport) -> tuple[str, str, str | None]:
    import torch

    from golfplan.core.export import code_bytes
    from golfplan.core.hooks import build_model, resolve
    from golfplan.core.trainer import plugin_files

    config, techniques = state["config"], state["techniques"]
    with torch.device("meta"):
        model = build_model(resolve(techniques), config.replace(device="cpu"))
    seen: set[int] = set()
    unique = []
    for name, t in model.state_dict(keep_vars=True).items():
        if id(t) not in seen:
            seen.add(id(t))
            unique.append((name, t))
    params = sum(p.numel() for p in model.parameters())
    payload = payload_bytes(unique)
    code = code_bytes(plugin_files(techniques))
    artifact = int(payload * ZLIB_RATIO) + code
    upper = payload + code
    ms = config.ms_per_step_hint * params / BASELINE_PARAMS if config.ms_per_step_hint > 0 else 0.0
    steps = None
    if ms > 0 and config.max_wallclock_seconds > 0:
        steps = min(config.iterations, int(1000.0 * config.max_wallclock_seconds / ms))
    limit = config.artifact_limit_bytes
    report.estimate = {"params": params, "payload_bytes": payload, "code_bytes": code, "artifact_bytes": artifact,
                       "upper_bound_bytes": upper, "limit_bytes": limit, "ms_per_step": round(ms, 1) or None,
                       "steps": steps}
    step_note = (f"~{steps} steps in {config.max_wallclock_seconds:.0f}s at ~{ms:.0f} ms/step (profile's measured "
                 f"{config.ms_per_step_hint:.0f} ms/step for the baseline, scaled by parameter count)"
                 if steps is not None else "steps: no measured ms/step for this profile")
    msg = (f"{params:,} params; artifact ~{artifact:,} bytes (int8 payload {payload:,} x zlib {ZLIB_RATIO} "
           f"+ code {code:,}) of {limit:,}; {step_note}")
    if artifact > limit:
        raise CheckFailed(f"over the artifact limit: {msg}")
    if upper > limit:
        saving = 1 - (limit - code) / payload
        return "warn", f"{msg}; fits only if zlib saves >= {saving:.0%} of the payload (longer training compresses less)", None
    if artifact > WARN_FRACTION * limit:
        return "warn", f"close to the limit: {msg}", None
    return "pass", msg, None


# ---- the command ------------------------------------------------------------------


def format_result(r: CheckResult) -> str:
    mark = {"pass": "ok  ", "fail": "FAIL", "warn": "warn", "skip": "skip"}[r.status]
    return f"  {mark} {r.name:<13} {r.seconds:6.2f}s  {r.message}"


def add_parser(sub: argparse._SubParsersAction) -> None:
    from golfplan.cli import add_spec_options

    p = sub.add_parser("check", help="preflight a combination of plugins before any GPU time is spent",
                       description=__doc__.split("\n\n")[0])
    add_spec_options(p)
    p.add_argument("--smoke-steps", type=int, default=30, help="CPU training steps of the smoke check")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_check)


def cmd_check(args: argparse.Namespace) -> int:
    from golfplan.cli import EXIT_FAILED, EXIT_OK, spec_from_args
    from golfplan.core.errors import PluginError
    from golfplan.registry import Registry

    spec = spec_from_args(args)
    try:
        registry = Registry(plugin_paths=spec.plugin_paths)
    except PluginError as e:  # a broken --plugin-path file fails the static check
        report = CheckReport([CheckResult("static", "fail", 0.0, str(e))])
    else:
        if not args.json:
            print(f"golfplan check: {', '.join(spec.plugins) or 'baseline'} on profile {spec.profile}")
        report = run_checks(spec, registry, smoke_steps=args.smoke_steps,
                            log=None if args.json else (lambda r: print(format_result(r), flush=True)))
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        total = sum(r.seconds for r in report.results)
        if report.ok:
            mode = "eager (compile-unsafe plugins allowed)" if report.eager else "compiled where the profile compiles"
            print(f"all {len(report.results)} checks passed in {total:.1f}s; the run will be {mode}")
        else:
            print(f"check failed in {total:.1f}s: {report.reason}")
    return EXIT_OK if report.ok else EXIT_FAILED


def preflight_for_run(spec: RunSpec, registry: Any, quiet: bool = False, world_size: int | None = None) -> bool:
    """The checks ``golfplan run`` does before training. Under torchrun only the static check runs
    on each rank (the full checks run in ``golfplan run --nproc`` before it launches torchrun)."""
    import os

    in_torchrun = "RANK" in os.environ and "WORLD_SIZE" in os.environ
    say = (lambda r: None) if quiet else (lambda r: print(format_result(r), file=sys.stderr, flush=True))
    if not quiet:
        print(f"preflight: {', '.join(spec.plugins) or 'baseline'} on profile {spec.profile}", file=sys.stderr)
    report = run_checks(spec, registry, only_static=in_torchrun,
                        world_size=int(os.environ["WORLD_SIZE"]) if in_torchrun else world_size, log=say)
    if not report.ok and not quiet:
        print(f"error: preflight failed, not training: {report.reason}", file=sys.stderr)
    return report.ok
