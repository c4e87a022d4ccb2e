"""An independently built simulated world: a held-out check for a planner strategy.

``make_world(seed)`` draws a world over the seed techniques the registry has (plugins with
``seed_refs``). It was built from the seed log (``/work/shared/seed``) and the registry's metadata
only, without reading the planner's strategy or the other simulators, so it does not share their
assumptions. A world is a runner (``world(job) -> mapping``, the README's runner contract) plus
the noise-free truth (``true_bpb``, ``optimum``) to score a planner against.

How a world is built (each technique from its own ``Random(f"{seed}:{name}")``, so a candidate
list changes nothing about the techniques it keeps):

- Baseline 1.6117 BPB (the log's cosine baseline). Each technique has an *anchor*, its effect with
  every param at the plugin's default: the log's delta (``LOGGED``: against the cosine baseline
  where it was run there, else against the run it was added to), or for the eight never measured
  a draw from the logged deltas (a helpful draw shrunk to 0.2-0.8 of it, a harmful one jittered).
- Every param gets a response curve in unit space (log-transformed where declared; ints are
  rounded, bools and choices get a penalty per value): flat at its optimum, rising with a drawn
  power (1.2-3), an asymmetric width each side, an optional plateau, and in a third of the params
  a saturating shape. A technique's effect is ``best + sum(penalties)``.
- ``shifted=True`` (held out): each optimum is drawn inside the declared range, at least 0.12
  unit from the default (declared orders such as ``boost_max >= boost_min`` kept); the curves are
  scaled so the default still gives the anchor, and the best lies a drawn gain below it (0.1-0.5
  of |anchor|, at most 0.02, plus an exponential of mean 0.0015), split over the params by Gamma
  weights (some params matter, some do not). Weak effects (|anchor| <= 0.005) flip with
  probability 0.1, at least one a world: a weakly harmful technique helps at its optimum while
  its default still hurts as logged; a weakly helpful one hurts at every value.
- ``shifted=False`` (in-sample): every optimum is the default and nothing flips, so a technique
  alone at its defaults gives exactly its logged delta and switching defaults on is all a planner
  needs; the curves still rise away from the defaults. A shifted world rewards finding values.
- Interactions: the log's visible ones (``RATIO``: tidal absorbs 98 % of canopy's harm and 39 %
  of thermal vent's, the Z+logit+drop combo; ``PAIR``: SiLU² gains 0.0033 with parallel blocks)
  plus random pairwise terms (probability 0.03 a pair, Student-t scale 0.003, clipped at 0.012)
  between techniques that share no slot.
- Diminishing returns: helpful effects add up to 0.03 BPB, beyond that they saturate toward a
  drawn ceiling (``knee + G(1 - exp(-(H - knee) / G))``, G in 0.12-0.3); harm adds linearly.
- Runs: Student-t noise (3 degrees of freedom, scale 0.0006-0.0009, so a sd of ~0.001-0.0016 as
  the log's reruns), a crash rate (``crash_rate``, status failed / crash), and in about one
  numeric param in eight a catastrophic strip at one end of its range (away from default and
  optimum) where every run diverges (status failed / nan; ``true_bpb`` is inf there). A
  configuration the registry refuses (slot, conflict, range) returns status refused.
- ``steps``, ``ms_per_step`` and ``artifact_bytes`` are rough and cosmetic (always under 16 MB);
  the BPB effects already include the log's step-count effects.

``optimum()`` is exact for the model above: with the other techniques fixed, a technique's
contribution only grows with its param penalties, so every param sits at its drawn optimum, and
the best on/off set is found by branch and bound over the techniques that can help at all.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import sys
from dataclasses import dataclass, field
from typing import Any

from golfplan.core.errors import PluginError
from golfplan.registry import Registry

BASELINE_BPB = 1.6117
# the log's delta of each technique at its plugin's defaults (experiment ids in the comment)
LOGGED: dict[str, float] = {
    "cosine": 0.0, "relu2": 0.0,  # the baseline itself
    "tidal": -0.0211, "breathing": -0.0156, "circadian": 0.0024, "cosmological": 0.0012,  # N2 NF1 NF3 NF4
    "whale_dive": 0.0370, "cosine_2cycle": 0.1266, "punctuated": 0.2464, "predator_prey": 0.1864,  # NF2 5 W3 W2
    "predator_prey_wd": 0.0465, "wd_ramp": 0.0274, "canopy": 0.2470, "mycorrhizal": 0.0106,  # W10 G3 W1 W4
    "thermal_vent": 0.0355, "synaptic_scaling": 0.1122, "z_loss": 0.0165, "logit_penalty": 0.0,  # W5 NF5 1 2
    "token_dropout": 0.0028, "embed_mixup": 0.0040, "label_smoothing": 0.0594,  # 3 4 E1 (vs W0e)
    "controlled_burn": -0.0008, "head_diversity": -0.0017, "weight_perturbation": -0.0017,  # N1 N3 N4
    "mutation_decay": 0.0015, "parallel": -0.0249, "silu2": -0.0001, "gelu2": 0.0035,  # NF6 A8 A6 A5
    "leaky_relu2": 0.0015, "swiglu": -0.0064, "sandwich_norm": 0.0239,  # A2 A4 A9 (vs W0e)
    "softcap": -0.0090, "rope_base": -0.0051,  # NF14's -0.0141 split, W0d/C7/C8
    "lr": -0.0060, "gqa": -0.0035, "qk_gain": 0.0015,  # NF13+C10+F6, A17/F7, B5/E7/F9
    "unet": -0.0128, "untied": -0.0118, "depth": 0.0379, "width": 0.0107, "mlp_width": 0.0270,  # D6+H1 G1 B2 NF12 H2
}
RATIO = {("canopy", "tidal"): -0.98, ("thermal_vent", "tidal"): -0.39,  # (affected, partner): W7, W9
         ("z_loss", "token_dropout"): -0.4, ("z_loss", "logit_penalty"): -0.4}  # combo 6
PAIR = {("parallel", "silu2"): -0.0033}  # B4 vs B1 against A6
# steps relative to the baseline's 240 (cosmetic), from the log where it shows them
SPEED = {"parallel": 260 / 240, "swiglu": 226 / 240, "unet": 1.03, "layer_dropout": 0.7, "progressive_growing": 0.7}
SEED_STACK = ("tidal", "softcap", "rope_base", "parallel", "silu2", "head_diversity", "lr", "unet", "gqa", "untied")
WEAK, FLIP_P, PAIR_P, KNEE, MIN_SHIFT = 0.005, 0.1, 0.03, 0.03, 0.12


def _logu(rng: random.Random, lo: float, hi: float) -> float:
    """Log-uniform in [lo, hi]."""
    return math.exp(rng.uniform(math.log(lo), math.log(hi)))


def _student_t(rng: random.Random, df: int = 3) -> float:
    return rng.gauss(0.0, 1.0) / math.sqrt(sum(rng.gauss(0.0, 1.0) ** 2 for _ in range(df)) / df)


@dataclass
class Curve:
    """One param's response: penalty 0 at ``opt``, rising with the distance in unit space."""

    kind: str
    default: Any
    opt: Any
    low: float = 0.0
    high: float = 1.0
    log: bool = False
    widths: tuple[float, float] = (0.3, 0.3)  # below / above the optimum, unit space
    power: float = 2.0
    plateau: float = 0.0
    saturating: bool = False
    amp: float = 0.0
    table: dict = field(default_factory=dict)  # bool/choice: value -> penalty
    cliff: tuple[float, float] | None = None  # unit interval where a run diverges

    def unit(self, x: float) -> float:
        if self.log and self.low > 0:
            return (math.log(x) - math.log(self.low)) / (math.log(self.high) - math.log(self.low))
        return (x - self.low) / (self.high - self.low)

    def value(self, u: float) -> Any:
        x = (math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))
             if self.log and self.low > 0 else self.low + u * (self.high - self.low))
        return int(min(self.high, max(self.low, round(x)))) if self.kind == "int" else min(self.high, max(self.low, x))

    def shape(self, z: float) -> float:
        s = max(0.0, abs(z) - self.plateau) ** self.power
        return 1.0 - math.exp(-s) if self.saturating else s

    def raw(self, x: Any) -> float:
        if self.kind in ("bool", "choice"):
            return 1.0 if x != self.opt else 0.0
        d = self.unit(x) - self.unit(self.opt)
        return self.shape(d / self.widths[1 if d > 0 else 0])

    def penalty(self, x: Any) -> float:
        if self.kind in ("bool", "choice"):
            return self.table.get(x, 0.0)
        return self.amp * self.raw(x)

    def ruins(self, x: Any) -> bool:
        return self.cliff is not None and self.cliff[0] <= self.unit(x) <= self.cliff[1]


@dataclass
class Tech:
    name: str
    slots: tuple[str, ...]
    anchor: float  # effect with every param at its default
    best: float  # effect with every param at its optimum
    curves: dict[str, Curve]
    flipped: bool = False
    measured: bool = True

    def effect(self, params: dict[str, Any]) -> float:
        return self.best + sum(c.penalty(params[k]) for k, c in self.curves.items())

    def optimum(self) -> dict[str, Any]:
        return {k: c.opt for k, c in self.curves.items()}


def _gain(rng: random.Random, anchor: float) -> float:
    """How much better than the default a technique's best values are (or its sensitivity)."""
    return min(abs(anchor) * _logu(rng, 0.1, 0.5), 0.02) + rng.expovariate(1 / 0.0015)


def _draw_tech(rng: random.Random, cls: Any, anchor: float, shifted: bool, flip: bool) -> Tech:
    params = cls.params
    curves: dict[str, Curve] = {}
    for _ in range(50):  # redraw until the ordered params (boost_max >= boost_min, ...) hold
        curves = {k: _draw_curve(rng, p, shifted) for k, p in params.items()}
        try:
            cls(**{k: c.opt for k, c in curves.items()})
            break
        except PluginError:
            continue
    else:
        curves = {k: _draw_curve(rng, p, False) for k, p in params.items()}
    moved = [k for k, c in curves.items() if c.opt != c.default]
    best = anchor
    if flip and anchor > 0 and moved:
        best = -rng.uniform(0.5, 1.5) * max(anchor, 0.002)
    elif flip and anchor > 0:
        anchor = best = -rng.uniform(0.5, 1.5) * max(anchor, 0.002)
    elif flip:
        best = rng.uniform(0.5, 1.5) * max(-anchor, 0.002)
        anchor = best + (_gain(rng, anchor) if moved else 0.0)
    elif moved:
        best = anchor - _gain(rng, anchor)
    weights = {k: rng.gammavariate(0.7, 1.0) + 1e-3 for k in moved}
    total_w = sum(weights.values()) or 1.0
    for k, c in curves.items():
        share = (anchor - best) * weights[k] / total_w if k in moved else _gain(rng, anchor) * weights.get(k, 1.0)
        if c.kind in ("bool", "choice"):
            c.table = {v: (share if v == c.default and k in moved else share * rng.uniform(0.3, 2.0))
                       for v in _values(params[k]) if v != c.opt}
        else:
            c.amp = share / max(c.raw(c.default) if k in moved else c.shape(1.0), 1e-12)
    return Tech(cls.name, tuple(cls.slots()), anchor, best, curves, flipped=flip, measured=cls.name in LOGGED)


def _values(p: Any) -> tuple:
    return (False, True) if p.kind == "bool" else tuple(p.choices)


def _draw_curve(rng: random.Random, p: Any, shifted: bool) -> Curve:
    if p.kind in ("bool", "choice"):
        return Curve(p.kind, p.default, rng.choice(_values(p)) if shifted else p.default)
    c = Curve(p.kind, p.default, p.default, float(p.low), float(p.high), bool(p.log), power=rng.uniform(1.2, 3.0),
              saturating=rng.random() < 0.33)
    ud = c.unit(p.default)
    if shifted:
        for _ in range(100):
            opt = c.value(rng.random())
            if abs(c.unit(opt) - ud) >= MIN_SHIFT:
                break
        else:  # the far end is always at least half the range away
            opt = c.value(0.0 if ud > 0.5 else 1.0)
        c.opt = opt
        dist = abs(c.unit(opt) - ud)
        near = dist * rng.uniform(0.6, 1.6)  # the width on the default's side
        far = near * _logu(rng, 1 / 3, 3.0)
        c.widths = (near, far) if ud < c.unit(opt) else (far, near)
        c.plateau = rng.uniform(0.0, 0.3)
    else:
        c.widths = (rng.uniform(0.15, 0.5), rng.uniform(0.15, 0.5))
        c.plateau = rng.uniform(0.0, 0.3)
    if rng.random() < 0.125:  # a strip at one end of the range where runs diverge
        uo = c.unit(c.opt)
        end = 0.0 if min(ud, uo) > 1 - max(ud, uo) else 1.0
        room = min(abs(end - ud), abs(end - uo))
        if room >= 0.15:
            w = min(0.15, rng.uniform(0.3, 0.7) * room)
            c.cliff = (0.0, w) if end == 0.0 else (1.0 - w, 1.0)
    return c


@dataclass
class World:
    """A drawn world: the runner (``world(job)``) and its noise-free truth."""

    seed: int
    shifted: bool
    techs: dict[str, Tech] = field(repr=False)
    registry: Registry = field(repr=False)
    ratio: dict[tuple[str, str], float] = field(repr=False)  # (affected, partner) -> share of its effect
    pairs: dict[frozenset, float] = field(repr=False)  # {a, b} -> BPB added when both are on
    ceiling: float  # G of the diminishing returns
    noise: float  # Student-t scale
    crash_rate: float
    baseline: float = BASELINE_BPB
    trained: int = 0  # runs the registry did not refuse
    _opt: tuple[float, dict] | None = field(default=None, init=False, repr=False)

    # ---- the truth -----------------------------------------------------------------
    def _params(self, plugins: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """World techniques only, every param filled (defaults from the registry)."""
        return {n: self.registry.get(n).completed(dict(p or {})) for n, p in plugins.items() if n in self.techs}

    def _mult(self, name: str, on: Any) -> float:
        return max(0.02, 1.0 + sum(r for (a, b), r in self.ratio.items() if a == name and b in on))

    def _total(self, effects: dict[str, float]) -> float:
        harm = helps = 0.0
        for n, c in effects.items():
            e = c * self._mult(n, effects)
            harm, helps = (harm + e, helps) if e > 0 else (harm, helps - e)
        names = list(effects)
        inter = sum(self.pairs.get(frozenset((a, b)), 0.0) for i, a in enumerate(names) for b in names[i + 1:])
        return self.baseline + harm - self._saturate(helps) + inter

    def _saturate(self, h: float) -> float:
        return h if h <= KNEE else KNEE + self.ceiling * (1.0 - math.exp(-(h - KNEE) / self.ceiling))

    def ruined(self, plugins: dict[str, dict[str, Any]]) -> str:
        """'plugin.param=value' of a param in a catastrophic strip, else ''."""
        for n, params in self._params(plugins).items():
            for k, c in self.techs[n].curves.items():
                if c.ruins(params[k]):
                    return f"{n}.{k}={params[k]}"
        return ""

    def true_bpb(self, plugins: dict[str, dict[str, Any]]) -> float:
        """Noise-free BPB of ``{name: params}`` (partial params: defaults); inf where runs diverge.
        Plugins outside the world have no effect."""
        if self.ruined(plugins):
            return math.inf
        return self._total({n: self.techs[n].effect(p) for n, p in self._params(plugins).items()})

    def best_set(self, contrib: dict[str, float]) -> tuple[float, list[str]]:
        """The best on/off set when technique ``n`` contributes ``contrib[n]`` (branch and bound)."""
        partners = {b for (_, b) in self.ratio}
        neg = {n: sum(min(0.0, d) for s, d in self.pairs.items() if n in s) for n in contrib}
        bound_mult = {n: (max(0.02, 1 + sum(min(0, r) for (a, _), r in self.ratio.items() if a == n)),
                          1 + sum(max(0, r) for (a, _), r in self.ratio.items() if a == n)) for n in contrib}
        e_opt = {n: min(c * m for m in bound_mult[n]) for n, c in contrib.items()}
        cand = [n for n in contrib if n in partners or e_opt[n] + neg[n] < 0]
        cand.sort(key=lambda n: (n not in partners, e_opt[n]))
        help_r, neg_r = [0.0] * (len(cand) + 1), [0.0] * (len(cand) + 1)
        for i in range(len(cand) - 1, -1, -1):
            help_r[i] = help_r[i + 1] + max(0.0, -e_opt[cand[i]])
            neg_r[i] = neg_r[i + 1] + neg[cand[i]]
        best = [self.baseline, []]

        def dfs(i: int, on: list[str], slots: set[str], harm: float, helps: float, inter: float) -> None:
            value = self.baseline + harm - self._saturate(helps) + inter
            if value < best[0] - 1e-12:
                best[0], best[1] = value, list(on)
            if i == len(cand) or self.baseline + harm + inter + neg_r[i] - self._saturate(helps + help_r[i]) >= best[0]:
                return
            n = cand[i]
            if not slots & set(self.techs[n].slots):
                e = contrib[n] * self._mult(n, on)
                d = sum(self.pairs.get(frozenset((n, m)), 0.0) for m in on)
                dfs(i + 1, on + [n], slots | set(self.techs[n].slots), harm + max(e, 0.0), helps + max(-e, 0.0),
                    inter + d)
            dfs(i + 1, on, slots, harm, helps, inter)

        dfs(0, [], set(), 0.0, 0.0, 0.0)
        return best[0], sorted(best[1])

    def optimum(self) -> tuple[float, dict[str, dict[str, Any]]]:
        """The best noise-free BPB and a configuration reaching it: exact (every param at its drawn
        optimum, the on/off set by branch and bound)."""
        if self._opt is None:
            value, on = self.best_set({n: t.best for n, t in self.techs.items()})
            self._opt = (value, {n: self.techs[n].optimum() for n in on})
        return self._opt

    def defaults_optimum(self) -> tuple[float, dict[str, dict[str, Any]]]:
        """The best stack with every param at its plugin default (what switching defaults on finds)."""
        value, on = self.best_set({n: t.anchor for n, t in self.techs.items()})
        return value, {n: self.registry.get(n).completed({}) for n in on}

    # ---- the runner ----------------------------------------------------------------
    def __call__(self, job: Any) -> dict[str, Any]:
        """The runner: ``job.plugins`` ({name: params}) and ``job.seed`` decide the result; plugins
        of the registry outside this world train but change nothing."""
        plugins = {n: dict(p or {}) for n, p in job.plugins.items()}
        try:
            self.registry.instantiate(plugins)
        except PluginError as e:
            return {"status": "refused", "failure": "refused", "reason": str(e)}
        self.trained += 1
        full = {n: self.registry.get(n).completed(p) for n, p in plugins.items()}
        key = json.dumps([self.seed, self.shifted, sorted((n, sorted(p.items())) for n, p in full.items()),
                          int(job.seed)], default=repr)
        rng = random.Random(hashlib.sha256(key.encode()).hexdigest())
        crash, eps = rng.random(), _student_t(rng)
        out: dict[str, Any] = self._cosmetics(full)
        if crash < self.crash_rate:
            return {**out, "status": "failed", "failure": "crash", "val_bpb": None,
                    "reason": "simulated crash (the world's crash rate)"}
        where = self.ruined(full)
        if where:
            return {**out, "status": "failed", "failure": "nan", "val_bpb": None,
                    "reason": f"loss became NaN ({where} is in a diverging region)"}
        bpb = self.true_bpb(full) + max(-0.02, min(0.02, self.noise * eps))
        return {**out, "status": "complete", "val_bpb": bpb, "val_loss": bpb * 0.6931, "failure": "", "reason": ""}

    def _cosmetics(self, full: dict[str, dict[str, Any]]) -> dict[str, Any]:
        speed, size = 1.0, 12.9e6
        for n, p in full.items():
            speed *= SPEED.get(n, 1.0)
            if n == "depth":
                speed *= 9 / p["num_layers"]
                size += 0.3e6 * (p["num_layers"] - 9)
            elif n == "width":
                speed *= (512 / p["model_dim"]) ** 0.7
                size += 0.9e6 * (p["model_dim"] - 512) / 512
            elif n == "mlp_width":
                speed *= (3 / (1 + p["mlp_mult"])) ** 0.7
                size += 0.5e6 * (p["mlp_mult"] - 2)
            elif n == "gqa":
                speed *= 1 + 0.06 * (1 - p["kv_heads"] / 8)
            elif n == "attention_recycling":
                speed /= 1 + 0.35 * (p["passes"] - 1)
            elif n == "untied":
                size += 1.1e6
        steps = max(20, round(240 * speed))
        return {"steps": steps, "ms_per_step": 600_000 / steps, "wallclock_s": 640.0,
                "artifact_bytes": int(min(15.8e6, max(9e6, size)))}


def _unmeasured(rng: random.Random, measured: list[float]) -> float:
    """A never-measured technique: a logged delta drawn at random (14 of 38 helped), a helpful one
    shrunk (a new trick helps by less than the log's survivors did), a harmful one jittered."""
    a = rng.choice(measured)
    return a * (_logu(rng, 0.2, 0.8) if a < 0 else _logu(rng, 0.5, 1.5))


def make_world(seed: int, candidates: list[str] | None = None, shifted: bool = True, *, crash_rate: float = 0.02,
               registry: Registry | None = None) -> World:
    """Draw a world over the registry's seed techniques (or ``candidates`` among them)."""
    registry = registry or Registry()
    names = sorted(n for n in registry.names() if registry.get(n).seed_refs)
    if candidates is not None:
        unknown = sorted(set(candidates) - set(names))
        if unknown:
            raise PluginError(f"not seed techniques of the registry: {', '.join(unknown)}")
        names = sorted(set(candidates))
    measured = sorted(v for v in LOGGED.values() if v)
    rngs = {n: random.Random(f"{seed}:{n}") for n in names}
    anchors = {n: LOGGED[n] if n in LOGGED else _unmeasured(rngs[n], measured) for n in names}
    weak = [n for n in names if abs(anchors[n]) <= WEAK and n not in ("cosine", "relu2")]
    flip_draw = {n: rngs[n].random() for n in weak}
    flips = {n for n in weak if flip_draw[n] < FLIP_P} if shifted else set()
    if shifted and weak and not flips:
        flips = {min(weak, key=lambda n: flip_draw[n])}
    techs = {n: _draw_tech(rngs[n], registry.get(n), anchors[n], shifted, n in flips) for n in names}
    pairs: dict[frozenset, float] = {}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            r = random.Random(f"{seed}:{a}:{b}")
            d = PAIR.get((a, b), 0.0) + (max(-0.012, min(0.012, 0.003 * _student_t(r))) if r.random() < PAIR_P else 0.0)
            if d and not set(techs[a].slots) & set(techs[b].slots):
                pairs[frozenset((a, b))] = d
    wr = random.Random(f"{seed}:world")
    ratio = {k: v for k, v in RATIO.items() if k[0] in techs and k[1] in techs}
    return World(seed, shifted, techs, registry, ratio, pairs, ceiling=wr.uniform(0.12, 0.3),
                 noise=wr.uniform(0.0006, 0.0009), crash_rate=crash_rate)


def summary(world: World) -> list[str]:
    """A few lines to sanity-check a world: its optimum and how far the default stacks lie from it."""
    opt, cfg = world.optimum()
    dflt, dcfg = world.defaults_optimum()
    seed_stack = world.true_bpb({n: {} for n in SEED_STACK if n in world.techs})
    cfg_at_defaults = world.true_bpb({n: {} for n in cfg})
    matter = sum(1 for n in cfg for k, c in world.techs[n].curves.items()
                 if c.penalty(c.default) > 0.001)
    flips = sorted(n for n, t in world.techs.items() if t.flipped)
    cliffs = sum(1 for t in world.techs.values() for c in t.curves.values() if c.cliff)
    tag = "shifted" if world.shifted else "in-sample"
    return [f"world {world.seed} ({tag}): {len(world.techs)} techniques, baseline {world.baseline:.4f}, "
            f"noise scale {world.noise:.4f} (t3), ceiling {world.ceiling:.2f}, {len(world.pairs)} pair terms, "
            f"{cliffs} diverging strips",
            f"  optimum {opt:.4f} with {len(cfg)} on: {', '.join(sorted(cfg))}",
            f"  best all-defaults stack {dflt:.4f} ({dflt - opt:+.4f}): {', '.join(sorted(dcfg))}",
            f"  the optimum's techniques at defaults {cfg_at_defaults:.4f} ({cfg_at_defaults - opt:+.4f}); "
            f"{matter} of their params cost > 0.001 at default",
            f"  the seed log's stack at defaults {seed_stack:.4f} ({seed_stack - opt:+.4f})",
            f"  flipped: {', '.join(flips) or '-'}; of them on in the optimum: "
            f"{', '.join(n for n in flips if n in cfg) or '-'}"]


if __name__ == "__main__":
    seeds = [int(s) for s in sys.argv[1:]] or [0, 1, 2, 3]
    for s in seeds:
        for shifted in (True, False):
            print("\n".join(summary(make_world(s, shifted=shifted))))
