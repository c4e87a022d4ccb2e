"""The training run: the challenge's ``train_gpt.py`` main loop, with hooks resolved once.

``train(config, techniques)`` builds the model through the build hooks, primes the
compiled paths with ``warmup_steps`` steps and restores the initial state, trains
until ``iterations`` or the wallclock cap, exports the artifact (int8 + zlib by
default) and measures the round-trip val_bpb on what the artifact loads back.

A run whose loss becomes NaN/inf, does not fall below its starting value, or whose
final val_bpb is no better than an untrained model's, ends with status ``failed``
and a reason, never a BPB.
"""

from __future__ import annotations

import copy
import json
import math
import os
import platform
import subprocess
import sys
import time
import warnings
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from golfplan.core import corpus
from golfplan.core.config import Config
from golfplan.core.data import DistributedTokenLoader, load_validation_tokens
from golfplan.core.errors import GolfplanError, PluginError
from golfplan.core.evaluate import ValData, eval_val
from golfplan.core.export import Artifact, code_bytes, export_int8_zlib
from golfplan.core.hooks import Hooks, apply_configure, build_model, lr_multiplier, resolve
from golfplan.core.model import CastedLinear, count_parameters, restore_low_dim_params_to_fp32
from golfplan.core.optim import build_optimizers
from golfplan.core.state import Clock
from golfplan.core.technique import Technique
from golfplan.core.tokenizer import build_byte_tables, check_vocab, load_tokenizer


@dataclass
class RunResult:
    status: str = "complete"  # complete | failed | pruned
    reason: str = ""
    val_loss: float | None = None  # after the artifact round trip
    val_bpb: float | None = None
    pre_export_val_loss: float | None = None
    pre_export_val_bpb: float | None = None
    untrained_val_bpb: float | None = None  # BPB of a uniform prediction (what an untrained model scores)
    steps: int = 0
    ms_per_step: float | None = None
    train_time_s: float = 0.0
    wallclock_s: float = 0.0
    tokens_per_s: float | None = None
    artifact_bytes: int | None = None  # code + compressed model
    model_bytes: int | None = None
    code_bytes: int | None = None
    params: int | None = None
    peak_memory_mib: float | None = None
    compiled: bool = False
    flash_attention: bool | None = None
    device: str = ""
    world_size: int = 1
    first_train_loss: float | None = None
    last_train_loss: float | None = None
    val_history: list[dict[str, float]] = field(default_factory=list)
    plugins: dict[str, dict[str, Any]] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    run_dir: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, default=str)


NO_LEARNING_MARGIN = 0.01  # the last losses must sit at least 1 % below the first: batch noise is not learning
MIN_STEPS_FOR_TREND = 12  # shorter runs are judged by their val_bpb against an untrained model's only


class RunFailed(Exception):
    """Raised inside the loop to end a run as ``failed`` with a reason."""


class RunPruned(Exception):
    """Raised when ``should_stop`` asks to stop a hopeless run."""


@dataclass
class Dist:
    enabled: bool = False
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def master(self) -> bool:
        return self.rank == 0


def init_distributed(device_pref: str) -> Dist:
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return Dist()
    d = Dist(True, int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and device_pref != "cpu"
        if use_cuda:
            torch.cuda.set_device(d.local_rank)
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return d


def pick_device(pref: str, d: Dist) -> torch.device:
    if pref == "auto":
        pref = "cuda" if torch.cuda.is_available() else "cpu"
    if pref.startswith("cuda"):
        if not torch.cuda.is_available():
            raise GolfplanError("this profile/config asks for CUDA but no CUDA device is present; use --profile cpu")
        return torch.device("cuda", d.local_rank if d.enabled else (int(pref.split(":")[1]) if ":" in pref else 0))
    return torch.device("cpu")


def resolve_data(config: Config, master: bool, log: Callable[[str], None]) -> Config:
    """Fill in the embedded dataset's paths when none are given (building it on first use)."""
    if config.data_path:
        if not config.tokenizer_path:
            raise GolfplanError("--data needs --tokenizer (the SentencePiece model the shards were made with)")
        return config
    if config.tokenizer_path:
        raise GolfplanError("--tokenizer needs --data (the shards made with it)")
    if master:
        corpus.build(config.vocab_size, log=log)
    if dist.is_initialized():
        dist.barrier()
    return config.replace(data_path=str(corpus.dataset_dir(config.vocab_size)),
                          tokenizer_path=str(corpus.tokenizer_path(config.vocab_size)))


def versions() -> dict[str, str]:
    import numpy
    import pluggy
    import sentencepiece

    import golfplan

    out = {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
           "sentencepiece": sentencepiece.__version__, "pluggy": pluggy.__version__, "golfplan": golfplan.__version__}
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(golfplan.__file__).parent,
                             capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=Path(golfplan.__file__).parent,
                               capture_output=True, text=True, timeout=5)
        if rev.returncode == 0:
            out["git"] = rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def plugin_files(techniques: Sequence[Technique]) -> list[str]:
    files = []
    for t in techniques:
        mod = sys.modules.get(type(t).__module__)
        if mod is not None and getattr(mod, "__file__", None):
            files.append(mod.__file__)
    return files


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train(
    config: Config,
    techniques: Sequence[Technique] = (),
    run_dir: str | Path | None = None,
    explicit: set[str] | frozenset[str] = frozenset(),
    log: Callable[[str], None] | None = None,
    should_stop: Callable[[int, float, float], bool] | None = None,
    distributed: bool = True,
    configure: bool = True,
) -> RunResult:
    """Train one model as the challenge baseline does, with the given techniques.

    Under torchrun (RANK/WORLD_SIZE set) it trains data-parallel unless ``distributed`` is False.
    ``configure=False`` takes ``config`` as already configured by the plugins (the preflight's
    shrunken copies), so their ``configure`` overrides are not applied a second time.
    """
    d = init_distributed(config.device) if distributed else Dist()
    device = pick_device(config.device, d)
    run_path = Path(run_dir) if run_dir else None
    if run_path and d.master:
        run_path.mkdir(parents=True, exist_ok=True)
    log0 = RunLog(d.master, run_path / "train.log" if (run_path and d.master) else None, log)

    t_start = time.perf_counter()
    result = RunResult(device=str(device), world_size=d.world_size,
                       plugins={t.name: dict(t.values) for t in techniques}, run_dir=str(run_path or ""))
    try:
        hooks = resolve(techniques)
        if configure:
            config = apply_configure(hooks, config, explicit)
        config.validate(d.world_size)
        config = resolve_data(config, d.master, log0)
        result.config = config.to_dict()
        eager_reasons = [f"{t.name}: {t.unsafe_reason or 'not compile-safe'}" for t in techniques if not t.compile_safe]
        if eager_reasons and not config.allow_eager:
            raise PluginError(f"compile-unsafe plugin(s): {'; '.join(eager_reasons)} "
                              f"(pass --allow-eager to run them in eager mode)")
        want_compile = not eager_reasons and (
            config.compile == "on" or (config.compile == "auto" and device.type == "cuda"))
        _write_header(log0, config, techniques, d, eager_reasons and not want_compile)
        _train_loop(config, hooks, techniques, d, device, want_compile, result, log0, run_path, should_stop)
    except (RunFailed, RunPruned) as e:
        result.status = "failed" if isinstance(e, RunFailed) else "pruned"
        result.reason = str(e)
        result.val_loss = result.val_bpb = None
        log0(f"run {result.status}: {e}")
    except BaseException as e:  # a crash (or OOM, or Ctrl-C): the result says so, then it propagates
        result.status = "failed"
        first = (str(e).strip().splitlines() or [""])[0][:300]
        result.reason = f"crash: {type(e).__name__}: {first}" if first else f"crash: {type(e).__name__}"
        result.val_loss = result.val_bpb = None
        raise
    finally:
        result.wallclock_s = round(time.perf_counter() - t_start, 3)
        if run_path and d.master and result.config:
            (run_path / "result.json").write_text(result.to_json())
        log0.close()

    return result


class RunLog:
    """Rank 0's log: the run's ``train.log``, and the console (above the progress bar) or a callback."""

    def __init__(self, master: bool, path: Path | None, sink: Callable[[str], None] | None) -> None:
        self.master, self.sink, self.bar = master, sink, None
        self.file = open(path, "a") if path else None

    def __call__(self, msg: str) -> None:
        if not self.master:
            return
        if self.file:
            self.file.write(msg + "\n")
            self.file.flush()
        if self.sink is not None:
            self.sink(msg)
        elif self.bar is not None:
            self.bar.write(msg)
        else:
            print(msg, flush=True)

    def close(self) -> None:
        if self.file:
            self.file.close()
            self.file = None


def _write_header(log0: Callable[[str], None], config: Config, techniques: Sequence[Technique], d: Dist,
                  eager: bool) -> None:
    import yaml

    log0("# golfplan run")
    log0("# versions: " + json.dumps(versions()))
    log0("# plugins: " + (", ".join(repr(t) for t in techniques) or "(none: the baseline)"))
    if eager:
        log0("# mode: eager (compile-unsafe plugins allowed with --allow-eager)")
    log0(f"# world_size: {d.world_size}")
    log0("# config:\n" + "\n".join("#   " + line for line in yaml.safe_dump(config.to_dict(), sort_keys=False).splitlines()))


def _train_loop(config: Config, hooks: Hooks, techniques: Sequence[Technique], d: Dist, device: torch.device,
                want_compile: bool, result: RunResult, log0: RunLog, run_path: Path | None,
                should_stop: Callable[[int, float, float], bool] | None) -> None:
    import random

    import numpy as np
    from tqdm import tqdm

    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.manual_seed_all(config.seed)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        from torch.backends.cuda import enable_cudnn_sdp, enable_flash_sdp, enable_math_sdp, enable_mem_efficient_sdp

        enable_cudnn_sdp(False)
        enable_flash_sdp(True)
        enable_mem_efficient_sdp(False)
        enable_math_sdp(False)
        torch.cuda.set_device(device)
    bf16 = config.dtype == "bf16" or (config.dtype == "auto" and cuda)
    grad_accum = config.accum_steps(d.world_size)
    grad_scale = 1.0 / grad_accum

    # data and byte tables
    sp = load_tokenizer(config.tokenizer_path)
    check_vocab(sp, config.vocab_size, config.tokenizer_path)
    tables = build_byte_tables(sp, config.vocab_size)
    val_tokens = load_validation_tokens(config.data_path, config.train_seq_len, config.val_max_tokens)
    val = ValData(val_tokens, tables.to(device), config.train_seq_len, config.val_batch_size, grad_accum,
                  d.rank, d.world_size, device, autocast=bf16 and cuda)
    val_bytes = float(tables.count(val_tokens[:-1].long(), val_tokens[1:].long()).double().sum())
    result.untrained_val_bpb = math.log2(config.vocab_size) * (val_tokens.numel() - 1) / val_bytes
    train_loader = DistributedTokenLoader(config.data_path, d.rank, d.world_size, device)

    # model
    base_model = build_model(hooks, config).to(device)
    if bf16:
        base_model = base_model.bfloat16()
        for module in base_model.modules():
            if isinstance(module, CastedLinear):
                module.float()
        restore_low_dim_params_to_fp32(base_model)
        base_model.progress.data = base_model.progress.data.float()  # keep the schedule's clock exact
    result.params = count_parameters(base_model)
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    compiled = (torch.compile(base_model, dynamic=False, fullgraph=True, backend=config.compile_backend)
                if want_compile else base_model)
    result.compiled = want_compile
    find_unused = any(not t.compile_safe for t in techniques)
    model: Any = compiled
    if d.enabled:
        with warnings.catch_warnings():  # torch >= 2.12 renames broadcast_buffers; the baseline's False is meant
            warnings.simplefilter("ignore", FutureWarning)
            model = DDP(compiled, device_ids=[d.local_rank] if cuda else None, broadcast_buffers=False,
                        find_unused_parameters=find_unused)
    optimizers, muon = build_optimizers(base_model, config, fused=cuda)
    amp = (lambda: torch.autocast(device_type="cuda", dtype=torch.bfloat16)) if (bf16 and cuda) else nullcontext
    evaluate = hooks.pm.hook.evaluate
    log0(f"model_params:{result.params} world_size:{d.world_size} grad_accum_steps:{grad_accum} "
         f"compile:{want_compile} dtype:{'bf16' if bf16 else 'fp32'} device:{device}")
    log0(f"untrained_val_bpb:{result.untrained_val_bpb:.4f} (uniform prediction over {config.vocab_size} tokens)")

    def zero_grad_all() -> None:
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)

    def run_eval() -> tuple[float, float]:
        out = evaluate(model=base_model if not d.enabled else model, val=val, config=config)
        return out if out is not None else eval_val(model, val)

    def forward_backward() -> torch.Tensor:
        total = torch.zeros((), device=device)
        for micro in range(grad_accum):
            if d.enabled:
                model.require_backward_grad_sync = micro == grad_accum - 1
            x, y = train_loader.next_batch(config.train_batch_tokens, config.train_seq_len, grad_accum)
            with amp():
                loss = model(x, y)
            total += loss.detach()
            (loss * grad_scale).backward()
        return total / grad_accum

    # priming steps: warm the compiled paths, then restore the initial weights and optimizer state
    if config.warmup_steps > 0:
        init_model = {k: v.detach().cpu().clone() for k, v in base_model.state_dict().items()}
        init_opts = [copy.deepcopy(opt.state_dict()) for opt in optimizers]
        model.train()
        for ws in range(config.warmup_steps):
            zero_grad_all()
            forward_backward()
            for opt in optimizers:
                opt.step()
            zero_grad_all()
            if config.warmup_steps <= 20 or (ws + 1) % 10 == 0 or ws + 1 == config.warmup_steps:
                log0(f"warmup_step:{ws + 1}/{config.warmup_steps}")
        base_model.load_state_dict(init_model, strict=True)
        for opt, state in zip(optimizers, init_opts):
            opt.load_state_dict(state)
        zero_grad_all()
        if d.enabled:
            model.require_backward_grad_sync = True
        train_loader = DistributedTokenLoader(config.data_path, d.rank, d.world_size, device)

    matrix_params = [p for g in muon.param_groups for p in g["params"]]
    wallclock_s = config.max_wallclock_seconds if config.max_wallclock_seconds > 0 else 0.0
    clock = Clock(step=0, iterations=config.iterations, wallclock_s=wallclock_s,
                  warmdown_iters=config.warmdown_iters, seed=config.seed)
    nonfinite = torch.zeros((), dtype=torch.bool, device=device)
    recent = torch.zeros(10, device=device)
    first_loss: torch.Tensor | None = None
    training_time_ms = 0.0
    stop_after_step: int | None = None
    bar = tqdm(total=100, desc="train", unit="%", disable=(not d.master) or (not config.progress_bar) or None,
               bar_format="{l_bar}{bar}| {n:.0f}/100% [{elapsed}<{remaining}{postfix}]", file=sys.stderr)
    log0.bar = bar

    def check_finite(step: int) -> None:
        if bool(nonfinite.item()):
            raise RunFailed(f"loss became NaN/inf by step {step}")

    _sync(device)
    t0 = time.perf_counter()
    step = 0
    try:
        while True:
            last_step = step == config.iterations or (stop_after_step is not None and step >= stop_after_step)
            should_validate = last_step or (config.val_loss_every > 0 and step % config.val_loss_every == 0)
            if should_validate:
                _sync(device)
                training_time_ms += 1000.0 * (time.perf_counter() - t0)
                check_finite(step)
                val_loss, val_bpb = run_eval()
                result.val_history.append({"step": step, "val_loss": val_loss, "val_bpb": val_bpb,
                                           "train_time_ms": round(training_time_ms, 1)})
                log0(f"step:{step}/{config.iterations} val_loss:{val_loss:.4f} val_bpb:{val_bpb:.4f} "
                     f"train_time:{training_time_ms:.0f}ms step_avg:{training_time_ms / max(step, 1):.2f}ms")
                if not math.isfinite(val_loss):
                    raise RunFailed(f"validation loss is {val_loss} at step {step}")
                if should_stop is not None and not last_step and should_stop(step, val_loss, val_bpb):
                    raise RunPruned(f"pruned at step {step} (val_bpb {val_bpb:.4f})")
                _sync(device)
                t0 = time.perf_counter()
            if last_step:
                if stop_after_step is not None and step < config.iterations:
                    log0(f"stopping_early: wallclock_cap train_time:{training_time_ms:.0f}ms "
                         f"step:{step}/{config.iterations}")
                break

            elapsed_ms = training_time_ms + 1000.0 * (time.perf_counter() - t0)
            clock.step, clock.elapsed_s = step, elapsed_ms / 1000.0
            progress = clock.progress
            base_model.progress.fill_(progress)
            scale = lr_multiplier(hooks, clock, config)
            zero_grad_all()
            train_loss = forward_backward()
            frac = min(step / config.muon_momentum_warmup_steps, 1.0) if config.muon_momentum_warmup_steps > 0 else 1.0
            for group in muon.param_groups:
                group["momentum"] = (1 - frac) * config.muon_momentum_warmup_start + frac * config.muon_momentum
            for opt in optimizers:
                for group in opt.param_groups:
                    group["lr"] = group["base_lr"] * scale
            for fn in hooks.after_backward:
                fn(model=base_model, clock=clock)
            if config.grad_clip_norm > 0:
                torch.nn.utils.clip_grad_norm_(base_model.parameters(), config.grad_clip_norm)
            wd = float(hooks.wd_schedule(clock=clock, config=config))
            if wd > 0:
                with torch.no_grad():
                    lr = muon.param_groups[0]["lr"]
                    for p in matrix_params:
                        p.mul_(1.0 - lr * wd)
            for opt in optimizers:
                opt.step()
            with torch.no_grad():
                for fn in hooks.on_step:
                    fn(model=base_model, optimizers=optimizers, clock=clock)
            zero_grad_all()

            nonfinite |= ~torch.isfinite(train_loss)
            recent[step % recent.numel()] = train_loss
            if first_loss is None:
                first_loss = train_loss.detach().clone()
            step += 1
            approx_ms = training_time_ms + 1000.0 * (time.perf_counter() - t0)
            should_log = config.train_log_every > 0 and (
                step <= 10 or step % config.train_log_every == 0 or stop_after_step is not None)
            if should_log:
                check_finite(step)
                tl = train_loss.item()
                log0(f"step:{step}/{config.iterations} train_loss:{tl:.4f} train_time:{approx_ms:.0f}ms "
                     f"step_avg:{approx_ms / step:.2f}ms")
                bar.set_postfix_str(f"step {step} loss {tl:.3f}", refresh=False)
            clock.step, clock.elapsed_s = step, approx_ms / 1000.0
            bar.update(100.0 * clock.progress - bar.n)
            reached_cap = wallclock_s > 0 and approx_ms >= 1000.0 * wallclock_s
            if d.enabled and wallclock_s > 0:
                flag = torch.tensor(int(reached_cap), device=device)
                dist.all_reduce(flag, op=dist.ReduceOp.MAX)
                reached_cap = bool(flag.item())
            if stop_after_step is None and reached_cap:
                stop_after_step = step
    finally:
        bar.close()
        log0.bar = None

    result.steps = step
    result.train_time_s = round(training_time_ms / 1000.0, 3)
    result.ms_per_step = round(training_time_ms / max(step, 1), 2)
    result.tokens_per_s = round(config.train_batch_tokens * step / max(training_time_ms / 1000.0, 1e-9), 1)
    if cuda:
        result.peak_memory_mib = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
        result.flash_attention = bool(torch.backends.cuda.flash_sdp_enabled())
    log0(f"peak memory allocated: {result.peak_memory_mib} MiB" if cuda else "peak memory: n/a (cpu)")
    check_finite(step)
    if first_loss is not None:
        n = min(step, recent.numel())
        first, last = float(first_loss.item()), float(recent[:n].mean().item())
        result.first_train_loss, result.last_train_loss = round(first, 6), round(last, 6)
        if first == 0.0 and last == 0.0:
            raise RunFailed("train loss is exactly zero: nothing is being trained (a technique zeroes the loss?)")
        if step >= MIN_STEPS_FOR_TREND and not last < first - NO_LEARNING_MARGIN * abs(first):
            raise RunFailed(f"train loss did not fall below its starting value (first {first:.4f}, "
                            f"mean of the last {n} {last:.4f})")
    result.pre_export_val_loss, result.pre_export_val_bpb = result.val_history[-1]["val_loss"], result.val_history[-1]["val_bpb"]

    # the artifact and the round trip
    artifact: Artifact = hooks.pm.hook.export(state_dict=base_model.state_dict(), config=config) or \
        export_int8_zlib(base_model.state_dict())
    result.model_bytes = len(artifact.blob)
    result.code_bytes = code_bytes(plugin_files(techniques))
    result.artifact_bytes = result.model_bytes + result.code_bytes
    if run_path and d.master:
        (run_path / f"final_model.{artifact.format}.ptz").write_bytes(artifact.blob)
    log0(f"Serialized model {artifact.format}: {result.model_bytes} bytes")
    log0(f"Code size: {result.code_bytes} bytes")
    log0(f"Total submission size {artifact.format}: {result.artifact_bytes} bytes")
    if d.enabled:
        dist.barrier()
    restored = artifact.load(artifact.blob)
    base_model.load_state_dict({k: v.to(device) for k, v in restored.items()}, strict=True)
    _sync(device)
    t_q = time.perf_counter()
    q_loss, q_bpb = run_eval()
    _sync(device)
    log0(f"final_int8_zlib_roundtrip val_loss:{q_loss:.4f} val_bpb:{q_bpb:.4f} "
         f"eval_time:{1000.0 * (time.perf_counter() - t_q):.0f}ms")
    log0(f"final_int8_zlib_roundtrip_exact val_loss:{q_loss:.8f} val_bpb:{q_bpb:.8f}")
    result.val_loss, result.val_bpb = q_loss, q_bpb
    if not math.isfinite(q_bpb):
        raise RunFailed(f"round-trip val_bpb is {q_bpb}")
    if q_bpb >= result.untrained_val_bpb:
        raise RunFailed(f"val_bpb {q_bpb:.4f} is no better than an untrained model's {result.untrained_val_bpb:.4f}")
