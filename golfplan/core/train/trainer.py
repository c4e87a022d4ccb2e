"""The training run: the challenge's ``train_gpt.py`` main loop, with hooks resolved once.

``train(config, techniques)`` builds the model through the build hooks, primes the compiled
paths (``golfplan.core.train.step.prime``) and restores the initial state, trains with
``golfplan.core.train.step.Step`` until ``iterations`` or the wallclock cap, evaluates, exports the
artifact (int8 + zlib by default) and measures the round-trip val_bpb on what the artifact
loads back.

A run that ends without a BPB says why with a failure kind (``golfplan.core.result``): its loss
became NaN/inf (nan), it did not learn (no_learning), it passed ``time_limit_seconds``
(timeout), or it raised (oom, crash).
"""

from __future__ import annotations

import math
import random
import sys
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from golfplan.core.model.attention import doc_kernel
from golfplan.core.config import Config
from golfplan.core.data.shards import DistributedTokenLoader, load_validation_bytes, load_validation_tokens
from golfplan.core.errors import GolfplanError, PluginError
from golfplan.core.evaluate.score import EvalClock, ValData, eval_val
from golfplan.core.export.artifact import Artifact, export_artifact
from golfplan.core.hooks import Hooks, build_model, collect, compose
from golfplan.core.model.gpt import CastedLinear, count_parameters, restore_low_dim_params_to_fp32
from golfplan.core.train.optim import build_optimizers
from golfplan.core.export.pack import PACKED
from golfplan.core.result import RunFailed, RunPruned, RunResult, exception_kind, exception_reason
from golfplan.core.runlog import RunLog, write_header
from golfplan.core.train.runtime import Dist, init_distributed, pick_device, set_cpu_threads, sync
from golfplan.core.state import Clock
from golfplan.core.train.step import Step, prime
from golfplan.core.technique import Technique
from golfplan.core.data.tokenizer import build_byte_tables, check_tokens_match, check_vocab, load_tokenizer

NO_LEARNING_MARGIN = 0.01  # the last losses must sit at least 1 % below the first: batch noise is not learning
MIN_STEPS_FOR_TREND = 12  # shorter runs are judged by their val_bpb against an untrained model's only


def resolve_data(config: Config, master: bool, log: Callable[[str], None]) -> Config:
    """Fill in the embedded dataset's paths when none are given (building it on first use); a packed
    train_gpt.py carries no embedded dataset (nor its builder) and needs the paths."""
    if config.data_path:
        if not config.tokenizer_path:
            raise GolfplanError("--data needs --tokenizer (the SentencePiece model the shards were made with)")
        return config
    if config.tokenizer_path:
        raise GolfplanError("--tokenizer needs --data (the shards made with it)")
    if PACKED:
        raise GolfplanError("no data: set DATA_PATH and TOKENIZER_PATH (or run where ./data holds the challenge's "
                            "layout); `golfplan data info` says where golfplan's embedded dataset is")
    from golfplan.core.data import corpus

    if master:
        corpus.build(config.vocab_size, log=log)
    if dist.is_initialized():
        dist.barrier()
    return config.replace(data_path=str(corpus.dataset_dir(config.vocab_size)),
                          tokenizer_path=str(corpus.tokenizer_path(config.vocab_size)))


def train(
    config: Config,
    techniques: Sequence[Technique] = (),
    run_dir: str | Path | None = None,
    explicit: set[str] | frozenset[str] = frozenset(),
    log: Callable[[str], None] | None = None,
    should_stop: Callable[[int, float, float], bool] | None = None,
    distributed: bool = True,
    configure: bool = True,
    stream: Any = None,
) -> RunResult:
    """Train one model as the challenge baseline does, with the given techniques.

    Under torchrun (RANK/WORLD_SIZE set) it trains data-parallel unless ``distributed`` is False.
    ``configure=False`` takes ``config`` as already configured by the plugins (the preflight's
    shrunken copies), so their ``configure`` overrides are not applied a second time. ``log``
    receives every log line instead of the console; ``stream`` is the console's stream (standard
    output by default; ``golfplan run --json`` gives standard error).
    """
    d = init_distributed(config.device) if distributed else Dist()
    device = pick_device(config.device, d)
    run_path = Path(run_dir) if run_dir else None
    if run_path and d.master:
        run_path.mkdir(parents=True, exist_ok=True)
    log0 = RunLog(d.master, run_path, log, stream)

    t_start = time.perf_counter()
    result = RunResult(device=str(device), world_size=d.world_size,
                       plugins={t.name: dict(t.values) for t in techniques}, run_dir=str(run_path or ""))
    try:
        comp = compose(techniques, config, explicit, configure)  # resolved and configured, once
        hooks = comp.hooks
        comp.config.validate(d.world_size)
        config = resolve_data(comp.config, d.master, log0)
        result.config = config.to_dict()
        eager_reasons = comp.eager_reasons
        if eager_reasons and not config.allow_eager:
            raise PluginError(f"compile-unsafe plugin(s): {'; '.join(eager_reasons)} "
                              f"(pass --allow-eager to run them in eager mode)")
        want_compile = not eager_reasons and (
            config.compile == "on" or (config.compile == "auto" and device.type == "cuda"))
        write_header(log0, config, hooks.techniques, d.world_size, bool(eager_reasons) and not want_compile)
        Run(config, hooks, d, device, want_compile, result, log0, run_path, should_stop).execute()
    except RunFailed as e:
        result.fail(e.kind, str(e))
        log0(f"run failed: {e}")
    except RunPruned as e:
        result.status, result.reason, result.val_loss, result.val_bpb = "pruned", str(e), None, None
        log0(f"run pruned: {e}")
    except BaseException as e:  # a crash (or OOM, or Ctrl-C): the result says so, then it propagates
        result.fail(exception_kind(e), f"{exception_kind(e)}: {exception_reason(e)}")
        raise
    finally:
        result.wallclock_s = round(time.perf_counter() - t_start, 3)
        if run_path and d.master and result.config:
            (run_path / "result.json").write_text(result.to_json())
        log0.event("result", **result.to_dict())
        log0.close()
    return result


@dataclass
class Run:
    """One training run, from the data to the round-trip BPB (rank-local state lives here)."""

    config: Config
    hooks: Hooks
    d: Dist
    device: torch.device
    want_compile: bool
    result: RunResult
    log: RunLog
    run_path: Path | None
    should_stop: Callable[[int, float, float], bool] | None

    def execute(self) -> None:
        c, d, device = self.config, self.d, self.device
        self._seed_and_backends()
        cuda = device.type == "cuda"
        self.bf16 = c.dtype == "bf16" or (c.dtype == "auto" and cuda)
        self.grad_accum = c.accum_steps(d.world_size)
        self._data()
        step = self._model()
        prime(step, c.warmup_steps, self.log)
        if c.warmup_steps > 0:  # training starts from the data's beginning, as the baseline's
            self.train_loader = self._make_loader()
        step.next_batch = self._next_batch
        self._loop(step)
        self._finish()

    # ---- setup -------------------------------------------------------------------------
    def _seed_and_backends(self) -> None:
        c, device = self.config, self.device
        random.seed(c.seed)
        np.random.seed(c.seed)
        torch.manual_seed(c.seed)
        if device.type == "cuda":
            torch.cuda.manual_seed_all(c.seed)
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
            from torch.backends.cuda import (enable_cudnn_sdp, enable_flash_sdp, enable_math_sdp,
                                             enable_mem_efficient_sdp)

            enable_cudnn_sdp(False)
            enable_flash_sdp(True)
            enable_mem_efficient_sdp(False)  # re-enabled in _data when attention takes document masks
            enable_math_sdp(False)
            torch.cuda.set_device(device)
        else:
            self.result.threads = set_cpu_threads(self.d.world_size)

    def _data(self) -> None:
        c, d, device = self.config, self.d, self.device
        sp = load_tokenizer(c.tokenizer_path)
        check_vocab(sp, c.vocab_size, c.tokenizer_path)
        tables = build_byte_tables(sp, c.vocab_size)
        val_tokens = load_validation_tokens(c.data_path, c.train_seq_len, c.val_max_tokens)
        check_tokens_match(sp, val_tokens, c.tokenizer_path)
        self.val = ValData(val_tokens, tables, c.train_seq_len, c.val_batch_size, self.grad_accum,
                           d.rank, d.world_size, device, autocast=self.bf16 and device.type == "cuda",
                           byte_counts=load_validation_bytes(c.data_path, val_tokens.numel()), bos_id=c.bos_id,
                           clock=EvalClock(c.max_eval_seconds, device))
        val_bytes = float(self.val.byte_counts[1:].double().sum())  # the sidecar's original bytes where given
        self.result.untrained_val_bpb = math.log2(c.vocab_size) * (val_tokens.numel() - 1) / val_bytes
        self.train_loader = self._make_loader()
        self.val.extras = getattr(self.train_loader, "batch_extras", None)
        if self.val.extras is not None:  # documents: attention's kernel, chosen once (golfplan.core.model.attention)
            self.log(f"doc_attention:{doc_kernel(device, self.want_compile)}")
            if device.type == "cuda":  # SDPA's flash takes no mask: its fallback needs another kernel
                torch.backends.cuda.enable_mem_efficient_sdp(True)

    def _make_loader(self) -> Any:
        c, d = self.config, self.d
        loader = self.hooks.pm.hook.train_loader(config=c, rank=d.rank, world_size=d.world_size, device=self.device)
        return loader if loader is not None else DistributedTokenLoader(c.data_path, d.rank, d.world_size, self.device)

    def _next_batch(self):
        c = self.config
        return self.train_loader.next_batch(c.train_batch_tokens, c.train_seq_len, self.grad_accum)

    def _model(self) -> Step:
        c, d, device, r = self.config, self.d, self.device, self.result
        cuda = device.type == "cuda"
        base = build_model(self.hooks, c).to(device)
        if self.bf16:
            base = base.bfloat16()
            for module in base.modules():
                if isinstance(module, CastedLinear):
                    module.float()
            restore_low_dim_params_to_fp32(base)
            base.progress.data = base.progress.data.float()  # keep the schedule's clock exact
        r.params = count_parameters(base)
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        compiled = (torch.compile(base, dynamic=False, fullgraph=True, backend=c.compile_backend)
                    if self.want_compile else base)
        r.compiled = self.want_compile
        model: Any = compiled
        if d.enabled:
            find_unused = any(not t.compile_safe for t in self.hooks.techniques)
            with warnings.catch_warnings():  # torch >= 2.12 renames broadcast_buffers; the baseline's False is meant
                warnings.simplefilter("ignore", FutureWarning)
                model = DDP(compiled, device_ids=[d.local_rank] if cuda else None, broadcast_buffers=False,
                            find_unused_parameters=find_unused)
        self.base, self.model = base, model
        optimizers, muon = build_optimizers(base, c, self.hooks, fused=cuda)
        amp = (lambda: torch.autocast(device_type="cuda", dtype=torch.bfloat16)) if (self.bf16 and cuda) else nullcontext
        self.log(f"model_params:{r.params} world_size:{d.world_size} grad_accum_steps:{self.grad_accum} "
                 f"compile:{self.want_compile} dtype:{'bf16' if self.bf16 else 'fp32'} device:{device}")
        self.log(f"untrained_val_bpb:{r.untrained_val_bpb:.4f} (uniform prediction over {c.vocab_size} tokens)")
        self.log.event("start", versions=self.log.versions, plugins=r.plugins, world_size=d.world_size, threads=r.threads, device=str(device),
                       compile=self.want_compile, params=r.params, untrained_val_bpb=r.untrained_val_bpb)
        return Step(model, base, optimizers, muon, self.hooks, c, self._next_batch, self.grad_accum, amp, d.enabled)

    # ---- evaluation ------------------------------------------------------------------------
    def evaluate(self, final: bool = False) -> tuple[float, float]:
        """The evaluation strategy (``evaluate`` hook) or the challenge's ``eval_val``. Only the score
        of the round-tripped artifact is ``final``: a strategy that adapts weights acts only there.
        The final one runs on the evaluation clock (``self.val.clock``)."""
        with self.val.clock.measure(final):
            out = self.hooks.pm.hook.evaluate(model=self.base if not self.d.enabled else self.model, val=self.val,
                                              config=self.config, final=final)
            return out if out is not None else eval_val(self.model, self.val)

    def _validate(self, step: int, train_ms: float, final: bool) -> None:
        c = self.config
        val_loss, val_bpb = self.evaluate()
        self.result.val_history.append({"step": step, "val_loss": val_loss, "val_bpb": val_bpb,
                                        "train_time_ms": round(train_ms, 1)})
        self.log(f"step:{step}/{c.iterations} val_loss:{val_loss:.4f} val_bpb:{val_bpb:.4f} "
                 f"train_time:{train_ms:.0f}ms step_avg:{train_ms / max(step, 1):.2f}ms")
        self.log.event("val", step=step, val_loss=val_loss, val_bpb=val_bpb, train_time_ms=round(train_ms, 1),
                       final=final)
        if not math.isfinite(val_loss):
            raise RunFailed("nan", f"validation loss is {val_loss} at step {step}")
        if not final and self.should_stop is not None and self.should_stop(step, val_loss, val_bpb):
            raise RunPruned(f"pruned at step {step} (val_bpb {val_bpb:.4f})")

    # ---- the loop ---------------------------------------------------------------------------
    def _loop(self, step_fn: Step) -> None:
        from tqdm import tqdm

        c, d, device, r = self.config, self.d, self.device, self.result
        # the loop stops early enough to leave the calibration its reserve inside the cap
        wallclock_s = max(c.max_wallclock_seconds - c.calibration_reserve_seconds, 0.0) if c.max_wallclock_seconds > 0 else 0.0
        clock = Clock(step=0, iterations=c.iterations, wallclock_s=wallclock_s,
                      warmdown_iters=c.warmdown_iters, seed=c.seed)
        self.nonfinite = torch.zeros((), dtype=torch.bool, device=device)
        self.recent = torch.zeros(10, device=device)
        self.first_loss: torch.Tensor | None = None
        train_ms = 0.0
        stop_after: int | None = None
        bar = tqdm(total=100, desc="train", unit="%", disable=(not d.master) or (not c.progress_bar) or None,
                   bar_format="{l_bar}{bar}| {n:.0f}/100% [{elapsed}<{remaining}{postfix}]", file=sys.stderr)
        self.log.bar = bar
        sync(device)
        t0 = time.perf_counter()
        step = 0
        try:
            while True:
                last = step == c.iterations or (stop_after is not None and step >= stop_after)
                if last:
                    break
                if c.val_loss_every > 0 and step % c.val_loss_every == 0:
                    sync(device)
                    train_ms += 1000.0 * (time.perf_counter() - t0)
                    self._check_finite(step)
                    self._validate(step, train_ms, final=False)
                    sync(device)
                    t0 = time.perf_counter()
                elapsed_ms = train_ms + 1000.0 * (time.perf_counter() - t0)
                clock.step, clock.elapsed_s = step, elapsed_ms / 1000.0
                loss = step_fn(clock)
                self.nonfinite |= ~torch.isfinite(loss)
                self.recent[step % self.recent.numel()] = loss
                if self.first_loss is None:
                    self.first_loss = loss.detach().clone()
                step += 1
                approx_ms = train_ms + 1000.0 * (time.perf_counter() - t0)
                if c.train_log_every > 0 and (step <= 10 or step % c.train_log_every == 0 or stop_after is not None):
                    self._check_finite(step)
                    tl = loss.item()
                    self.log(f"step:{step}/{c.iterations} train_loss:{tl:.4f} train_time:{approx_ms:.0f}ms "
                             f"step_avg:{approx_ms / step:.2f}ms")
                    self.log.event("train", step=step, train_loss=tl, train_time_ms=round(approx_ms, 1))
                    bar.set_postfix_str(f"step {step} loss {tl:.3f}", refresh=False)
                clock.step, clock.elapsed_s = step, approx_ms / 1000.0
                bar.update(100.0 * clock.progress - bar.n)
                if c.time_limit_seconds > 0 and approx_ms > 1000.0 * c.time_limit_seconds:
                    raise RunFailed("timeout", f"timed out: still training after {c.time_limit_seconds:g}s "
                                               f"(time_limit_seconds) at step {step}/{c.iterations}")
                reached_cap = wallclock_s > 0 and approx_ms >= 1000.0 * wallclock_s
                if d.enabled and wallclock_s > 0:
                    flag = torch.tensor(int(reached_cap), device=device)
                    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
                    reached_cap = bool(flag.item())
                if stop_after is None and reached_cap:
                    stop_after = step
            sync(device)
            train_ms += 1000.0 * (time.perf_counter() - t0)
        finally:
            bar.close()
            self.log.bar = None
        self._check_finite(step)
        capped = stop_after is not None and step < c.iterations
        r.capped_by = "wallclock" if capped else "steps"
        if self.hooks.on_train_end:
            with torch.no_grad():
                for fn in self.hooks.on_train_end:
                    fn(model=self.base, optimizers=step_fn.optimizers, clock=clock)
        self._validate(step, train_ms, final=True)
        if capped:
            self.log(f"stopping_early: wallclock_cap train_time:{train_ms:.0f}ms step:{step}/{c.iterations}")
        self.log.event("stop", step=step, train_time_ms=round(train_ms, 1), capped_by=r.capped_by)
        r.steps = step
        r.train_time_s = round(train_ms / 1000.0, 3)
        r.ms_per_step = round(train_ms / max(step, 1), 2)
        r.tokens_per_s = round(c.train_batch_tokens * step / max(train_ms / 1000.0, 1e-9), 1)

    def _calibrate(self) -> dict[str, Any]:
        """The ``calibrate`` hooks on training batches, timed, and accounted as ``calibration_clock``
        says: ``inside`` the training clock (train time + calibration must fit the wallclock cap) or
        ``after`` it (the record's: logged apart)."""
        calibrate = self.hooks.pm.hook.calibrate
        if not calibrate.get_hookimpls():
            return {}
        from golfplan.core.train.step import unpack

        loader = self._make_loader()  # a fresh training loader: calibration never reads validation tokens

        def batches():
            while True:
                yield unpack(loader.next_batch(self.config.train_batch_tokens, self.config.train_seq_len,
                                               self.grad_accum))

        sync(self.device)
        t0 = time.perf_counter()
        stats: dict[str, Any] = {}
        was_training = self.base.training
        self.base.eval()
        for out in collect(calibrate, model=self.base, batches=batches(), config=self.config):
            stats.update(out)
        self.base.train(was_training)
        sync(self.device)
        r = self.result
        r.calibration_s = round(time.perf_counter() - t0, 3)
        total = r.train_time_s + r.calibration_s
        inside = self.config.calibration_clock == "inside"
        self.log(f"calibration:{1000 * r.calibration_s:.0f}ms " + (
            f"(charged to the training clock: train {r.train_time_s:.1f}s + calibration {r.calibration_s:.1f}s "
            f"= {total:.1f}s)" if inside else f"(after the training clock of {r.train_time_s:.1f}s, as the record's)"))
        self.log.event("calibration", seconds=r.calibration_s, train_plus_calibration_s=round(total, 3),
                       clock=self.config.calibration_clock)
        cap = self.config.max_wallclock_seconds
        if inside and cap > 0 and total > cap:
            self.log(f"warning: training + calibration took {total:.1f}s, over the {cap:g}s cap; "
                     f"raise calibration_reserve_seconds")
        return stats

    def _check_finite(self, step: int) -> None:
        if bool(self.nonfinite.item()):
            raise RunFailed("nan", f"loss became NaN/inf by step {step}")

    # ---- the end: learning checks, the artifact, the round trip ------------------------------
    def _finish(self) -> None:
        c, d, device, r, log = self.config, self.d, self.device, self.result, self.log
        if device.type == "cuda":
            r.peak_memory_mib = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
            r.flash_attention = bool(torch.backends.cuda.flash_sdp_enabled())
        log(f"peak memory allocated: {r.peak_memory_mib} MiB" if device.type == "cuda" else "peak memory: n/a (cpu)")
        if self.first_loss is not None:
            n = min(r.steps, self.recent.numel())
            first, last = float(self.first_loss.item()), float(self.recent[:n].mean().item())
            r.first_train_loss, r.last_train_loss = round(first, 6), round(last, 6)
            if first == 0.0 and last == 0.0:
                raise RunFailed("no_learning", "train loss is exactly zero: nothing is being trained "
                                               "(a technique zeroes the loss?)")
            if r.steps >= MIN_STEPS_FOR_TREND and not last < first - NO_LEARNING_MARGIN * abs(first):
                raise RunFailed("no_learning", f"train loss did not fall below its starting value (first {first:.4f}, "
                                               f"mean of the last {n} {last:.4f})")
        r.pre_export_val_loss, r.pre_export_val_bpb = r.val_history[-1]["val_loss"], r.val_history[-1]["val_bpb"]

        stats = self._calibrate()
        artifact: Artifact = export_artifact(self.hooks, self.base.state_dict(), stats, c)
        r.model_bytes = len(artifact.blob)
        r.artifact_format = artifact.format
        from golfplan.core.export.pack import code_size  # the packed train_gpt.py's length (golfplan export writes it)

        r.code_bytes = code_size(c, self.hooks.techniques)
        r.artifact_bytes = r.model_bytes + r.code_bytes
        if self.run_path and d.master:
            (self.run_path / f"final_model.{artifact.format}.ptz").write_bytes(artifact.blob)
        log(f"Serialized model {artifact.format}: {r.model_bytes} bytes")
        log(f"Code size: {r.code_bytes} bytes")
        log(f"Total submission size {artifact.format}: {r.artifact_bytes} bytes")
        log.event("export", format=artifact.format, model_bytes=r.model_bytes, code_bytes=r.code_bytes,
                  artifact_bytes=r.artifact_bytes)
        if d.enabled:
            dist.barrier()
        restored = artifact.load(artifact.blob)
        self.base.load_state_dict({k: v.to(device) for k, v in restored.items()}, strict=True)
        q_loss, q_bpb = self.evaluate(final=True)
        log(f"final_int8_zlib_roundtrip val_loss:{q_loss:.4f} val_bpb:{q_bpb:.4f} {self.val.clock.report()}")
        self.val.clock.log_to(log)
        log(f"final_int8_zlib_roundtrip_exact val_loss:{q_loss:.8f} val_bpb:{q_bpb:.8f}")
        r.val_loss, r.val_bpb = q_loss, q_bpb
        r.eval_time_s, r.eval_warmup_s = round(self.val.clock.eval_s, 3), round(self.val.clock.warmup_s, 3)
        if not math.isfinite(q_bpb):
            raise RunFailed("nan", f"round-trip val_bpb is {q_bpb}")
        if q_bpb >= r.untrained_val_bpb:
            raise RunFailed("no_learning", f"val_bpb {q_bpb:.4f} is no better than an untrained model's "
                                           f"{r.untrained_val_bpb:.4f}")
