"""A simulated seed world: the seed log's measured effects as a golfplan runner (no training).

``SeedWorld()(job)`` returns ``{"status", "val_bpb", "steps", "ms_per_step", "artifact_bytes", ...}`` for a
configuration of the seed's techniques (golfplan's real plugin names and params), so any planner
strategy can be driven through ``--runner`` / ``Planner(runner=...)`` over the seed's space. Row IDs in
the comments are the seed log's (/work/shared/seed/000_f7dfdbf616e55cc6.txt); "assumed" marks every
number the log does not give.

The model, relative to the seed's cosine baseline (1.6117 BPB, 240 steps in 600 s):

    bpb = 1.6117 + saturate(sum of each plugin's effect(params, context)) + N(0, 0.0009)

* an effect is the *total* change the log measured for a technique in its context, step-count change
  included; where a param moves the speed (depth, width, MLP, SwiGLU's hidden, KV heads, U-Net
  split) the effect is split into the step cost ``K_STEPS * ln(240 / steps)`` and a capacity term;
* the context carries the interactions the log measured: activations and breathing depend on
  ``parallel``, parallel and the gradient tricks on ``tidal``, softcap and QK gain on an asymmetric
  U-Net split, ``embed_lr`` acts only when untied, z-loss is milder next to logit penalty + token drop;
* ``saturate``: the log's long stacks gained ~6 % less than the sum of their parts (H1: sum -0.097,
  measured -0.091), so a negative total is shrunk by ``x / (1 - x / 1.52)`` (monotone: no ranking changes);
* noise: Gaussian, sd 0.0009 from the reruns (C10/D10 0.0014, D5/E10 0.0017, E8/F10 0.0011, H1/H6
  0.0007 apart: sd = sqrt(mean d^2 / 2)), seeded by (world salt, job.seed, configuration): a rerun
  with the same seed repeats its value, like a deterministic trainer; each effect is capped at +0.5.

Invalid configurations (KV heads not dividing 8 heads, encoder_layers > num_layers, a width whose
head dim is odd) fail at once with ``reason`` "invalid config: ..." (a static check would refuse them
without training). Artifacts over 16,000,000 bytes are reported as measured (the planner marks them).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np

BASE_BPB = 1.6117  # header: cosine LR, 240 steps, 9L/512D
BASE_STEPS = 240
NOISE_SD = 0.0009
K_STEPS = 0.30  # BPB per unit of ln(steps): NF11 (12L/448D, 197 steps, +0.071), B2 (10L, 233 vs 260, +0.038),
#                 A15/H2 (3x MLP, 216/240 and 244/266 steps, +0.028/+0.027) if their capacity is worth ~0 per step
SATURATION = 1.52
ARTIFACT_LIMIT = 16_000_000
HEADS = 8
FAIL_BPB = 3.5  # beyond this a run "did not learn" (the seed's broken runs read 4.1069)
LOG = math.log


@dataclass(frozen=True)
class Ctx:
    """What the other plugins of a configuration change about one plugin's effect."""

    parallel: bool = False
    tidal: bool = False
    split: bool = False  # a U-Net split with fewer encoder layers than the default layers // 2
    untied: bool = False
    layers: int = 9
    regs: bool = False  # z_loss, logit_penalty and token_dropout all on (experiment 6)


def step_cost(speed: float) -> float:
    """BPB lost (positive) or won by running ``speed`` times as many steps as the baseline."""
    return K_STEPS * LOG(1.0 / speed)


def _interp(x: float, xs: list[float], ys: list[float]) -> float:
    return float(np.interp(x, xs, ys))


# ---- learning-rate and weight-decay schedules (one lr_schedule slot; cosine is the baseline) ------------
def tidal(p: dict, c: Ctx) -> float:  # N2 -0.0211 at 0.382; F8 0.30 ~ same (+0.0001): flat 0.30-0.38;
    return -0.0214 + 0.15 * (p["warmup_frac"] - 0.34) ** 2  # curvature 0.15 assumed


def breathing(p: dict, c: Ctx) -> float:
    # NF1 -0.0156 on cosine; C12 on the parallel stack +0.0159 vs tidal, so with parallel it is worth
    # tidal (-0.0211) + par x tidal (+0.0079) + 0.0159 = +0.0027; params: a bowl at (0.30, 0.30), assumed
    base = 0.0027 if c.parallel else -0.0156
    def bowl(i: float, h: float) -> float:
        return 0.15 * ((i - 0.30) ** 2 + (h - 0.30) ** 2)

    return base + bowl(p["inhale"], p["hold"]) - bowl(0.21, 0.37)


SCHEDULES: dict[str, Callable[[dict, Ctx], float]] = {
    "tidal": tidal,
    "breathing": breathing,
    "circadian": lambda p, c: 0.0024 * (p["amplitude"] / 0.2) ** 2,  # NF3 +0.0024; amplitude 0 is cosine
    "cosmological": lambda p, c: 0.0012 + 0.004 * abs(math.log10(p["alpha"] / 0.05)),  # NF4 +0.0012; slope assumed
    "whale_dive": lambda p, c: 0.037 * math.sqrt(p["dives"] / 3) * (1 - p["depth"]) / 0.9,  # NF2 +0.037
    "punctuated": lambda p, c: 0.246 * (1 - p["base"]) / 0.9,  # W3 +0.246
    "cosine_2cycle": lambda p, c: 0.127 * (p["cycles"] - 1),  # experiment 5: +0.127 at 2 cycles
    "predator_prey": lambda p, c: 0.186 * math.sqrt(p["prey_start"] - 1.0),  # W2 +0.186 at prey_start 2
}
WD = {  # W10 tidal+predator-prey WD +0.0465 (cosine: same, assumed); G3 0.01 +0.0274, H4 0.04 +0.136 -> ^1.16
    "predator_prey_wd": lambda p, c: 0.0465 * (p["wd"] / 0.01) ** 1.16,
    "wd_ramp": lambda p, c: 0.0274 * (p["wd"] / 0.01) ** 1.16,
}


# ---- blocks and activations ---------------------------------------------------------------------------
def parallel(p: dict, c: Ctx) -> float:
    # A8 on cosine -0.0249 (259 steps); on tidal stacks -0.0170 (A7-W0e -0.0144, B1-W0e -0.0183,
    # A14-A12 -0.0216, A10-A1 -0.0159, A11-A3 -0.0150): par x tidal +0.0079 (the stacks' other members
    # assumed not to matter)
    return -0.0249 + (0.0079 if c.tidal else 0.0)


def swiglu(p: dict, c: Ctx) -> float:
    # at hidden_scale 1: A11-A7 +0.0048 with parallel; without: mean of A3 +0.0054, A13 +0.0104, A4 -0.0064;
    # 226/240 steps. Other widths: the step change plus capacity (narrower loses more than it gains, assumed)
    hs = p["hidden_scale"]
    cap = 0.05 * LOG(1 / hs) if hs < 1 else -0.01 * LOG(hs)
    return (0.0048 if c.parallel else 0.0031) + step_cost(_swiglu_speed(hs)) - step_cost(_swiglu_speed(1.0)) + cap


def _swiglu_speed(hs: float) -> float:  # 3 matrices x hs against relu²'s 2: 1/0.942 at hs=1 -> MLP share 0.123
    return 1.0 / (1.0 + 0.123 * (1.5 * hs - 1.0))


# A9 sandwich norm -0.013 (239 steps; mlp=True assumed +0.0005). With parallel never run (golfplan's block slot
# kept them apart until the norms moved to the block's attn_post point): assumed worth only its step cost
# there (240/239 steps at K_STEPS), so the optimum never rests on a pairing the seed did not measure
BLOCKS = {"parallel": parallel,
          "sandwich_norm": lambda p, c: (step_cost(239 / 240) if c.parallel else -0.013) + 0.0005 * p["mlp"]}
ACTIVATIONS = {
    "relu2": lambda p, c: 0.0,  # the baseline's own activation
    # no parallel: on W0e (1.5744) A6 -0.0001, A5 +0.0035; with parallel: B4-B1 -0.0034, E6 -0.0036
    "silu2": lambda p, c: -0.0035 if c.parallel else -0.0001,
    # with parallel not measured: shifted like silu2/leaky's mean shift (-0.002), assumed
    "gelu2": lambda p, c: 0.0015 if c.parallel else 0.0035,
    # A1 +0.0076, A12 +0.0058 (on W0e), A2 +0.0015 (cosine) -> +0.005; parallel: A14-B1 +0.0025, A10-A7 +0.0061
    "leaky_relu2": lambda p, c: (0.0043 if c.parallel else 0.005) * (p["slope"] / 0.01) ** (1 / 3),
    "swiglu": swiglu,
}


# ---- attention, logits, optimizer ---------------------------------------------------------------------
SOFTCAP_V = [5, 10, 12, 13, 14, 15, 16, 17, 18, 20, 25, 30, 50]
# relative to the core's 30. NF14 SC20+RoPE5k -0.0141 on tidal, split as SC20 -0.0108 + RoPE5k -0.0033;
# SC15-SC20: W0c +0.0028, C4 -0.0008, D2 -0.0008, E1 +0.001, E8-E4 -0.0038 (mean -0.0003, so a shallow
# bowl at 15, F1-F4 within noise); C5 SC25 +0.0075 vs SC20, taken as +0.0058 (one run, and NF14 caps the
# total); below 12 and above 30 assumed
SOFTCAP_E = [0.020, -0.006, -0.0109, -0.0112, -0.0114, -0.0115, -0.0114, -0.0113, -0.0111, -0.0108, -0.005, 0.0,
             0.006]


def softcap(p: dict, c: Ctx) -> float:
    v = p["value"]
    e = _interp(v, SOFTCAP_V, SOFTCAP_E)
    if c.split and v <= 20:  # "SC18 doesn't compound with asymmetric": D8 +0.0022, D9 +0.0028, E2 +0.0021 vs SC20;
        return max(e, -0.0108) + 0.0022 * max(0.0, 1 - abs(v - 18) / 2)  # E1 SC15 +0.001, E3 SC12 +0.0001
    return e


def rope_base(p: dict, c: Ctx) -> float:  # W0d 3k +0.008 and C7 3k +0.0026 vs 5k; C8 7.5k +0.0017; 1k/20k assumed
    return _interp(LOG(p["base"]), [LOG(v) for v in (1000, 3000, 5000, 7500, 10000, 20000)],
                   [0.012, 0.002, -0.0033, -0.0016, 0.0, 0.004])


def lr(p: dict, c: Ctx) -> float:
    # matrix LR, core 0.04: NF13 0.06 -0.0029; C10 0.08 -0.0026 more (D10 -0.0012); E8-E1 0.10 -0.0033,
    # E4/E5 +0.0015/+0.0014, F5 0.09 +0.0023, F6 0.11 -0.0019: a log-bowl at 0.11 worth -0.0085;
    # above 0.11 steeper (assumed). embed_lr acts only untied (lr.py): not measured, a shallow bowl at the
    # seed's 0.8 (assumed). Muon momentum: U10 not reached, bowl at 0.95 (assumed)
    x = LOG(p["matrix_lr"] / 0.11)
    e = (0.0083 if x < 0 else 0.02) * x * x - 0.0085
    if c.untied:
        e += 0.003 * LOG(p["embed_lr"] / 0.8) ** 2 - 0.00025
    m = p["muon_momentum"]
    return e + (2.5 if m > 0.95 else 0.3) * (m - 0.95) ** 2


def head_diversity(p: dict, c: Ctx) -> float:
    # 1e-4: N3 -0.0017 (cosine), NF8 -0.0039 (tidal), W0e-W0b -0.0030 -> -0.0029 (W0a-NF14 +0.0046 read as
    # noise, as the seed did). With parallel C14 +0.0015 and D3 +0.0040 when removed: -0.0020, the seed's
    # "barely matters with parallel". C13 1e-3 +0.0024: a bowl in log10(coef); fading to 0 at 1e-6 (assumed)
    e = -0.0020 if c.parallel else -0.0029
    x = math.log10(p["coef"]) + 4.0
    return e * max(0.0, 1 - (x / 2) ** 2) if x <= 0 else e + 0.0024 * x * x


def qk_gain(p: dict, c: Ctx) -> float:  # core 1.5. B5-B1 -0.0026 (symmetric, parallel);
    v = p["init"]  # on splits E7 +0.0023, F9 +0.0047, E9-E1 -0.0013 -> +0.002: "QK gain confirmed dead"
    return 0.008 * (v - 1.5) ** 2 if c.split else 0.008 * (v - 2.0) ** 2 - 0.002


# ---- shape: U-Net split, KV heads, depth, width, MLP, tying -----------------------------------------------
UNET_E = [-0.0136, -0.0131, -0.0104, -0.0069, 0.0, 0.006]  # encoder 0..5 vs 4 (9 layers): H1-G1 / H3-H2 ~-0.0005
UNET_S = [1.066, 1.027, 1.015, 1.012, 1.0, 0.992]  # D6 -0.0131, D5 -0.0104 (with E10), D4 -0.0069, D7 +0.006;
#  steps 276/266 (H1/G1), 266, 263, 262, 259, 257; more than 5 encoder layers: extrapolated (assumed)


def _unet_table(e: int) -> tuple[float, float]:
    return (UNET_E[e], UNET_S[e]) if e <= 5 else (0.006 * (e - 4), 1.0 - 0.008 * (e - 4))


def unet(p: dict, c: Ctx) -> float:
    e = p["encoder_layers"]
    return math.inf if e > c.layers else _unet_table(e)[0] - _unet_table(c.layers // 2)[0]


GQA = {1: (-0.0025, 1.058), 2: (-0.0035, 1.037), 4: (0.0, 1.0), 8: (0.002, 0.965)}
# vs the core's 4 KV heads. 2: F7 -0.0012 (276 vs 265 steps), A17-A1 -0.0059 (248 vs 240) -> -0.0035;
# 1: A18-A1 -0.008, C1-A7 -0.0012, C2-B4 +0.0006 (253, 275, 274 steps) and "MQA loses vs GQA 2" -> -0.0025;
# 8: not run (assumed +0.002, slower)


def depth(p: dict, c: Ctx) -> float:  # B2/B3/NF11: deeper loses steps (9/L); capacity above 9 worth a little,
    n = p["num_layers"]  # below 9 not run: assumed to lose more capacity than it gains in steps
    return step_cost(9 / n) + (-0.03 * LOG(n / 9) if n >= 9 else 0.36 * LOG(9 / n))


def _width_speed(d: int) -> float:  # NF11 448D and NF12/A16 640D/576D: time ~ d^0.7 below 512, d^1.5 above
    return (512 / d) ** (1.5 if d >= 512 else 0.7)


def width(p: dict, c: Ctx) -> float:
    d = p["model_dim"]
    if d % (2 * HEADS):
        return math.inf
    return step_cost(_width_speed(d)) + (-0.03 * LOG(d / 512) if d >= 512 else 0.30 * LOG(512 / d))


def _mlp_speed(m: float) -> float:  # A15 216/240, H2 244/266 at 3x
    return 1.0 / (1.0 + 0.1 * (m - 2.0))


def mlp_width(p: dict, c: Ctx) -> float:  # A15 +0.028, H2 +0.027 at 3x: nearly all steps; below 2x assumed
    m = p["mlp_mult"]
    return step_cost(_mlp_speed(m)) + (-0.003 * LOG(m / 2) if m >= 2 else 0.06 * LOG(2 / m))


SHAPE = {"unet": unet, "gqa": lambda p, c: GQA.get(p["kv_heads"], (math.inf, 1.0))[0], "depth": depth,
         "width": width, "mlp_width": mlp_width,
         "untied": lambda p, c: -0.0118}  # G1 -0.0118 on F7 (266 vs 276 steps, ~14 MB)


# ---- regularisers, weight tricks and gradient tricks (no identity is ever better than off) -----------------
def _burn(p: dict) -> float:  # N1 -0.0008, NF7 +0.0009: 0 at the default; harsher burns hurt (assumed)
    return 0.001 * max(0.0, p["fraction"] / 0.05 * (50 / 240) / p["every"] - 1) ** 1.5  # every: a share of the run


def _perturb(p: dict) -> float:  # N4 -0.0017, NF10 -0.0005: -0.0011 at 1e-4 every 100; else assumed
    i = p["scale"] / 1e-4 * (100 / 240) / p["every"]  # every: a share of the run (the seed's 100 of 240 steps)
    return -0.0011 * math.sqrt(i) if i <= 1 else -0.0011 + 0.002 * (i - 1)


def _decay(i: float) -> float:  # NF6 +0.0015, NF9 -0.0004: +0.0005 at the default; stronger assumed worse
    return 0.0005 * i + 0.001 * max(0.0, i - 1) ** 2


OTHERS: dict[str, Callable[[dict, Ctx], float]] = {
    "head_diversity": head_diversity, "softcap": softcap, "rope_base": rope_base, "lr": lr, "qk_gain": qk_gain,
    "controlled_burn": lambda p, c: _burn(p),
    "weight_perturbation": lambda p, c: _perturb(p),
    "mutation_decay": lambda p, c: _decay(p["initial"] / 1e-3 * p["half_life"] / 0.1),
    "synaptic_scaling": lambda p, c: 0.112,  # NF5
    "z_loss": lambda p, c: 0.0165 * math.sqrt(p["coef"] / 1e-4) * (0.16 if c.regs else 1.0),  # 1: +0.0165;
    # experiment 6 (z + logit penalty + token drop) +0.0054 where the parts sum to +0.0193: z-loss's share shrinks
    "logit_penalty": lambda p, c: 0.003 * max(0.0, math.log10(p["coef"] / 1e-5)) ** 2,  # 2: 0.000 at 1e-5
    "token_dropout": lambda p, c: 0.0028 * p["rate"] / 0.05,  # 3: +0.0028
    "embed_mixup": lambda p, c: 0.004 * p["weight"] / 0.1,  # 4: +0.004
    "label_smoothing": lambda p, c: 0.059 * p["smoothing"] / 0.1,  # E1 on the best config: +0.059
    # gradient tricks hurt less on tidal: W1 canopy +0.247 vs W7 +0.0048; W5 thermal +0.0355 vs W9 +0.0218;
    # W4 mycorrhizal +0.0106 vs W8 +0.0103 (W6 canopy+mycorrhizal +0.255 ~ additive)
    "canopy": lambda p, c: (0.0048 if c.tidal else 0.247) * ((1 - p["bottom"]) ** 2 + (p["top"] - 1) ** 2) / 0.49,
    "mycorrhizal": lambda p, c: (0.0103 if c.tidal else 0.0106) * p["blend"] / 0.1,
    "thermal_vent": lambda p, c: (0.0218 if c.tidal else 0.0355) * p["layers"] / 2 * (
        (p["boost_min"] + p["boost_max"]) / 2 - 1) / 1.5,
}
EFFECTS: dict[str, Callable[[dict, Ctx], float]] = {"cosine": lambda p, c: 0.0, **SCHEDULES, **WD, **BLOCKS,
                                                    **ACTIVATIONS, **SHAPE, **OTHERS}
# the context fields each effect reads (the optimum caches a plugin's best params per their values)
USES = {"breathing": ("parallel",), "sandwich_norm": ("parallel",), "parallel": ("tidal",), "silu2": ("parallel",),
        "gelu2": ("parallel",), "leaky_relu2": ("parallel",), "swiglu": ("parallel",), "softcap": ("split",),
        "qk_gain": ("split",), "lr": ("untied",), "head_diversity": ("parallel",), "unet": ("layers",),
        "z_loss": ("regs",), "canopy": ("tidal",), "mycorrhizal": ("tidal",), "thermal_vent": ("tidal",)}
# the seed's techniques with a measurement (cosine is the fixed baseline; relu2 is the baseline's activation;
# never measured: cosine_min and metamorphosis (broken runs N5/N6), the U wave (crashed or not reached))
CANDIDATES = [n for n in EFFECTS if n not in ("cosine", "relu2")]
FIXED = {"cosine": {}}


# ---- one configuration ------------------------------------------------------------------------------------
@dataclass
class Outcome:
    bpb: float  # noise-free; inf when invalid
    steps: int
    artifact_bytes: int
    invalid: str = ""


def context(plugins: dict[str, dict]) -> Ctx:
    layers = plugins["depth"]["num_layers"] if "depth" in plugins else 9
    split = "unet" in plugins and plugins["unet"]["encoder_layers"] < layers // 2
    regs = all(n in plugins for n in ("z_loss", "logit_penalty", "token_dropout"))
    return Ctx("parallel" in plugins, "tidal" in plugins, split, "untied" in plugins, layers, regs)


SPEEDS: dict[str, Callable[[dict, int], float]] = {  # steps relative to the baseline's, given (params, layers)
    "parallel": lambda p, n: 259 / 240,  # A8 (A7: 260)
    "sandwich_norm": lambda p, n: 239 / 240,  # A9
    "swiglu": lambda p, n: _swiglu_speed(p["hidden_scale"]),
    "untied": lambda p, n: 266 / 276,  # G1 vs F7
    "gqa": lambda p, n: GQA.get(p["kv_heads"], (0, 1.0))[1],
    "unet": lambda p, n: _unet_table(p["encoder_layers"])[1] / _unet_table(n // 2)[1],
    "depth": lambda p, n: 9 / p["num_layers"],
    "width": lambda p, n: _width_speed(p["model_dim"]),
    "mlp_width": lambda p, n: _mlp_speed(p["mlp_mult"]),
}


def speed(plugins: dict[str, dict]) -> float:
    layers = plugins["depth"]["num_layers"] if "depth" in plugins else 9
    return math.prod(SPEEDS[n](p, layers) for n, p in plugins.items() if n in SPEEDS)


def artifact_bytes(plugins: dict[str, dict]) -> int:
    """int8 + zlib bytes: parameters x 0.753 (9x512 tied, 4 KV heads: 12.9 MB, E8) + 1.1 MB untied (G1: ~14 MB)."""
    layers = plugins.get("depth", {}).get("num_layers", 9)
    d = plugins.get("width", {}).get("model_dim", 512)
    m = plugins.get("mlp_width", {}).get("mlp_mult", 2.0)
    kv = plugins.get("gqa", {}).get("kv_heads", 4)
    mlp = 3 * plugins["swiglu"]["hidden_scale"] * m * d * d if "swiglu" in plugins else 2 * m * d * d
    params = layers * (d * d * (2 + 2 * kv / HEADS) + mlp) + 1024 * d
    return int(params * 0.753 + (1.1e6 * d / 512 if "untied" in plugins else 0) + 60_000)


def saturate(total: float) -> float:
    return total / (1 - total / SATURATION) if total < 0 else total


def invalid_reason(plugins: dict[str, dict]) -> str:
    """Why a configuration cannot be built ("" when it can): what a static check would refuse."""
    layers = plugins["depth"]["num_layers"] if "depth" in plugins else 9
    kv, enc = plugins.get("gqa", {}).get("kv_heads", 4), plugins.get("unet", {}).get("encoder_layers", 0)
    dim = plugins.get("width", {}).get("model_dim", 512)
    why = (f"num_heads {HEADS} is not divisible by num_kv_heads {kv}" if HEADS % kv else
           f"encoder_layers {enc} exceeds num_layers {layers}" if enc > layers else
           f"model_dim {dim} over {HEADS} heads gives an odd head dim" if dim % (2 * HEADS) else "")
    return "invalid config: " + why if why else ""


def evaluate(plugins: dict[str, dict], scale: dict[str, float] | None = None) -> Outcome:
    """The noise-free BPB, steps and artifact of a configuration ({name: params}, every param given);
    ``scale`` multiplies plugins' effects (a perturbed world, see ``perturbed``)."""
    unknown = [n for n in plugins if n not in EFFECTS]
    if unknown:
        raise ValueError(f"plugin '{unknown[0]}' is not in the simulated seed world")
    c = context(plugins)
    why = invalid_reason(plugins)
    if why:
        return Outcome(math.inf, 0, 0, why)
    scale = scale or {}
    total = sum(min(scale.get(n, 1.0) * EFFECTS[n](p, c), 0.5) for n, p in plugins.items())
    return Outcome(BASE_BPB + saturate(total), max(1, round(BASE_STEPS * speed(plugins))), artifact_bytes(plugins))


def true_bpb(plugins: dict[str, dict], scale: dict[str, float] | None = None) -> float:
    return evaluate(plugins, scale).bpb


def perturbed(seed: int) -> tuple[dict[str, float], float]:
    """A world that differs from the log's reading: every plugin's effect (interactions included) scaled
    by a factor drawn from [0.6, 1.4], and the noise sd drawn from [0.0006, 0.0013]."""
    rng = random.Random(10_007 * seed + 1)
    return {n: rng.uniform(0.6, 1.4) for n in CANDIDATES}, rng.uniform(0.0006, 0.0013)


class SeedWorld:
    """The runner: ``job -> result mapping``; counts its calls (``calls``, ``trained``)."""

    def __init__(self, noise: float = NOISE_SD, scale: dict[str, float] | None = None, salt: int = 0) -> None:
        self.noise, self.scale, self.salt = noise, scale, salt  # salt: a different noise draw per world
        self.calls = 0
        self.trained = 0  # calls that trained (invalid configurations fail before training)

    def __call__(self, job: Any) -> dict[str, Any]:
        self.calls += 1
        out = evaluate(job.plugins, self.scale)
        if out.invalid:
            return {"status": "failed", "reason": out.invalid, "failure": "crash", "wallclock_s": 2.0}
        self.trained += 1
        key = json.dumps(job.plugins, sort_keys=True, default=str)
        rng = random.Random(int(hashlib.sha1(f"{self.salt}|{job.seed}|{key}".encode()).hexdigest()[:15], 16))
        bpb = out.bpb + rng.gauss(0.0, self.noise)
        base = {"steps": out.steps, "ms_per_step": round(600_000 / out.steps, 1), "wallclock_s": 660.0,
                "artifact_bytes": out.artifact_bytes}
        if bpb > FAIL_BPB:
            return {"status": "failed", "reason": "the loss did not fall", **base}
        return {"status": "complete", "val_bpb": bpb, "val_loss": bpb * 0.7, **base}


# ---- the best configuration of the space --------------------------------------------------------------------
def _grid(spec: Any) -> list[Any]:
    if spec.kind in ("bool", "choice"):
        return [False, True] if spec.kind == "bool" else list(spec.choices)
    if spec.kind == "int":
        return list(range(spec.low, spec.high + 1))
    pts = (np.geomspace if spec.log else np.linspace)(spec.low, spec.high, 241)
    return sorted({float(x) for x in pts} | {float(spec.default)})


def best_params(name: str, c: Ctx, registry: Any, factor: float = 1.0) -> tuple[float, dict]:
    """The lowest effect of ``name`` in context ``c`` (coordinate search over fine grids, 3 sweeps from
    the defaults; every effect here is separable in its params or a product of monotone terms)."""
    specs = registry.get(name).params
    p = {k: s.default for k, s in specs.items()}
    best = factor * EFFECTS[name](p, c)
    for _ in range(3):
        for k, s in specs.items():
            for v in _grid(s):
                e = factor * EFFECTS[name]({**p, k: v}, c)
                if e < best - 1e-12:
                    best, p = e, {**p, k: v}
    return best, p


def optimum(names: list[str] | None = None, registry: Any = None,
            scale: dict[str, float] | None = None) -> tuple[float, dict[str, dict]]:
    """The lowest noise-free BPB over on/off x params of ``names`` (default: every candidate), on the cosine
    baseline. Exact enumeration of what sets the context (the lr schedule, the block, the activation,
    untied, the U-Net split and depth); given the context every other plugin is independent, so it is on
    (at its best params) exactly when its best effect is negative. No configuration with z_loss,
    logit_penalty and token_dropout together can gain: each is >= 0 at its best params."""
    if registry is None:
        from golfplan.registry import Registry

        registry = Registry()
    names = list(CANDIDATES if names is None else names)
    cache: dict[tuple, tuple[float, dict]] = {}

    def cached(name: str, c: Ctx) -> tuple[float, dict]:
        key = (name,) + tuple(getattr(c, f) for f in USES.get(name, ()))
        if key not in cache:
            cache[key] = best_params(name, c, registry, (scale or {}).get(name, 1.0))
        return cache[key]

    def pick(group: dict, slot: str) -> list[str | None]:  # the group's members that take the slot
        return [None] + [n for n in group if n in names and n != "relu2" and slot in registry.get(n).slots()]

    chosen_by_context = {n for g in (pick(SCHEDULES, "lr_schedule"), pick(BLOCKS, "block"),
                                     pick(ACTIVATIONS, "activation")) for n in g} | {"untied", "depth", "unet"}
    others = [n for n in names if n not in chosen_by_context]
    best: tuple[float, dict[str, dict]] = (math.inf, {})
    for sched, block, act, untie, layers in itertools.product(
            pick(SCHEDULES, "lr_schedule"), pick(BLOCKS, "block"), pick(ACTIVATIONS, "activation"),
            [False, True] if "untied" in names else [False],
            [None] + list(range(2, 17)) if "depth" in names else [None]):
        n_layers = layers or 9
        for enc in ([None] + list(range(n_layers + 1)) if "unet" in names else [None]):
            c = Ctx(block == "parallel", sched == "tidal", enc is not None and enc < n_layers // 2, untie, n_layers)
            conf: dict[str, dict] = {}
            total = 0.0
            for n in (sched, block, act):
                if n is not None:
                    e, conf[n] = cached(n, c)
                    total += e
            for n, p in (("untied", {} if untie else None), ("depth", layers and {"num_layers": layers}),
                         ("unet", None if enc is None else {"encoder_layers": enc})):
                if p is not None:
                    conf[n] = p
                    total += min((scale or {}).get(n, 1.0) * EFFECTS[n](p, c), 0.5)
            for n in others:
                if not (n in WD and sched == "predator_prey"):  # it holds the wd slot too
                    e, p = cached(n, replace(c, regs=False))
                    if e < 0:
                        conf[n], total = p, total + e
            if total < best[0]:
                best = (total, conf)
    conf = {**FIXED, **best[1]} if not any(n in SCHEDULES for n in best[1]) else dict(best[1])
    full = canonical(conf, registry)
    check = evaluate(full, scale)
    assert abs(check.bpb - (BASE_BPB + saturate(best[0]))) < 1e-9 and check.artifact_bytes <= ARTIFACT_LIMIT
    from golfplan.registry import combination_problems

    assert not combination_problems(registry.classes(full)), "independent plugins that share a slot: enumerate them"
    return check.bpb, full


def canonical(plugins: dict[str, dict], registry: Any) -> dict[str, dict]:
    return {n: dict(registry.get(n)(**p).values) for n, p in sorted(plugins.items())}


# ---- how narrow the optimum is --------------------------------------------------------------------------
def count_near(registry: Any, near: float = 0.002) -> tuple[int, int, float]:
    """(on/off combinations of the candidates at default params, how many lie within ``near`` BPB of the
    optimum, the best of them): exact, by enumerating what sets the context (the schedule and weight-decay
    slots, the activation, parallel, unet, untied, depth) and, given the context, counting the subsets of
    the other plugins (each adds its own effect; z-loss's depends on the two regularisers beside it) by
    meeting in the middle. The space is ``golfplan study``'s: one choice a slot group, each other plugin
    on or off."""
    from golfplan.planner.space import SearchSpace

    best, _ = optimum(registry=registry)
    limit = best + near - BASE_BPB
    limit = limit / (1 + limit / SATURATION) if limit < 0 else limit  # the raw sum that saturates to it
    space = SearchSpace(registry, {n: {} for n in CANDIDATES}, {}, dict(FIXED))
    setters = ("parallel", "unet", "untied", "depth")
    choices = [g.combos for g in space.groups if not g.is_flag] + [[(), (n,)] for n in setters]
    regs = ("z_loss", "logit_penalty", "token_dropout")
    others = [g.name for g in space.groups if g.is_flag and g.name not in setters + regs]
    defaults = {n: {k: s.default for k, s in registry.get(n).params.items()} for n in CANDIDATES}
    total = math.prod(len(c) for c in choices) * 2 ** (len(others) + len(regs))
    count, closest = 0, math.inf
    for pick in itertools.product(*choices):
        chosen = {n: defaults[n] for combo in pick for n in combo}
        plugins = chosen if any(n in SCHEDULES for n in chosen) or "predator_prey" in chosen else {**FIXED, **chosen}
        c = context(plugins)
        base = sum(min(EFFECTS[n](p, c), 0.5) for n, p in plugins.items())
        e = np.array([min(EFFECTS[n](defaults[n], c), 0.5) for n in others])
        half = len(e) // 2
        sums = [np.array([0.0])] * 2
        for i, part in enumerate((e[:half], e[half:])):
            for x in part:
                sums[i] = np.concatenate([sums[i], sums[i] + x])
        right = np.sort(sums[1])
        for on in itertools.product((False, True), repeat=len(regs)):
            cr = replace(c, regs=all(on))
            extra = sum(min(EFFECTS[n](defaults[n], cr), 0.5) for n, o in zip(regs, on) if o)
            room = limit - base - extra
            count += int(np.searchsorted(right, room - sums[0], side="right").sum())
            closest = min(closest, base + extra + sums[0].min() + right[0])
    return total, count, BASE_BPB + saturate(closest) - best
