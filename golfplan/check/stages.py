"""``golfplan check``: reject a bad combination of plugins before any GPU time is spent.

Five checks, in order, stopping at the first failure:

1. static       plugins exist, slots/conflicts/requires hold, params in range, the
                resolved config is valid, shards and tokenizer exist and agree;
2. trace        the composed model + loss, on a shrunken copy of the config, trained by the
                trainer's own step under ``torch.compile(fullgraph=True, backend="eager")``
                through the run's progress (``golfplan.check.trace``);
3. declarations each plugin's ``compile_safe`` agrees with what the trace found;
4. smoke        a few dozen real training steps of the shrunken model on the CPU: the
                loss must be finite and fall (catches techniques that train nothing);
                skipped where the run itself is a CPU run (it is its own smoke test);
5. budget       parameters and estimated artifact bytes of the real config (its export chain's
                exact payload x a measured compression ratio, + code) against the
                16,000,000-byte limit, and the steps the wallclock allows.

Compile-unsafe plugins pass only when the user allows eager mode (``--allow-eager``);
the report then says the run will be eager.

Every stage has a time limit (:func:`stage_limit_s`: ``--check-timeout``, else
``$GOLFPLAN_CHECK_TIMEOUT``, else the profile's: 300 s on a CPU profile, 600 s on a GPU one). Plugin
code runs in the stages, and a plugin can hang (a hook that never returns), so each stage runs on a
daemon thread that the check stops waiting for at its limit: the stage fails with kind ``timeout``
and the line it was executing, the way a study refuses a trial that passes its hard limit. The
thread is left behind; the process that ran the check (``golfplan check``, ``golfplan run``) exits
soon after, and with it the thread. An exception a stage raises propagates unchanged (a study reads
a crash or an out-of-memory from the process's last error line).
"""

from __future__ import annotations

import linecache
import os
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from golfplan.check.trace import PROGRESS_POINTS, CheckFailed, culprit, trace_techniques
from golfplan.core.config import RunSpec, config_problems, shrink
from golfplan.core.errors import ConfigError, GolfplanError
from golfplan.core.profiles import world_size as profile_world_size

WARN_FRACTION = 0.95  # artifact estimate above 95 % of the limit: a warning
# An estimate whose ratio was measured on another chain (golfplan.core.export.sizing: codec, code width,
# scale rule or layout differ) is uncertain by at least what layouts alone change: the record's
# pergroup layout saved 1.7 % over one brotli-11 stream of the same codes (~280 KB of 16.1 MB). Over
# the limit by less than this margin on a borrowed ratio is a warning (the run measures the real
# bytes and `golfplan check --legal RUN_DIR` rules on them), by more a failure.
BORROWED_RATIO_MARGIN = 0.03
BASELINE_PARAMS = 17_059_912  # the profiles' ms/step figures are for the baseline model

# Each stage's time limit by the profile's device: far above what a stage takes (benchmarks/check_speed.py
# prints each stage's time; a GPU profile's trace of the record's whole stack is the longest), so they
# end a hang and never judge speed.
STAGE_LIMIT_S = {"cpu": 300.0, "cuda": 600.0}
TIMEOUT_ENV = "GOLFPLAN_CHECK_TIMEOUT"  # the limit for every check a process starts (golfplan study --check-timeout)

# The budget's compressed size is the chain's exact payload times a ratio measured on trained
# full-size models for its codec and code width: golfplan.core.export.sizing.MEASURED says where each
# figure comes from. How well weights compress depends on how long they trained, so the check also
# reports the uncompressed payload as an upper bound.


@dataclass
class CheckResult:
    name: str
    status: str  # pass | fail | warn | skip
    seconds: float = 0.0
    message: str = ""
    plugin: str | None = None
    failure: str = ""  # timeout: the stage passed its time limit ("" for a check's own verdict)


@dataclass
class CheckReport:
    results: list[CheckResult] = field(default_factory=list)
    eager: bool = False
    estimate: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(r.status != "fail" for r in self.results)

    @property
    def failed(self) -> CheckResult | None:
        return next((r for r in self.results if r.status == "fail"), None)

    @property
    def reason(self) -> str:
        r = self.failed
        return f"{r.name}: {r.message}" if r else ""

    @property
    def failure(self) -> str:
        """How the check failed: ``timeout`` (a stage passed its limit), ``refused`` (a check said no),
        "" when it passed."""
        r = self.failed
        return (r.failure or "refused") if r else ""

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "reason": self.reason, "failure": self.failure, "eager": self.eager,
                "estimate": self.estimate, "checks": [asdict(r) for r in self.results]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CheckReport":
        return cls([CheckResult(**c) for c in data.get("checks", [])], bool(data.get("eager")),
                   dict(data.get("estimate") or {}))


def stage_limit_s(spec: RunSpec, override: float | None = None) -> float:
    """Seconds each stage may take: ``override`` (``--check-timeout``), else ``$GOLFPLAN_CHECK_TIMEOUT``,
    else the profile's (``STAGE_LIMIT_S`` by its device)."""
    if override is not None:
        if not override > 0:
            raise ConfigError(f"the check's time limit must be a positive number of seconds, got {override}")
        return float(override)
    text = os.environ.get(TIMEOUT_ENV, "").strip()
    if text:
        try:
            value = float(text)
        except ValueError:
            value = 0.0
        if not 0 < value < float("inf"):
            raise ConfigError(f"{TIMEOUT_ENV}={text!r}: expected a positive number of seconds")
        return value
    return STAGE_LIMIT_S["cpu" if str(spec.config.device) == "cpu" else "cuda"]


class StageTimeout(Exception):
    """A stage did not return within its limit; ``where`` is the line its thread was executing."""

    def __init__(self, limit_s: float, where: str, plugin: str | None) -> None:
        who = f"plugin '{plugin}'" if plugin else "the stage"
        super().__init__(f"timed out: {who} still running after the stage's limit of {limit_s:g}s (--check-timeout)"
                         + (f"; last line: {where}" if where else ""))
        self.plugin = plugin


def _within(fn: Callable[[], Any], limit_s: float, state: dict) -> Any:
    """``fn()`` on a daemon thread, waited for ``limit_s``: its value, its exception re-raised here, or
    :class:`StageTimeout` naming the line the thread was at (and the plugin whose file it is in)."""
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = e

    thread = threading.Thread(target=work, name="golfplan-check-stage", daemon=True)
    thread.start()
    thread.join(limit_s)
    if thread.is_alive():
        where, plugin = _last_line(thread, state.get("plugin_modules") or {})
        raise StageTimeout(limit_s, where, plugin)
    if "error" in box:
        raise box["error"]
    return box["value"]


def _plugin_modules(spec: RunSpec, registry: Any) -> dict[str, str]:
    """{module name: plugin name} of the spec's plugins (those the registry knows)."""
    out = {}
    for name in spec.plugins:
        try:
            out.setdefault(registry.get(name).__module__, name)
        except Exception:  # noqa: BLE001 - an unknown plugin: the static stage says so
            continue
    return out


def _last_line(thread: threading.Thread, plugin_modules: dict[str, str]) -> tuple[str, str | None]:
    """The line ``thread`` is executing (``file:line in function: source``), and the plugin whose
    code is innermost on its stack (a frame of its module: a hook, or a function the hook made)."""
    frame = sys._current_frames().get(thread.ident or -1)
    if frame is None:
        return "", None
    code = frame.f_code
    source = linecache.getline(code.co_filename, frame.f_lineno).strip()
    where = f"{os.path.basename(code.co_filename)}:{frame.f_lineno} in {code.co_name}" + (f": {source}" if source else "")
    f, plugin = frame, None
    while f is not None and plugin is None:
        plugin = plugin_modules.get(f.f_globals.get("__name__", ""))
        f = f.f_back
    return where, plugin


def run_checks(spec: RunSpec, registry: Any, smoke_steps: int = 30, world_size: int | None = None,
               only_static: bool = False, smoke: bool = True,
               log: Callable[[CheckResult], None] | None = None, timeout_s: float | None = None) -> CheckReport:
    """Run the checks in order, stopping at the first failure; each stage within
    :func:`stage_limit_s` (``timeout_s`` overrides the profile's limit)."""
    report = CheckReport()
    ws = world_size or profile_world_size(spec.profile)
    limit = stage_limit_s(spec, timeout_s)
    state: dict[str, Any] = {"plugin_modules": _plugin_modules(spec, registry)}
    stages: list[tuple[str, Callable[[], tuple[str, str, str | None]]]] = [
        ("static", lambda: _static(spec, registry, ws, state)),
    ]
    if not only_static:
        stages += [
            ("trace", lambda: _trace(state)),
            ("declarations", lambda: _declarations(state)),
            ("smoke", (lambda: _smoke(state, smoke_steps)) if smoke else
             (lambda: ("skip", "the run itself trains on the CPU: it is its own smoke test", None))),
            ("budget", lambda: _budget(state, report)),
        ]
    for name, fn in stages:
        t0 = time.perf_counter()
        failure = ""
        try:
            status, message, plugin = _within(fn, limit, state)
        except StageTimeout as e:
            status, message, plugin, failure = "fail", str(e), e.plugin, "timeout"
        except CheckFailed as e:
            status, message, plugin = "fail", str(e), e.plugin
        except GolfplanError as e:
            status, message, plugin = "fail", str(e), None
        result = CheckResult(name, status, round(time.perf_counter() - t0, 3), message, plugin, failure)
        report.results.append(result)
        if log:
            log(result)
        if status == "fail" and (name != "trace" or failure):  # a failed trace is explained by the declarations check
            break
        if name == "declarations" and any(r.status == "fail" for r in report.results):
            break
    report.eager = bool(state.get("eager"))
    return report


def _static(spec: RunSpec, registry: Any, world_size: int, state: dict) -> tuple[str, str, str | None]:
    from golfplan.core.data.shards import TRAIN_PATTERN, load_data_shard, load_validation_tokens, shard_files
    from golfplan.core.hooks import compose
    from golfplan.core.data.tokenizer import check_tokens_match, check_vocab, load_tokenizer

    # unknown names, slots, conflicts, requires, params; then resolved and configured, once (the
    # trace, the smoke run and the budget build fresh instances on this configured config)
    comp = compose(registry.instantiate(spec.plugins), spec.config, spec.explicit)
    techniques, config = comp.techniques, comp.config
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
        load_data_shard(shard_files(config.data_path, TRAIN_PATTERN)[0])
        sp = load_tokenizer(config.tokenizer_path)
        check_vocab(sp, config.vocab_size, config.tokenizer_path)
        check_tokens_match(sp, load_validation_tokens(config.data_path, config.train_seq_len, 65536),
                           config.tokenizer_path)
        notes.append("shards and tokenizer agree")
    names = ", ".join(t.name for t in techniques) or "no plugins (baseline)"
    eager = f"; eager run ({', '.join(t.name for t in unsafe)} not compile-safe)" if unsafe else ""
    return "pass", f"{names}; config valid{'; ' + notes[0] if notes else ''}{eager}", None


def _trace(state: dict) -> tuple[str, str, str | None]:
    techniques, config = state["techniques"], state["config"]
    try:
        trace_techniques(config, techniques)
    except CheckFailed as e:
        state["trace_error"] = str(e)
        who_failed = culprit(config, techniques) if techniques else None
        state["culprit"] = who_failed
        unsafe = {t.name for t in techniques if not t.compile_safe}
        if who_failed in unsafe or (who_failed is None and unsafe):
            state["trace_expected_failure"] = True
            who = who_failed or ", ".join(sorted(unsafe))
            return "pass", f"eager run: {who} does not trace, as declared ({e})", who_failed
        who = f"plugin '{who_failed}'" if who_failed else "the combination"
        raise CheckFailed(f"{who}: {e}", who_failed) from None
    safe_note = " (static graph through progress 0, " + ", ".join(map(str, PROGRESS_POINTS)) + ")"
    return "pass", f"forward + loss trace with fullgraph=True{safe_note}", None


def _declarations(state: dict) -> tuple[str, str, str | None]:
    techniques = state["techniques"]
    who = state.get("culprit")
    if "trace_error" in state and not state.get("trace_expected_failure"):
        if who:
            raise CheckFailed(f"plugin '{who}' declares compile_safe = True but does not trace with "
                              f"fullgraph=True; the declaration is wrong", who)
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
    from golfplan.core.train.trainer import train

    small = shrink(state["config"], steps=steps).replace(allow_eager=True)
    result = train(small, [t.fresh() for t in state["techniques"]], log=lambda m: None, distributed=False,
                   configure=False)
    if result.status != "complete":
        raise CheckFailed(f"smoke training failed: {result.reason}")
    return ("pass", f"{result.steps} steps: loss {result.first_train_loss:.3f} -> {result.last_train_loss:.3f}, "
            f"val_bpb {result.val_bpb:.3f} (untrained {result.untrained_val_bpb:.3f})", None)


def _budget(state: dict, report: CheckReport) -> tuple[str, str, str | None]:
    import torch

    from golfplan.core.hooks import build_model, compose
    from golfplan.core.export.pack import code_size
    from golfplan.core.profiles import step_capped
    from golfplan.core.export.sizing import estimate_artifact

    config, techniques = state["config"], state["techniques"]
    hooks = compose([t.fresh() for t in techniques], config, configure=False).hooks
    with torch.device("meta"):
        model = build_model(hooks, config.replace(device="cpu"))
    est = estimate_artifact(hooks, model.state_dict(keep_vars=True), config)
    params = sum(p.numel() for p in model.parameters())
    code = code_size(config, techniques)  # the packed train_gpt.py golfplan export writes
    artifact, upper = est.model_bytes + code, est.payload_bytes + code
    ms = config.ms_per_step_hint * params / BASELINE_PARAMS if config.ms_per_step_hint > 0 else 0.0
    steps = None
    if step_capped(config):
        steps = config.iterations
    elif ms > 0:
        steps = min(config.iterations, int(1000.0 * config.max_wallclock_seconds / ms))
    limit = config.artifact_limit_bytes
    report.estimate = {"params": params, "payload_bytes": est.payload_bytes, "model_bytes": est.model_bytes,
                       "ratio": est.ratio, "ratio_source": est.ratio_source, "ratio_exact": est.exact,
                       "format": est.format,
                       "code_bytes": code, "artifact_bytes": artifact, "upper_bound_bytes": upper,
                       "limit_bytes": limit, "ms_per_step": round(ms, 1) or None, "steps": steps}
    if step_capped(config):
        step_note = f"{steps} steps (capped by steps, not time)"
    elif ms > 0:
        step_note = (f"~{steps} steps in {config.max_wallclock_seconds:.0f}s at ~{ms:.0f} ms/step (profile's measured "
                     f"{config.ms_per_step_hint:.0f} ms/step for the baseline, scaled by parameter count)")
    else:
        step_note = "steps: no measured ms/step for this profile"
    msg = (f"{params:,} params; artifact ~{artifact:,} bytes ({est.format} payload {est.payload_bytes:,} x "
           f"measured ratio {est.ratio} + code {code:,}) of {limit:,}; {step_note}")
    if artifact > limit:
        over = artifact / limit - 1
        if est.exact or over > BORROWED_RATIO_MARGIN:
            raise CheckFailed(f"over the artifact limit: {msg}")
        return ("warn", f"over the limit by {over:.1%} on a ratio measured for another chain ({est.ratio_source}), "
                        f"within its {BORROWED_RATIO_MARGIN:.0%} uncertainty: {msg}; the run's measured bytes decide "
                        f"(golfplan check --legal RUN_DIR)", None)
    if upper > limit:
        saving = 1 - (limit - code) / est.payload_bytes
        return ("warn", f"{msg}; fits only if compression saves >= {saving:.0%} of the payload "
                        f"(longer training compresses less)", None)
    if artifact > WARN_FRACTION * limit:
        return "warn", f"close to the limit: {msg}", None
    return "pass", msg, None


def format_result(r: CheckResult) -> str:
    mark = {"pass": "ok  ", "fail": "FAIL", "warn": "warn", "skip": "skip"}[r.status]
    return f"  {mark} {r.name:<13} {r.seconds:6.2f}s  {r.message}"
