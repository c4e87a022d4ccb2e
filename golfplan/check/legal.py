"""``golfplan check --legal``: the challenge's rules, checked on a configuration or on finished runs.

Rules (each passes, fails, warns or is skipped, with its figures):

artifact      code + compressed model <= 16,000,000 bytes (``artifact_limit_bytes``). The code is
              the packed ``train_gpt.py`` (:mod:`golfplan.core.export.packer`), byte for byte what
              ``golfplan export`` writes; the model is each run's artifact (measured), or the budget
              check's estimate when no run is given.
data          training, calibration and the export read no validation shard, and evaluation reads
              no training shard: a short probe run of the shrunken configuration records every
              shard file opened (a ``sys.addaudithook`` on ``open``) with the trainer's phase it was
              opened in and the code that opened it (the core's own load of the validation split
              before training is the one allowed). Files opened by other means (``torch.from_file``,
              C extensions) and validation tokens reached through memory are not seen.
causality     the evaluation strategy passes the causality probe (changing validation tokens after
              position t leaves every score up to t unchanged; a test-time-training strategy never
              updates on a token before scoring it): ``golfplan.check.causality.causality_probe`` on
              the shrunken model, for each technique with an ``evaluate`` hook (none: the default);
              a probe that cannot run fails.
train_time    the training loop plus calibration <= 600 s (with ``calibration_clock: after``, the
              record's accounting, the loop alone and calibration reported apart): measured where a run trained on the GPU;
              an estimate from the profile's measured ms/step (``golfplan.core.profiles``) where it
              did not; a wallclock cap of at most 600 s bounds it by construction.
eval_time     the final evaluation <= 600 s, measured by the runs (on the CPU, a CPU measurement).
significance  with a reference (``--reference RUN_DIR_OR_BPB``) and several seeds: the challenge's
              rule, mean val_loss at least 0.005 nats below the reference at p < 0.01, one-sided
              (Welch's t-test against the reference's seeds; a one-sample t-test against a single
              reference value), with the p-value.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from dataclasses import asdict, dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, Callable, Sequence

from golfplan.core.errors import GolfplanError

TRAIN_LIMIT_S = 600.0  # the challenge: training in 10 minutes on 8xH100
EVAL_LIMIT_S = 600.0  # and evaluation in another 10 minutes
MIN_GAIN_NATS = 0.005  # a record beats the last by at least 0.005 nats ...
P_LIMIT = 0.01  # ... shown at p < 0.01
PROBE_STEPS = 3  # training, calibration, the pre-export and the final evaluation all run


@dataclass
class Rule:
    name: str
    status: str  # pass | fail | warn | skip
    message: str


@dataclass
class LegalReport:
    rules: list[Rule] = field(default_factory=list)
    code_bytes: int | None = None
    p_value: float | None = None

    @property
    def ok(self) -> bool:
        return all(r.status != "fail" for r in self.rules)

    @property
    def reason(self) -> str:
        r = next((r for r in self.rules if r.status == "fail"), None)
        return f"{r.name}: {r.message}" if r else ""

    def rule(self, name: str) -> Rule | None:
        return next((r for r in self.rules if r.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "reason": self.reason, "code_bytes": self.code_bytes, "p_value": self.p_value,
                "rules": [asdict(r) for r in self.rules]}


def format_rule(r: Rule) -> str:
    mark = {"pass": "ok  ", "fail": "FAIL", "warn": "warn", "skip": "skip"}[r.status]
    return f"  {mark} {r.name:<13} {r.message}"


# ---- runs and references ---------------------------------------------------------------------

@dataclass
class RunRecord:
    """A finished run: its directory and its ``result.json``."""

    path: Path
    result: dict[str, Any]

    def get(self, key: str, default: Any = None) -> Any:
        v = self.result.get(key)
        return default if v is None else v

    @property
    def seed(self) -> int:
        return int((self.result.get("config") or {}).get("seed", 0))

    @property
    def log_text(self) -> str:
        try:
            return (self.path / "train.log").read_text(errors="replace")
        except OSError:
            return ""

    @property
    def start(self) -> dict[str, Any]:
        """The run's ``start`` event (``events.jsonl``: its versions, device, threads, ...); empty when
        it has none."""
        from golfplan.core.runlog import EVENTS_FILE, read_events

        return next((e for e in read_events(self.path / EVENTS_FILE) if e.get("event") == "start"), {})

    @property
    def eval_time_s(self) -> float | None:
        """The final evaluation's time: the result's ``eval_time_s`` where the run recorded one, else
        the ``eval_time:...ms`` of its last ``final_..._roundtrip`` log line."""
        if self.result.get("eval_time_s") is not None:
            return float(self.result["eval_time_s"])
        found = re.findall(r"^final_\S*roundtrip val_loss:\S+ val_bpb:\S+ eval_time:(\d+)ms", self.log_text, re.M)
        return int(found[-1]) / 1000.0 if found else None


def load_runs(paths: Sequence[str | Path]) -> list[RunRecord]:
    """Runs from run directories (with ``result.json``) or folders of them (one level down)."""
    out: list[RunRecord] = []
    for p in map(Path, paths):
        dirs = [p] if (p / "result.json").is_file() else sorted(d for d in p.glob("*") if (d / "result.json").is_file())
        if not dirs:
            raise GolfplanError(f"{p}: not a run directory (no result.json), nor a folder of them")
        for d in dirs:
            try:
                out.append(RunRecord(d, json.loads((d / "result.json").read_text())))
            except (OSError, ValueError) as e:
                raise GolfplanError(f"{d}/result.json: cannot read it ({e})") from None
    return out


def run_composition(run: RunRecord, plugin_paths: Sequence[str] = ()) -> Any:
    """A finished run's composition (``golfplan.core.hooks.Composition``): its plugins as it ran them
    and its configured config, from its ``result.json`` (already configured: ``configure`` is not
    applied again). Plugin paths: the given ones and the run's own (a planner run's ``spec.json``)."""
    from golfplan.core.config import Config, check_field, coerce_field
    from golfplan.core.hooks import compose
    from golfplan.registry import Registry

    values = dict(run.result.get("config") or {})
    for k, v in values.items():
        check_field(k, v)
    config = Config(**{k: coerce_field(k, v) for k, v in values.items()})
    spec = run.path / "spec.json"
    paths = list(plugin_paths)
    if spec.is_file():
        paths += [p for p in json.loads(spec.read_text()).get("plugin_path") or [] if p not in paths]
    techniques = Registry(plugin_paths=paths).instantiate(run.result.get("plugins") or {})
    return compose(techniques, config, configure=False)


def reference_losses(text: str) -> tuple[list[float] | None, float | None, str]:
    """``--reference``: per-seed val_loss (nats) from run directories or a records folder's
    ``submission.json``, or a val_bpb number. Returns ``(losses, bpb, description)``."""
    try:
        return None, float(text), f"val_bpb {float(text):.5f}"
    except ValueError:
        pass
    p = Path(text)
    sub = p / "submission.json" if p.is_dir() else p
    if sub.name == "submission.json" and sub.is_file():
        data = json.loads(sub.read_text())
        seeds = data.get("seed_results") or {}
        losses = [float(v["val_loss"]) for v in seeds.values() if v.get("val_loss") is not None]
        if not losses and data.get("val_loss") is not None:
            losses = [float(data["val_loss"])]
        if losses:
            return losses, None, f"{sub} ({len(losses)} seed(s))"
        if data.get("val_bpb") is not None:
            return None, float(data["val_bpb"]), f"{sub} (val_bpb {float(data['val_bpb']):.5f})"
        raise GolfplanError(f"{sub}: no val_loss or val_bpb to compare with")
    runs = [r for r in load_runs([p]) if r.result.get("status") == "complete"]
    if not runs:
        raise GolfplanError(f"--reference {text}: no complete run there")
    return [float(r.result["val_loss"]) for r in runs], None, f"{p} ({len(runs)} run(s))"


def significance(losses: Sequence[float], ref_losses: Sequence[float] | None = None,
                 ref_value: float | None = None) -> tuple[bool, float, str]:
    """The challenge's rule on per-seed val_loss (nats): the mean at least :data:`MIN_GAIN_NATS`
    below the reference at p < :data:`P_LIMIT`, one-sided. Returns ``(passed, p, how)``."""
    from scipy import stats

    losses = [float(x) for x in losses]
    mean = sum(losses) / len(losses)
    if ref_losses is not None and len(ref_losses) >= 2:
        ref = sum(ref_losses) / len(ref_losses)
        test = stats.ttest_ind(losses, [x - MIN_GAIN_NATS for x in ref_losses], equal_var=False, alternative="less")
        how = f"Welch's t-test, n={len(losses)} vs {len(ref_losses)}"
    else:
        ref = float(ref_losses[0]) if ref_losses else float(ref_value)  # type: ignore[arg-type]
        test = stats.ttest_1samp(losses, ref - MIN_GAIN_NATS, alternative="less")
        how = f"one-sample t-test, n={len(losses)}"
    p = float(test.pvalue)
    gain = ref - mean
    ok = math.isfinite(p) and p < P_LIMIT
    return ok, p, (f"mean val_loss {mean:.5f} vs reference {ref:.5f}: {gain:+.5f} nats better (needs >= "
                   f"{MIN_GAIN_NATS}), p = {p:.2g} ({how}, one-sided; needs p < {P_LIMIT})")


# ---- the data probe ---------------------------------------------------------------------------

_audit: list[tuple[str, str, str, str]] | None = None  # (kind, file, phase, who) while a probe records
_hooked = False
TRAINER = "golfplan.core.train.trainer"
# The trainer's functions on the stack name the phase, first match wins: an evaluation inside
# ``_finish`` is an evaluation; ``_data`` opening the validation split is the core's own load.
PHASES = (({"evaluate"}, "evaluation"), ({"_calibrate", "batches"}, "calibration"), ({"_make_loader"}, "training"),
          ({"_data"}, "setup"), ({"_finish"}, "export"))
QUIET = ("golfplan.core.", "numpy", "torch", "importlib", "pathlib", "io", "codecs", "builtins")


def _on_audit(event: str, args: tuple) -> None:
    if event != "open" or _audit is None or not args or not isinstance(args[0], (str, bytes, os.PathLike)):
        return
    from golfplan.core.data.shards import TRAIN_PATTERN, VAL_PATTERN

    name = os.path.basename(os.fsdecode(args[0]))
    kind = "val" if fnmatch(name, VAL_PATTERN) else "train" if fnmatch(name, TRAIN_PATTERN) else None
    if kind is None:
        return
    who, trainer = "", set()
    frame = sys._getframe(1)
    while frame is not None:
        mod, fn = frame.f_globals.get("__name__", ""), frame.f_code.co_name
        if not who and not mod.startswith(QUIET) and mod != __name__:
            who = f"{mod}.{fn}"
        if mod == TRAINER:
            trainer.add(fn)
        frame = frame.f_back
    if trainer:  # inside a run
        phase = next((ph for fns, ph in PHASES if fns & trainer), "training")
        _audit.append((kind, name, phase, who or "golfplan's core"))


def data_probe(config: Any, techniques: Sequence[Any]) -> Rule:
    """Train the shrunken configuration a few steps and record which shards each phase opens."""
    global _audit, _hooked
    from golfplan.core.data import corpus
    from golfplan.core.config import shrink
    from golfplan.core.train.trainer import train

    small = shrink(config, steps=PROBE_STEPS).replace(allow_eager=True)
    if not small.data_path or not Path(small.data_path).is_dir():
        corpus.build(small.vocab_size, log=lambda m: None)
        small = small.replace(data_path=str(corpus.dataset_dir(small.vocab_size)),
                              tokenizer_path=str(corpus.tokenizer_path(small.vocab_size)))
    if not _hooked:
        sys.addaudithook(_on_audit)
        _hooked = True
    _audit = []
    try:
        train(small, [t.fresh() for t in techniques], log=lambda m: None, distributed=False, configure=False)
    except Exception as e:  # noqa: BLE001 - the probe's run broke: that is the verdict
        return Rule("data", "fail", f"the probe run crashed: {type(e).__name__}: {e}")
    finally:
        seen, _audit = _audit, None
    bad = [(k, f, ph, who) for k, f, ph, who in seen
           if (k == "val" and ph in ("training", "calibration", "export")) or (k == "train" and ph == "evaluation")]
    if bad:
        k, f, ph, who = bad[0]
        what = "a validation shard" if k == "val" else "a training shard"
        return Rule("data", "fail", f"{ph} read {what} ({f}) in {who}")
    phases = sorted({ph for k, _, ph, _ in seen if k == "train"})
    return Rule("data", "pass", f"{PROBE_STEPS}-step probe: {', '.join(phases) or 'nothing'} read training shards "
                                f"only; evaluation read no training shard ({len(seen)} shard opens seen)")


def causality_rule(config: Any, techniques: Sequence[Any]) -> Rule:
    """Each evaluation strategy of the run (a technique with an ``evaluate`` hookimpl; none: the
    default evaluation) through ``golfplan.check.causality.causality_probe``, on the shrunken model.
    A probe that cannot run (the strategy or the model cannot be built, a module it needs is not
    installed, it raises) fails the rule: a strategy the probe did not see is not shown causal."""
    from golfplan.check.causality import causality_probe, probe_setup
    from golfplan.core.config import shrink

    small = shrink(config)
    strategies = [t for t in techniques if hasattr(getattr(t, "evaluate", None), "golfplan_impl")] or [None]
    checked = []
    for strategy in strategies:
        name = getattr(strategy, "name", "plain")
        try:
            model, val = probe_setup(small, [t.fresh() for t in techniques])
            verdict = causality_probe(strategy.fresh() if strategy is not None else None, model, val, small)
        except Exception as e:  # noqa: BLE001 - whatever stops the probe, the strategy is not shown causal
            return Rule("causality", "fail", f"the probe of {name} could not run: {type(e).__name__}: {e}")
        if not verdict.ok:
            return Rule("causality", "fail", f"{verdict.strategy}: {verdict.violation}")
        checked.append(verdict.strategy)
    return Rule("causality", "pass", f"{', '.join(checked)}: scores up to t do not depend on tokens after t, each "
                                     f"token scored once, no update before its score")


# ---- budgets ------------------------------------------------------------------------------------

def _estimate(config: Any, techniques: Sequence[Any]) -> dict[str, Any]:
    """The budget check's estimate (parameters, artifact bytes, ms/step, steps) for this config."""
    from golfplan.check.stages import CheckReport, _budget
    from golfplan.check.trace import CheckFailed

    report = CheckReport()
    try:
        _budget({"config": config, "techniques": techniques}, report)
    except CheckFailed:
        pass  # over the limit: the estimate is still filled in, and judged below
    return report.estimate


def artifact_rule(config: Any, code: int, runs: Sequence[RunRecord], est: dict[str, Any]) -> Rule:
    limit = config.artifact_limit_bytes
    if runs:
        worst = max(runs, key=lambda r: r.get("model_bytes", 0))
        model = int(worst.get("model_bytes", 0))
        how = f"model {model:,} (measured, largest of {len(runs)} run(s)) + code {code:,} (packed train_gpt.py)"
    else:
        model = int(est.get("artifact_bytes", 0)) - int(est.get("code_bytes", 0))
        how = f"model ~{model:,} (the budget check's estimate) + code {code:,} (packed train_gpt.py)"
    total = model + code
    return Rule("artifact", "pass" if total <= limit else "fail", f"{total:,} bytes of {limit:,}: {how}")


def hardware_of(r: RunRecord) -> str:
    """``<processes> x <device kind>`` of a run, as submission.json's ``hardware`` reads."""
    dev = str(r.get("device", "?")).split(":")[0]
    return f"{r.get('world_size', 1)} x {dev}"


def train_time_rule(config: Any, runs: Sequence[RunRecord], est: dict[str, Any]) -> Rule:
    cap = config.max_wallclock_seconds
    if cap > TRAIN_LIMIT_S:
        return Rule("train_time", "fail", f"the wallclock cap is {cap:g}s, over the {TRAIN_LIMIT_S:g}s limit")
    ms = est.get("ms_per_step")
    estimate = None
    if ms and est.get("steps"):
        estimate = est["steps"] * ms / 1000.0 + (config.calibration_reserve_seconds if cap <= 0 else 0.0)
    note = (f"; estimate on the profile's hardware {estimate:.0f}s ({est['steps']} steps at ~{ms:.0f} ms/step, the "
            f"profile's measured figure scaled by parameters)" if estimate is not None else "")
    after = getattr(config, "calibration_clock", "inside") == "after"  # the record's accounting: Hessians after the timer
    if runs:
        def charged(r: RunRecord) -> float:
            return r.get("train_time_s", 0.0) + (0.0 if after else r.get("calibration_s", 0.0))

        worst = max(runs, key=charged)
        t = charged(worst)
        gpu = "cuda" in str(worst.get("device", ""))
        slack = (worst.get("ms_per_step") or 0.0) / 1000.0 if worst.get("capped_by") == "wallclock" else 0.0
        what = (f"training (calibration {worst.get('calibration_s', 0.0):.1f}s after the timer: calibration_clock after)"
                if after else "training + calibration")
        measured = (f"{t:.1f}s {what} measured on {hardware_of(worst)} (slowest of {len(runs)} run(s)"
                    f"{'; the last step may pass the cap' if slack else ''})")
        if gpu or estimate is None:
            label = "" if gpu else " (a CPU measurement: no GPU figure for this profile)"
            ok = t <= TRAIN_LIMIT_S + slack
            return Rule("train_time", "pass" if ok else "fail", f"{measured}{label}{note}")
        ok = cap > 0 or estimate <= TRAIN_LIMIT_S
        return Rule("train_time", "pass" if ok else "fail", f"{measured}{note}" + ("; capped at "
                    f"{cap:g}s by max_wallclock_seconds" if cap > 0 else ""))
    if cap > 0:
        where = "after the timer: calibration_clock after" if after else "inside the cap"
        return Rule("train_time", "pass", f"capped at {cap:g}s by max_wallclock_seconds (calibration {where}){note}")
    if estimate is None:
        return Rule("train_time", "warn", f"no wallclock cap and no measured ms/step for this profile: "
                                          f"{config.iterations} steps, time unknown")
    return Rule("train_time", "pass" if estimate <= TRAIN_LIMIT_S else "fail",
                f"no wallclock cap: {estimate:.0f}s estimated of {TRAIN_LIMIT_S:g}s{note}")


def eval_time_rule(runs: Sequence[RunRecord]) -> Rule:
    if not runs:
        return Rule("eval_time", "skip", "no run given: the evaluation's time is measured by a run")
    timed = [(r.eval_time_s, r) for r in runs if r.eval_time_s is not None]
    if not timed:
        return Rule("eval_time", "warn", "the runs recorded no final evaluation time")
    t, r = max(timed, key=lambda x: x[0])
    gpu = "cuda" in str(r.get("device", ""))
    label = "" if gpu else " (a CPU measurement)"
    return Rule("eval_time", "pass" if t <= EVAL_LIMIT_S else "fail",
                f"{t:.1f}s final evaluation measured on {hardware_of(r)}{label}, slowest of {len(timed)}; limit "
                f"{EVAL_LIMIT_S:g}s")


def significance_rule(runs: Sequence[RunRecord], reference: str | None, report: LegalReport) -> Rule:
    if not reference:
        return Rule("significance", "skip", "no --reference: nothing to beat")
    done = [r for r in runs if r.result.get("status") == "complete" and r.result.get("val_loss") is not None]
    if len(done) < 2:
        return Rule("significance", "skip", f"{len(done)} complete run(s): the rule needs several seeds (the "
                                            f"challenge asks for enough runs to show p < {P_LIMIT}, usually 3)")
    ref_losses, ref_bpb, what = reference_losses(reference)
    losses = [float(r.result["val_loss"]) for r in done]
    ref_value = None
    if ref_losses is None:  # a BPB: in nats through the runs' own nats-per-bit-per-byte ratio (same val set)
        ratio = sum(float(r.result["val_loss"]) / float(r.result["val_bpb"]) for r in done) / len(done)
        ref_value = ref_bpb * ratio
        what += f" = {ref_value:.5f} nats at the runs' val_loss/val_bpb ratio {ratio:.5f}"
    ok, p, how = significance(losses, ref_losses, ref_value)
    report.p_value = p
    return Rule("significance", "pass" if ok else "fail", f"{how}; reference {what}")


_probe_verdicts: dict[str, Rule] = {}


def _probed(rule: str, config: Any, techniques: Sequence[Any]) -> Rule:
    """A probe's verdict, once per configuration and process (``golfplan export`` and its check share it)."""
    from golfplan.core.export.packer import bake

    key = json.dumps([rule, config.data_path, bake(config, techniques)], sort_keys=True, default=str)
    if key not in _probe_verdicts:
        _probe_verdicts[key] = (data_probe if rule == "data" else causality_rule)(config, techniques)
    return _probe_verdicts[key]


def check_legal(config: Any, techniques: Sequence[Any], runs: Sequence[RunRecord] = (), reference: str | None = None,
                probes: bool = True, log: Callable[[Rule], None] | None = None) -> LegalReport:
    """Every rule for ``config`` (as the trainer runs it: after ``configure``) and ``techniques``,
    judged on ``runs`` where given (their measured figures), else on estimates."""
    from golfplan.core.export.pack import code_size

    report = LegalReport()
    runs = [r for r in runs if r.result.get("status") == "complete"] or list(runs)
    report.code_bytes = code_size(config, techniques)
    est = _estimate(config, techniques)
    steps: list[Callable[[], Rule]] = [lambda: artifact_rule(config, report.code_bytes or 0, runs, est)]
    if probes:
        steps += [lambda: _probed("data", config, techniques), lambda: _probed("causality", config, techniques)]
    steps += [lambda: train_time_rule(config, runs, est), lambda: eval_time_rule(runs),
              lambda: significance_rule(runs, reference, report)]
    for step in steps:
        rule = step()
        report.rules.append(rule)
        if log:
            log(rule)
    return report
