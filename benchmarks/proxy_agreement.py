"""How far does a CPU verdict agree with the seed's GPU verdict? Each clear seed result, rerun on CPU proxies.

The seed log (/work/shared/seed/000_f7dfdbf616e55cc6.txt: 600 s runs of the 9 x 512 baseline on an
RTX 4000 Ada) measured each experiment once, against a base it names. This script takes every
experiment whose measured delta is clear, reruns it on each CPU proxy profile with several seeds
beside that proxy's run of the same base, and prints, per proxy: how often the sign agrees, the
Spearman rank correlation of the proxy's deltas with the seed's, and the CPU-minutes one verdict cost.

    python benchmarks/proxy_agreement.py [--proxies cpu,cpu-deep] [--repeats 3] [--jobs 2] [--work DIR]

The rules, written once and applied to every row alike:

* **The seed's noise.** Its four reruns of one configuration (C10/D10 1.5501/1.5515, D5/E10
  1.5412/1.5395, E8/F10 1.5354/1.5365, H1/H6 1.5207/1.5214) differ by 0.0014, 0.0017, 0.0011 and
  0.0007: a root mean square of 0.00128, the noise of a delta between two single runs (one run's sd
  0.0009). A verdict is *clear* when the delta is at least twice that: |delta| >= 0.0026 BPB.
* **Which rows.** Every experiment of the log with a clear delta against the base it ran on, in that
  base (its wave's fixed plugins: the ``CONTEXTS`` below, each written as the wave's study file has
  it), except combinations whose base the log leaves ambiguous (A9, A15, A16). A row's seed delta is
  its BPB minus its base's BPB (the mean of the base's reruns where it has two).
* **Shapes.** The seed's depth, width, KV heads and U-Net split are settings of its 9-layer, 512-wide,
  8-head model; on a proxy they are scaled by the proxy's own (layers x L/9, width x D/512 rounded to
  whole even heads, KV heads x H/8, encoder layers x L/9), and a change the rounding would erase
  moves one step the seed's way. ``cpu-deep`` has the seed's layers and heads, so there they are
  the seed's numbers.
* **Seeds.** Each configuration runs ``--repeats`` seeds (the profile's seed and up); base and row share
  them, so a row's delta is the mean of per-seed differences, with its standard error.
* **Speed (the step-equivalent).** The seed's runs were capped at 600 s, so a faster technique got
  more steps; the proxies are capped by steps. A row's delta therefore gets the step-equivalent of its
  speed: with ``r`` its ms/step over its base's (geometric means over seeds, both measured in the same
  study, runs side by side on one thread each) and ``S`` the proxy's slope of BPB against ln(steps),
  ``delta_equiv = delta - S ln r`` (the BPB it would have had with ``1/r`` times the steps). ``S`` is
  measured on the proxy's cosine baseline at 0.8x, 1x and 1.25x its steps (each run finishing its
  schedule, as a faster technique's run does; a periodic validation inside one run would read a
  schedule that is not finished). ``r`` is measured side by side in one process on one thread: the
  base's training step and the row's (the same profile, plugins and config as their runs, random
  tokens), alternating, ``SPEED_ROUNDS`` rounds of ``SPEED_STEPS`` steps each after a warm-up step, so
  both see the same load (the runs' own ms/step, made minutes apart beside other work, drift by ~8 %
  between seeds of one configuration on a busy machine). ``r`` is used only where it is resolved,
  ``|ln r|`` above twice the standard error of the rounds' ratios; else ``r = 1``. The table shows
  both deltas, the summary both agreements.
* **Failures.** A proxy run that fails (NaN, no learning) counts as hurting, ranked below every
  measured row.
* **CPU-minutes per verdict.** The CPU time (user + system, of the planners, workers and every run they
  waited for; not wall time, which the other load on the machine stretches) per run of the proxy, times
  all its runs (baselines and the slope's included), over the number of rows.

It runs as golfplan studies (experiments mode, one per base and proxy: ``golfplan study FILE``), so
rerunning the same command resumes: finished runs are kept. Trials run side by side: with
``golfplan study --jobs`` where the installed golfplan has it, else with extra ``golfplan worker``
processes on the same storage; every run has ``GOLFPLAN_THREADS=1`` so its result does not depend on
what runs beside it. ``--report-only`` prints the table from what the storage holds.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

RERUNS = ((1.5501, 1.5515), (1.5412, 1.5395), (1.5354, 1.5365), (1.5207, 1.5214))  # C10/D10 D5/E10 E8/F10 H1/H6
DELTA_NOISE = math.sqrt(sum((a - b) ** 2 for a, b in RERUNS) / len(RERUNS))  # 0.00128: a delta of two single runs
CLEAR = 2 * DELTA_NOISE
SEED_SHAPE = dict(num_layers=9, model_dim=512, num_heads=8, num_kv_heads=4)
SWEEP = (("N32", 0.8), ("N50", 1.25))  # the slope's extra horizons, as multiples of the proxy's steps
SPEED_ROUNDS, SPEED_STEPS = 6, 2  # the side-by-side timing of a row against its base

P = dict[str, dict[str, Any]]
T, SC20, R5K = {"tidal": {"warmup_frac": 0.382}}, {"softcap": {"value": 20.0}}, {"rope_base": {"base": 5000.0}}
HD, PAR, SILU = {"head_diversity": {"coef": 1.0e-4}}, {"parallel": {}}, {"silu2": {}}


@dataclass
class Row:
    id: str
    name: str
    plugins: P
    bpb: float  # the seed's BPB
    steps: int | None = None  # the seed's steps, where the log gives them
    without: list[str] = field(default_factory=list)


@dataclass
class Context:
    key: str
    fixed: P
    base_bpb: float  # the base's BPB in the seed (mean of its reruns)
    base_from: str
    rows: list[Row]


CONTEXTS = [
    Context("cos", {"cosine": {}}, 1.6117, "the cosine baseline (header)", [
        Row("1", "Z-loss 1e-4", {"z_loss": {"coef": 1e-4}}, 1.6282),
        Row("3", "Token dropout 5%", {"token_dropout": {"rate": 0.05}}, 1.6145),
        Row("4", "Embed mixup 0.1", {"embed_mixup": {"weight": 0.1}}, 1.6157),
        Row("5", "Cosine 2-cycle", {"cosine_2cycle": {"cycles": 2}}, 1.7383),
        Row("6", "Z-loss + logit penalty + token dropout",
            {"z_loss": {"coef": 1e-4}, "logit_penalty": {"coef": 1e-5}, "token_dropout": {"rate": 0.05}}, 1.6171),
        Row("N2", "Tidal LR", T, 1.5906),
        Row("NF1", "Breathing LR", {"breathing": {"inhale": 0.21, "hold": 0.37}}, 1.5961),
        Row("NF2", "Whale dive LR", {"whale_dive": {"dives": 3}}, 1.6487),
        Row("NF5", "Synaptic scaling", {"synaptic_scaling": {}}, 1.7239),
        Row("W1", "Canopy", {"canopy": {"top": 1.0, "bottom": 0.3}}, 1.8587),
        Row("W2", "Predator-prey LR", {"predator_prey": {}}, 1.7981),
        Row("W3", "Punctuated equilibrium", {"punctuated": {"bursts": 3}}, 1.8581),
        Row("W4", "Mycorrhizal", {"mycorrhizal": {"distance": 3}}, 1.6223),
        Row("W5", "Thermal vent", {"thermal_vent": {"layers": 2, "boost_min": 2.0, "boost_max": 3.0}}, 1.6472),
        Row("W6", "Canopy + mycorrhizal", {"canopy": {"top": 1.0, "bottom": 0.3}, "mycorrhizal": {"distance": 3}}, 1.8667),
        Row("A4", "SwiGLU", {"swiglu": {}}, 1.6053, 226),
        Row("A8", "Parallel blocks", PAR, 1.5868, 259),
    ]),
    Context("tidal", T, 1.5906, "N2", [
        Row("NF8", "Head diversity", HD, 1.5867),
        Row("NF11", "12 layers x 448", {"depth": {"num_layers": 12}, "width": {"model_dim": 448}}, 1.6620, 197),
        Row("NF12", "640 wide, 7 layers, MQA",
            {"width": {"model_dim": 640}, "depth": {"num_layers": 7}, "gqa": {"kv_heads": 1}}, 1.6013, 234),
        Row("NF13", "Aggressive LR", {"lr": {"embed_lr": 0.8, "matrix_lr": 0.06, "muon_momentum": 0.95}}, 1.5877),
        Row("NF14", "Softcap 20 + RoPE 5000", {**SC20, **R5K}, 1.5765),
        Row("W7", "Canopy", {"canopy": {"top": 1.0, "bottom": 0.3}}, 1.5954),
        Row("W8", "Mycorrhizal", {"mycorrhizal": {"distance": 3}}, 1.6009),
        Row("W9", "Thermal vent", {"thermal_vent": {"layers": 2, "boost_min": 2.0, "boost_max": 3.0}}, 1.6124),
        Row("W10", "Predator-prey WD", {"predator_prey_wd": {}}, 1.6371),
    ]),
    Context("nf14", {**T, **SC20, **R5K}, 1.5765, "NF14", [
        Row("A1", "LeakyReLU²", {"leaky_relu2": {"slope": 0.01}}, 1.5820, 240),
        Row("A3", "SwiGLU", {"swiglu": {}}, 1.5798, 226),
        Row("A7", "Parallel blocks", PAR, 1.5600, 260),
        Row("W0a", "Head diversity", HD, 1.5811),
        Row("W0c", "Softcap 15", {"softcap": {"value": 15.0}}, 1.5793),
        Row("W0d", "RoPE base 3000", {"rope_base": {"base": 3000.0}}, 1.5845),
    ]),
    Context("c10", {**T, **SC20, **R5K, **PAR, **SILU, **HD, "lr": {"embed_lr": 0.8, "matrix_lr": 0.08}},
            (1.5501 + 1.5515) / 2, "C10 and its rerun D10", [
        Row("D3", "No head diversity", {}, 1.5541, 259, without=["head_diversity"]),
        Row("D4", "U-Net 3/6", {"unet": {"encoder_layers": 3}}, 1.5439, 262),
        Row("D5", "U-Net 2/7", {"unet": {"encoder_layers": 2}}, 1.5412, 263),
        Row("D6", "U-Net 1/8", {"unet": {"encoder_layers": 1}}, 1.5377, 266),
        Row("D7", "U-Net 5/4", {"unet": {"encoder_layers": 5}}, 1.5568, 257),
    ]),
    Context("f7", {**T, "softcap": {"value": 15.0}, **R5K, **PAR, **SILU, **HD, "lr": {"embed_lr": 0.8, "matrix_lr": 0.11},
                   "unet": {"encoder_layers": 1}, "gqa": {"kv_heads": 2}}, 1.5329, "F7", [
        Row("G1", "Untied embeddings", {"untied": {}}, 1.5211, 266),
        Row("G3", "WD ramp 0.01", {"wd_ramp": {"wd": 0.01}}, 1.5603, 265),
    ]),
    Context("g1", {**T, "softcap": {"value": 15.0}, **R5K, **PAR, **SILU, **HD, "lr": {"embed_lr": 0.8, "matrix_lr": 0.11},
                   "unet": {"encoder_layers": 1}, "gqa": {"kv_heads": 2}, "untied": {}}, 1.5211, "G1", [
        Row("H2", "MLP 3x", {"mlp_width": {"mlp_mult": 3.0}}, 1.5481, 244),
        Row("H4", "WD ramp 0.04", {"wd_ramp": {"wd": 0.04}}, 1.6569, 276),
    ]),
]


# ---- the proxy's version of a seed configuration ------------------------------------------------
def _scaled(value: float, seed_default: float, proxy_default: int, ratio: float, lo: int = 0) -> int:
    v = max(lo, int(math.floor(value * ratio + 0.5)))
    if value != seed_default and v == proxy_default:  # the rounding erased the change: one step the seed's way
        v = proxy_default + (1 if value > seed_default else -1)
    return max(lo, v)


def adapt(plugins: P, shape: dict[str, Any]) -> P:
    """The seed's shape settings scaled to a proxy of ``shape`` (layers, width, heads, KV heads)."""
    L, D, H = shape["num_layers"], shape["model_dim"], shape["num_heads"]
    out = {n: dict(p) for n, p in plugins.items()}
    if "depth" in out:
        out["depth"]["num_layers"] = _scaled(out["depth"]["num_layers"], 9, L, L / 9, lo=2)
    if "width" in out:
        step = 2 * H  # whole heads of even size
        d = out["width"]["model_dim"] * D / 512
        out["width"]["model_dim"] = max(step, int(math.floor(d / step + 0.5)) * step)
    if "gqa" in out:
        kv = _scaled(out["gqa"]["kv_heads"], 4, shape["num_kv_heads"], H / 8, lo=1)
        while H % kv:
            kv -= 1
        out["gqa"]["kv_heads"] = kv
    if "unet" in out:
        e = out["unet"]["encoder_layers"]
        layers = out.get("depth", {}).get("num_layers", L)
        out["unet"]["encoder_layers"] = min(_scaled(e, 4, layers // 2, layers / 9), layers)
    return out


def seed_delta(ctx: Context, row: Row) -> float:
    return row.bpb - ctx.base_bpb


def proxy_rows(ctx: Context, shape: dict[str, Any]) -> list[tuple[Row, str]]:
    """The clear rows of ``ctx``, each with the experiment that measures it on a proxy of ``shape``: its
    own, or an earlier row's where the scaling made the two configurations the same (the 4-layer
    proxy cannot tell U-Net 3/6 from 2/7)."""
    seen: dict[str, str] = {}
    out = []
    for r in ctx.rows:
        if abs(seed_delta(ctx, r)) < CLEAR:
            continue
        key = json.dumps([adapt(r.plugins, shape), sorted(r.without)], sort_keys=True)
        out.append((r, seen.setdefault(key, r.id)))
    return out


def study_file(ctx: Context, proxy: str, shape: dict[str, Any], steps: int, repeats: int) -> dict[str, Any]:
    exps = []
    for r, measured_by in proxy_rows(ctx, shape):
        if measured_by != r.id:
            continue
        plugins, config = adapt(r.plugins, shape), {}
        if "width" in plugins:  # the width plugin's search range is the GPU's (256-1024): the key itself
            config["model_dim"] = plugins.pop("width")["model_dim"]
        exps.append({"id": r.id, "name": r.name, "plugins": plugins, "without": list(r.without), "config": config,
                     "seed": {"bpb": r.bpb, "delta": round(seed_delta(ctx, r), 4), **({"steps": r.steps} if r.steps else {})}})
    if ctx.key == "cos":  # the slope of BPB against ln(steps), from the baseline itself
        for sid, mult in SWEEP:
            exps.append({"id": sid, "name": f"baseline at {int(round(steps * mult))} steps", "plugins": {},
                         "config": {"iterations": int(round(steps * mult))}})
    return {"name": study_name(ctx, proxy), "description": f"proxy agreement: seed base {ctx.base_from} on {proxy}",
            "mode": "experiments", "profile": proxy, "fixed": adapt(ctx.fixed, shape), "baseline": True,
            "repeats": repeats, "checks": "static", "experiments": exps}


def study_name(ctx: Context, proxy: str) -> str:
    return f"pa-{proxy}-{ctx.key}"


# ---- running the studies ------------------------------------------------------------------------
def children_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def has_jobs_option() -> bool:
    p = subprocess.run([sys.executable, "-m", "golfplan", "study", "--help"], capture_output=True, text=True)
    return "--jobs" in p.stdout


def run_study(path: Path, name: str, storage: str, work: Path, jobs: int, jobs_option: bool, log) -> float:
    """Run (or resume) one study to the end; the CPU seconds it took (planner, workers and runs)."""
    env = dict(os.environ, GOLFPLAN_THREADS="1")
    out = str(work / "runs")
    cmd = [sys.executable, "-m", "golfplan", "study", str(path), "--storage", storage, "--out", out,
           "--no-report", "--quiet"]
    if jobs_option:
        cmd += ["--jobs", str(jobs)]
    before = children_cpu_s()
    main = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    workers = []
    if not jobs_option:
        time.sleep(5)  # let the study be created before the workers join it
        for _ in range(jobs - 1):
            workers.append(subprocess.Popen([sys.executable, "-m", "golfplan", "worker", "--study", name, "--storage",
                                             storage, "--out", out, "--quiet"], env=env, stdout=log,
                                            stderr=subprocess.STDOUT))
    rc = main.wait()
    for w in workers:
        w.wait()
    if rc not in (0, 1):  # 1: the study ran but some verdict failed
        raise SystemExit(f"golfplan study {path} exited with {rc}; see {log.name}")
    return children_cpu_s() - before


# ---- reading the results ------------------------------------------------------------------------
@dataclass
class Runs:
    bpb: dict[int, float] = field(default_factory=dict)  # seed -> val_bpb of a complete run
    ms: dict[int, float] = field(default_factory=dict)  # seed -> ms/step
    failed: int = 0


def read_study(name: str, storage: str) -> dict[str, Runs]:
    import optuna

    from golfplan.planner.storage import open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=name, storage=open_storage(storage))
    except KeyError:
        return {}
    out: dict[str, Runs] = {}
    for t in study.trials:
        ua = t.user_attrs
        runs = out.setdefault(str(ua.get("exp_id", "")), Runs())
        for r in ua.get("runs") or []:
            seed = r.get("seed")
            if r.get("status") == "complete" and r.get("val_bpb") is not None and seed not in runs.bpb:
                runs.bpb[seed] = float(r["val_bpb"])
                if r.get("ms_per_step"):
                    runs.ms[seed] = float(r["ms_per_step"])
            elif r.get("status") == "failed":
                runs.failed += 1
    return out


def runs_done(name: str, storage: str) -> int:
    return sum(len(r.bpb) + r.failed for r in read_study(name, storage).values())


def trial_configs(name: str, storage: str) -> dict[str, tuple[dict, dict]]:
    """exp_id -> (plugins with every param, config keys) of each configuration the study ran."""
    import optuna

    from golfplan.planner.storage import open_storage

    try:
        study = optuna.load_study(study_name=name, storage=open_storage(storage))
    except KeyError:
        return {}
    return {str(t.user_attrs["exp_id"]): (t.user_attrs.get("plugins") or {}, t.user_attrs.get("config") or {})
            for t in study.trials if t.user_attrs.get("exp_id") is not None and "plugins" in t.user_attrs}


def build_step(proxy: str, plugins: dict, config: dict):
    """The core's training step of a configuration on random tokens (what its runs train, minus the data)."""
    import torch

    from golfplan.core.config import load_spec
    from golfplan.core.hooks import apply_configure, build_model, resolve
    from golfplan.core.train.optim import build_optimizers
    from golfplan.core.train.step import Step
    from golfplan.registry import Registry

    spec = load_spec(proxy, overrides=dict(config))
    hooks = resolve(Registry().instantiate(plugins))
    c = apply_configure(hooks, spec.config, spec.explicit)
    torch.manual_seed(0)
    model = build_model(hooks, c)
    model.train()
    optimizers, muon = build_optimizers(model, c, hooks)
    accum = c.accum_steps(1)
    rows = c.train_batch_tokens // accum // c.train_seq_len
    gen = torch.Generator().manual_seed(1)

    def next_batch():
        x = torch.randint(0, c.vocab_size, (rows, c.train_seq_len), generator=gen)
        return x, torch.roll(x, -1, dims=1)

    return Step(model, model, optimizers, muon, hooks, c, next_batch, grad_accum=accum), c


def speed_ratio(proxy: str, base: tuple[dict, dict], row: tuple[dict, dict]) -> dict[str, float]:
    """ln(ms/step of ``row`` / ms/step of ``base``), timed alternately in this process, and its standard error."""
    import torch

    from golfplan.core.state import Clock

    torch.set_num_threads(1)
    steps = [build_step(proxy, *base), build_step(proxy, *row)]
    k = [0, 0]

    def timed(i: int, n: int) -> float:
        step, c = steps[i]
        t0 = time.perf_counter()
        for _ in range(n):
            step(Clock(step=k[i], iterations=c.iterations, seed=c.seed))
            k[i] += 1
        return (time.perf_counter() - t0) / n

    timed(0, 1), timed(1, 1)  # warm-up
    logs = []
    for r in range(SPEED_ROUNDS):
        order = (0, 1) if r % 2 == 0 else (1, 0)  # ABBA: a drifting load weighs on both alike
        t = {i: timed(i, SPEED_STEPS) for i in order}
        logs.append(math.log(t[1] / t[0]))
    return {"ln_r": statistics.fmean(logs), "se": statistics.stdev(logs) / math.sqrt(len(logs))}


def measure_speed(name: str, proxy: str, storage: str, work: Path) -> None:
    """Time every configuration of a finished study against its base, once: WORK/speed.json keeps each
    ratio and, under ``_cpu_s``, the CPU seconds the timing took."""
    path = work / "speed.json"
    done_ = json.loads(path.read_text()) if path.exists() else {}
    got = done_.setdefault(name, {})
    configs = trial_configs(name, storage)
    for exp_id, cfg in configs.items():
        if exp_id == "0" or exp_id in got or exp_id in {sid for sid, _ in SWEEP} or "0" not in configs:
            continue
        t0 = time.process_time()
        got[exp_id] = speed_ratio(proxy, configs["0"], cfg)
        got["_cpu_s"] = got.get("_cpu_s", 0.0) + time.process_time() - t0
        path.write_text(json.dumps(done_, indent=1))


def slope(base: Runs, sweep: dict[str, Runs], steps: int) -> float | None:
    """dBPB / d ln(steps) of the baseline, per-seed intercepts (least squares over every run)."""
    pts: dict[int, list[tuple[float, float]]] = {}
    for runs, n in [(base, steps)] + [(sweep.get(sid, Runs()), steps * m) for sid, m in SWEEP]:
        for seed, bpb in runs.bpb.items():
            pts.setdefault(seed, []).append((math.log(round(n)), bpb))
    xs, ys = [], []
    for seed_pts in pts.values():
        if len(seed_pts) < 2:
            continue
        mx = sum(x for x, _ in seed_pts) / len(seed_pts)
        my = sum(y for _, y in seed_pts) / len(seed_pts)
        xs += [x - mx for x, _ in seed_pts]
        ys += [y - my for _, y in seed_pts]
    den = sum(x * x for x in xs)
    return sum(x * y for x, y in zip(xs, ys)) / den if den > 0 else None


@dataclass
class Verdict:
    ctx: str
    id: str
    name: str
    seed: float
    delta: float | None = None  # mean paired delta on the proxy (None: failed)
    se: float | None = None
    n: int = 0
    ln_r: float | None = None
    equiv: float | None = None
    speed_used: bool = False


def verdicts(proxy: str, storage: str, steps: int, speed: dict[str, Any]) -> tuple[list[Verdict], dict[str, Any]]:
    from golfplan.core.profiles import PROFILES

    data = {c.key: read_study(study_name(c, proxy), storage) for c in CONTEXTS}
    cos = data.get("cos", {})
    s = slope(cos.get("0", Runs()), cos, steps) if cos else None
    shape = {k: PROFILES[proxy].get(k, v) for k, v in SEED_SHAPE.items()}
    out = []
    for c in CONTEXTS:
        base = data[c.key].get("0")
        for r, measured_by in proxy_rows(c, shape):
            v = Verdict(c.key, r.id, r.name, seed_delta(c, r))
            runs = data[c.key].get(measured_by)
            if base is None or runs is None or (not runs.bpb and not runs.failed):
                continue  # not run yet
            seeds = sorted(set(runs.bpb) & set(base.bpb))
            if not runs.bpb and runs.failed:
                out.append(v)
                continue
            if not seeds:
                continue
            diffs = [runs.bpb[k] - base.bpb[k] for k in seeds]
            v.delta, v.n = statistics.fmean(diffs), len(diffs)
            v.se = statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else None
            v.equiv = v.delta
            timed = speed.get(study_name(c, proxy), {}).get(measured_by)
            if timed is not None:
                v.ln_r = timed["ln_r"]
                if s is not None and abs(v.ln_r) > 2 * timed["se"]:
                    v.equiv, v.speed_used = v.delta - s * v.ln_r, True
            out.append(v)
    return out, {"slope": s}


def spearman(a: list[float], b: list[float]) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic) if len(a) >= 3 else float("nan")


def summary(vs: list[Verdict], use_equiv: bool) -> dict[str, Any]:
    worst = 1e9  # a failed row ranks below every measured one
    prox = [worst if v.delta is None else (v.equiv if use_equiv else v.delta) for v in vs]
    seed = [v.seed for v in vs]
    agree = [(p > 0) == (s > 0) for p, s in zip(prox, seed)]
    clear = [(v, a) for v, a, p in zip(vs, agree, prox)
             if v.delta is None or (v.se is not None and abs(p) > 2 * v.se)]
    says_help = [a for (v, a) in clear if v.delta is not None and (v.equiv if use_equiv else v.delta) < 0]
    says_hurt = [a for (v, a) in clear if v.delta is None or (v.equiv if use_equiv else v.delta) > 0]
    return {"rows": len(vs), "sign": sum(agree), "spearman": spearman(seed, prox), "clear": len(clear),
            "clear_agree": sum(a for _, a in clear), "help": (sum(says_help), len(says_help)),
            "hurt": (sum(says_hurt), len(says_hurt))}


def fmt(x: float | None, digits: int = 4) -> str:
    return "failed" if x is None else f"{x:+.{digits}f}"


def report(proxies: list[str], storage: str, cpu: dict[str, dict[str, float]], work: Path,
           wanted: set[str] | None = None) -> str:
    """The table and the summary, over the bases in ``wanted`` (None: all)."""
    from golfplan.core.profiles import PROFILES

    bases = [c for c in CONTEXTS if wanted is None or c.key in wanted]

    lines: list[str] = []
    table: dict[str, dict[str, Verdict]] = {}
    summaries = []
    speed_path = work / "speed.json"
    speed = json.loads(speed_path.read_text()) if speed_path.exists() else {}
    for proxy in proxies:
        steps = int(PROFILES[proxy]["iterations"])
        vs, info = verdicts(proxy, storage, steps, speed)
        vs = [v for v in vs if any(v.ctx == c.key for c in bases)]
        table[proxy] = {f"{v.ctx}/{v.id}": v for v in vs}
        names = {study_name(c, proxy) for c in bases}
        mine = [r for k, r in cpu.items() if k in names]
        measured_runs = sum(r["runs"] for r in mine)
        per_run = sum(r["cpu_s"] for r in mine) / measured_runs if measured_runs else 0.0
        total_runs = sum(runs_done(n, storage) for n in names)
        timing_s = sum(v.get("_cpu_s", 0.0) for k, v in speed.items() if k in names)
        raw, eq = summary(vs, False), summary(vs, True)
        summaries.append((proxy, raw, eq, per_run * total_runs + timing_s, info))
    rows = [(c, r) for c in bases for r in c.rows if abs(seed_delta(c, r)) >= CLEAR]
    head = "| base | id | experiment | seed delta | " + " | ".join(f"{p} delta | {p} ms/step ratio | {p} step-equiv."
                                                                for p in proxies) + " |"
    lines += [head, "|" + " --- |" * (4 + 3 * len(proxies))]
    for c, r in rows:
        cells = [c.base_from if c.key != "cos" else "cosine", r.id, r.name, f"{seed_delta(c, r):+.4f}"]
        for p in proxies:
            v = table[p].get(f"{c.key}/{r.id}")
            if v is None:
                cells += ["not run", "", ""]
                continue
            d = fmt(v.delta) + (f" ± {v.se:.4f}" if v.se is not None else "")
            ratio = f"x{math.exp(v.ln_r):.2f}" if v.ln_r is not None else ""
            cells += [d, ratio, (fmt(v.equiv) + (" *" if v.speed_used else "")) if v.delta is not None else "failed"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "`*`: the speed difference is resolved on the proxy, so the step-equivalent applies.", "",
              "| proxy | rows | sign agrees (raw / step-equiv.) | Spearman (raw / step-equiv.) | "
              "proxy-clear rows: agree | says helps: right | says hurts: right | slope dBPB/dln(steps) | "
              "CPU-min / verdict |", "|" + " --- |" * 9]
    for proxy, raw, eq, cpu_s, info in summaries:
        n = eq["rows"]
        per = f"{cpu_s / 60 / n:.1f}" if n and cpu_s else "-"
        sl = f"{info['slope']:+.3f}" if info["slope"] is not None else "-"
        lines.append(f"| `{proxy}` | {n} | {raw['sign']}/{n} / {eq['sign']}/{n} | {raw['spearman']:+.2f} / "
                     f"{eq['spearman']:+.2f} | {eq['clear_agree']}/{eq['clear']} | {eq['help'][0]}/{eq['help'][1]} | "
                     f"{eq['hurt'][0]}/{eq['hurt'][1]} | {sl} | {per} |")
    text = "\n".join(lines)
    (work / "agreement.md").write_text(text + "\n")
    return text


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--proxies", default="cpu,cpu-deep", help="profiles to compare (default cpu,cpu-deep)")
    ap.add_argument("--repeats", type=int, default=3, help="seeds per configuration (default 3)")
    ap.add_argument("--jobs", type=int, default=2, help="trials side by side (default 2)")
    ap.add_argument("--work", default="proxy_agreement", help="study files, runs, storage and results")
    ap.add_argument("--storage", default=None, help="Optuna storage (default journal:WORK/studies.journal)")
    ap.add_argument("--contexts", default=None, help="only these bases (cos,tidal,nf14,c10,f7,g1): run and report")
    ap.add_argument("--report-only", action="store_true", help="print the table from what the storage holds")
    a = ap.parse_args()
    from golfplan.core.profiles import PROFILES

    proxies = [p.strip() for p in a.proxies.split(",") if p.strip()]
    for p in proxies:
        if p not in PROFILES:
            raise SystemExit(f"error: unknown profile '{p}'")
    work = Path(a.work)
    (work / "studies").mkdir(parents=True, exist_ok=True)
    storage = a.storage or f"journal:{work / 'studies.journal'}"
    cpu_path = work / "cpu_seconds.json"
    # per study: the CPU seconds of its invocations and the runs they made (an interrupted invocation
    # records nothing, so its runs are left out of both)
    cpu: dict[str, dict[str, float]] = json.loads(cpu_path.read_text()) if cpu_path.exists() else {}
    wanted = set(a.contexts.split(",")) if a.contexts else None
    n_rows = sum(1 for c in CONTEXTS for r in c.rows if abs(seed_delta(c, r)) >= CLEAR)
    print(f"seed noise: rerun deltas RMS {DELTA_NOISE:.5f} BPB; clear verdicts |delta| >= {CLEAR:.4f}: {n_rows} rows "
          f"in {len(CONTEXTS)} bases", flush=True)
    if not a.report_only:
        jobs_option = has_jobs_option()
        with open(work / "studies.log", "a") as log:
            for c in CONTEXTS:
                if wanted and c.key not in wanted:
                    continue
                for proxy in proxies:
                    shape = {k: PROFILES[proxy].get(k, v) for k, v in SEED_SHAPE.items()}
                    d = study_file(c, proxy, shape, int(PROFILES[proxy]["iterations"]), a.repeats)
                    path = work / "studies" / f"{d['name']}.yaml"
                    path.write_text(yaml.safe_dump(d, sort_keys=False, allow_unicode=True))
                    t0, n0 = time.time(), runs_done(d["name"], storage)
                    print(f"{d['name']}: {len(d['experiments']) + 1} configurations x {a.repeats} seeds ...", flush=True)
                    s = run_study(path, d["name"], storage, work, a.jobs, jobs_option, log)
                    n = runs_done(d["name"], storage) - n0
                    rec = cpu.setdefault(d["name"], {"cpu_s": 0.0, "runs": 0})
                    rec["cpu_s"], rec["runs"] = rec["cpu_s"] + s, rec["runs"] + n
                    cpu_path.write_text(json.dumps(cpu, indent=1))
                    print(f"{d['name']}: {n} runs in {time.time() - t0:.0f} s wall, {s / 60:.1f} CPU-min", flush=True)
                    measure_speed(d["name"], proxy, storage, work)
    print(report(proxies, storage, cpu, work, wanted))
    return 0


if __name__ == "__main__":
    sys.exit(main())
