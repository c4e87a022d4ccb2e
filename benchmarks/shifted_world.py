"""Held-out worlds: the seed world's techniques, with best values nobody told the planner.

``seed_sim`` is *in-sample*: its best values are the plugins' defaults (the seed's findings, which the
defaults carry). A technique someone has just written is not like that, so ``ShiftedWorld(seed)`` draws
a world in which, for every one of the seed's 39 candidate techniques:

* **the effect at its best values** is what the seed log measured for it (``seed_sim``'s effect at the
  defaults, in the same context: the log's interactions with parallel, tidal, a U-Net split, untied
  embeddings, depth and the three regularisers stay), scaled by a factor drawn from [0.6, 1.4]; a weak
  effect (under 0.006 BPB on the cosine baseline) **flips sign** with probability 0.35;
* **each param's optimum is drawn inside its declared range**: uniformly on the param's scale (its log
  scale where declared), for ints among the values valid on the baseline (KV heads dividing 8 heads, a
  width with an even head dim, at most 9 encoder layers), for bools and choices among the options;
  ordered params (``at_least``) keep their order;
* **moving a param away from its optimum costs** ``D x |u - u*|^q`` (``u``: the value's position in the
  range, 0 to 1 on the param's scale), asymmetric (each side's D times e^N(0, 0.4)), with q drawn from
  [1.5, 2.5] and D the spread of the seed world's effect over that param's range (clipped to [0.002,
  0.06]; a param the seed world never reads gets one drawn log-uniformly from [0.001, 0.01]), times a
  factor drawn log-uniformly from [0.5, 2]; a bool or choice's other options cost D x U(0.3, 1) each.
  So a technique's default can hurt where its best value helps;
* **random pairwise interactions** beyond the log's: 10-20 pairs of techniques that can run together,
  each worth ``±rho x sqrt(|a| |b|)`` when both are on (a, b: the two effects on the baseline, capped at
  0.05; rho log-uniform in [0.1, 1], either sign);
* **noise**: Student's t with 3 degrees of freedom, scaled to a sd drawn from [0.0006, 0.0013]
  (heavy-tailed: a few runs land 3-5 sd away); **crashes**: 2 % of runs fail ("crash") at random.

Everything else is the seed world's: the baseline (1.6117), saturation of long stacks, which
configurations are invalid, step counts, artifact bytes (the 16,000,000-byte limit is real here too).
The draws use only the declared ranges, the seed world and the world's seed: nothing from the strategy.

``optimum()`` is exact over on/off with every param at its optimum (enumerating what sets the context:
schedule, block, activation, untied, depth and the U-Net split; then, given the context, brute force
over the techniques whose sign the random interactions can change, the others on exactly when they
help; the size-changing ones both on and off), within the artifact limit.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
from dataclasses import dataclass, field, replace
from typing import Any

import seed_sim
from seed_sim import BASE_BPB, EFFECTS, FAIL_BPB, Ctx, saturate

FLIP_BELOW, FLIP_P = 0.006, 0.35
CRASH_P = 0.02
T_DOF = 3
SPAN_MIN, SPAN_MAX = 0.002, 0.06
SIZE_PLUGINS = ("gqa", "width", "mlp_width", "depth", "swiglu", "untied")  # what changes the artifact
BASELINE_VALID = {"kv_heads": lambda v: seed_sim.HEADS % v == 0, "model_dim": lambda v: v % (2 * seed_sim.HEADS) == 0,
                  "encoder_layers": lambda v: v <= 9}


def position(spec: Any, v: Any) -> float:
    """Where ``v`` lies in the param's range, 0 to 1 on its scale."""
    if spec.log:
        return (math.log(v) - math.log(spec.low)) / (math.log(spec.high) - math.log(spec.low))
    return (v - spec.low) / (spec.high - spec.low) if spec.high > spec.low else 0.0


def value_at(spec: Any, u: float) -> Any:
    v = math.exp(math.log(spec.low) + u * (math.log(spec.high) - math.log(spec.low))) if spec.log \
        else spec.low + u * (spec.high - spec.low)
    return int(round(v)) if spec.kind == "int" else float(v)


@dataclass
class Bowl:
    """The cost of one param's value: 0 at ``best``."""

    kind: str
    best: Any
    span: float
    q: float = 2.0
    left: float = 1.0
    right: float = 1.0
    spec: Any = None
    options: dict = field(default_factory=dict)  # bool/choice: option -> cost

    def cost(self, v: Any) -> float:
        if self.kind in ("bool", "choice"):
            return self.options.get(v, 0.0)
        d = position(self.spec, v) - position(self.spec, self.best)
        return self.span * (self.left if d < 0 else self.right) * abs(d) ** self.q


def seed_span(name: str, k: str, spec: Any, defaults: dict) -> float:
    """How much the seed world's effect of ``name`` moves over param ``k``'s range (others at default)."""
    vals = [EFFECTS[name]({**defaults, k: v}, Ctx()) for v in seed_sim._grid(spec)]
    vals = [v for v in vals if math.isfinite(v)]
    return max(vals) - min(vals) if vals else 0.0


class ShiftedWorld:
    """A held-out world (see the module docstring); ``world(job)`` is a golfplan runner,
    ``true_bpb(plugins)`` the noise-free BPB, ``optimum()`` the best configuration."""

    def __init__(self, seed: int, registry: Any) -> None:
        self.seed, self.registry = seed, registry
        rng = random.Random(f"shifted-world-{seed}")
        self.names = list(seed_sim.CANDIDATES)
        self.defaults = {n: {k: s.default for k, s in registry.get(n).params.items()} for n in self.names}
        self.scale = {n: rng.uniform(0.6, 1.4) for n in self.names}
        self.flipped = sorted(n for n in self.names
                              if abs(EFFECTS[n](self.defaults[n], Ctx())) < FLIP_BELOW and rng.random() < FLIP_P)
        self.bowls: dict[str, dict[str, Bowl]] = {n: self._draw_bowls(n, rng) for n in self.names}
        self.pairs: dict[frozenset[str], float] = {}
        clean = [(a, b) for a, b in itertools.combinations(self.names, 2)
                 if not seed_sim_clash(registry, a, b)]
        size = {n: min(abs(self.scale[n] * EFFECTS[n](self.defaults[n], Ctx())), 0.05) for n in self.names}
        for a, b in rng.sample(clean, rng.randint(10, 20)):
            rho = math.exp(rng.uniform(math.log(0.1), 0.0)) * rng.choice((-1, 1))
            self.pairs[frozenset((a, b))] = rho * math.sqrt(size[a] * size[b])
        self.noise = rng.uniform(0.0006, 0.0013)
        self.calls = self.trained = 0

    def _draw_bowls(self, name: str, rng: random.Random) -> dict[str, Bowl]:
        specs = self.registry.get(name).params
        out: dict[str, Bowl] = {}
        for k, spec in specs.items():
            span = seed_span(name, k, spec, self.defaults[name])
            span = min(max(span, SPAN_MIN), SPAN_MAX) if span > 1e-4 else math.exp(rng.uniform(math.log(0.001),
                                                                                               math.log(0.01)))
            span *= math.exp(rng.uniform(math.log(0.5), math.log(2.0)))
            if spec.kind in ("bool", "choice"):
                options = [False, True] if spec.kind == "bool" else list(spec.choices)
                best = rng.choice(options)
                out[k] = Bowl(spec.kind, best, span, options={o: 0.0 if o == best else span * rng.uniform(0.3, 1.0)
                                                              for o in options})
                continue
            if spec.kind == "int":
                ok = [v for v in range(spec.low, spec.high + 1) if BASELINE_VALID.get(k, lambda v: True)(v)]
                best = rng.choice(ok)
            else:
                best = value_at(spec, rng.random())
            out[k] = Bowl(spec.kind, best, span, rng.uniform(1.5, 2.5), math.exp(rng.gauss(0, 0.4)),
                          math.exp(rng.gauss(0, 0.4)), spec)
        for k, spec in specs.items():  # ordered params keep their order at the optimum
            if spec.lower and out[k].best < out[spec.lower].best:
                out[k].best, out[spec.lower].best = out[spec.lower].best, out[k].best
        return out

    # ---- the world ------------------------------------------------------------------------------------
    def base_effect(self, name: str, c: Ctx) -> float:
        """The effect of ``name`` at its best values in context ``c``."""
        e = self.scale[name] * EFFECTS[name](self.defaults[name], c)
        return -e if name in self.flipped else e

    def effect(self, name: str, params: dict, c: Ctx) -> float:
        return min(self.base_effect(name, c) + sum(b.cost(params[k]) for k, b in self.bowls[name].items()), 0.5)

    def best_params(self, name: str) -> dict:
        return {**self.defaults[name], **{k: b.best for k, b in self.bowls[name].items()}}

    def evaluate(self, plugins: dict[str, dict]) -> seed_sim.Outcome:
        """Noise-free BPB, steps and artifact bytes of a configuration (every param given)."""
        unknown = [n for n in plugins if n not in EFFECTS]
        if unknown:
            raise ValueError(f"plugin '{unknown[0]}' is not in the simulated world")
        invalid = seed_sim.invalid_reason(plugins)  # the seed world's rules
        if invalid:
            return seed_sim.Outcome(math.inf, 0, 0, invalid)
        c = seed_sim.context(plugins)
        total = sum(self.effect(n, p, c) for n, p in plugins.items() if n in self.bowls)
        on = set(plugins)
        total += sum(v for pair, v in self.pairs.items() if pair <= on)
        return seed_sim.Outcome(BASE_BPB + saturate(total), max(1, round(seed_sim.BASE_STEPS * seed_sim.speed(plugins))),
                                seed_sim.artifact_bytes(plugins))

    def true_bpb(self, plugins: dict[str, dict]) -> float:
        return self.evaluate(plugins).bpb

    def __call__(self, job: Any) -> dict[str, Any]:
        self.calls += 1
        out = self.evaluate(job.plugins)
        if out.invalid:
            return {"status": "failed", "reason": out.invalid, "failure": "crash", "wallclock_s": 2.0}
        self.trained += 1
        key = json.dumps(job.plugins, sort_keys=True, default=str)
        rng = random.Random(int(hashlib.sha1(f"{self.seed}|{job.seed}|{key}".encode()).hexdigest()[:15], 16))
        base = {"steps": out.steps, "ms_per_step": round(600_000 / out.steps, 1), "wallclock_s": 660.0,
                "artifact_bytes": out.artifact_bytes}
        if rng.random() < CRASH_P:
            return {"status": "failed", "reason": "simulated crash (CUDA error)", "failure": "crash", **base}
        t = rng.gauss(0, 1) / math.sqrt(sum(rng.gauss(0, 1) ** 2 for _ in range(T_DOF)) / T_DOF)
        bpb = out.bpb + self.noise * t / math.sqrt(T_DOF / (T_DOF - 2))
        if bpb > FAIL_BPB:
            return {"status": "failed", "reason": "the loss did not fall", **base}
        return {"status": "complete", "val_bpb": bpb, "val_loss": bpb * 0.7, **base}

    # ---- the best configuration -----------------------------------------------------------------------
    def optimum(self) -> tuple[float, dict[str, dict]]:
        reg = self.registry
        slot_of = {n: reg.get(n).slots() for n in self.names}
        scheds = [None] + [n for n in self.names if "lr_schedule" in slot_of[n]]
        acts = [None] + [n for n in self.names if "activation" in slot_of[n]]
        blocks = [None] + [n for n in self.names if "block" in slot_of[n]]
        fixed_dims = {"untied", "depth", "unet"}
        others = [n for n in self.names if n not in set(scheds) | set(acts) | set(blocks) | fixed_dims]
        best: tuple[float, dict[str, dict]] = (math.inf, {})
        enc_best = self.bowls["unet"]["encoder_layers"]
        for sched, block, act, untie, layers in itertools.product(
                scheds, blocks, acts, (False, True), [None] + list(range(2, 17))):
            n_layers = layers or 9
            split_vals = [e for e in range(0, n_layers // 2)]
            whole_vals = [e for e in range(n_layers // 2, n_layers + 1)]
            encs = [None] + [min(vs, key=lambda e: enc_best.cost(e)) for vs in (split_vals, whole_vals) if vs]
            for enc in encs:
                conf: dict[str, dict] = {}
                for n in (sched, block, act):
                    if n is not None:
                        conf[n] = self.best_params(n)
                if untie:
                    conf["untied"] = {}
                if layers is not None:
                    conf["depth"] = {**self.best_params("depth"), "num_layers": layers}
                if enc is not None:
                    conf["unet"] = {"encoder_layers": enc}
                total = self._inner(conf, others, slot_of)
                if total is not None and total[0] < best[0]:
                    best = total
        conf = best[1] if any("lr_schedule" in slot_of[n] for n in best[1]) else {**seed_sim.FIXED, **best[1]}
        full = seed_sim.canonical(conf, reg)
        out = self.evaluate(full)
        assert abs(out.bpb - (BASE_BPB + saturate(best[0]))) < 1e-9, (out.bpb, best[0])
        assert out.artifact_bytes <= seed_sim.ARTIFACT_LIMIT
        return out.bpb, full

    def _inner(self, conf: dict[str, dict], others: list[str], slot_of: dict) -> tuple[float, dict] | None:
        """(raw total, configuration) of the best set of ``others`` added to ``conf`` (whose members set the
        context; the others only add their effect and their pairs), or None when nothing fits."""
        taken = {s for n in conf for s in slot_of[n]}
        free = [n for n in others if not set(slot_of[n]) & taken]
        on, free_set = set(conf), set(free)
        c = seed_sim.context(conf)
        raw = sum(self.effect(n, p, c) for n, p in conf.items()) + sum(v for pr, v in self.pairs.items() if pr <= on)
        unary = {n: min(self.base_effect(n, c), 0.5) + sum(v for pr, v in self.pairs.items()
                                                            if n in pr and (pr - {n}) <= on) for n in free}
        within = {pr: v for pr, v in self.pairs.items() if pr <= free_set}
        regs = ("z_loss", "logit_penalty", "token_dropout")
        regs_adj = (min(self.base_effect("z_loss", replace(c, regs=True)), 0.5) - min(self.base_effect("z_loss", c), 0.5)
                    if all(r in free_set for r in regs) else 0.0)
        hope = {n: unary[n] + sum(min(0.0, v) for pr, v in within.items() if n in pr) + (min(0.0, regs_adj) if n in regs
                                                                                          else 0.0) for n in free}
        maybe = {n for n in free if hope[n] < 0}
        coupled = {n for pr in within if pr <= maybe for n in pr}
        if regs_adj < 0 and all(r in maybe for r in regs):
            coupled |= set(regs)
        coupled |= maybe & set(SIZE_PLUGINS)  # tried on and off: on may not fit the artifact limit
        single = [n for n in maybe if n not in coupled and unary[n] < 0]
        coupled_l = sorted(coupled)
        best: tuple[float, dict] | None = None
        for mask in range(1 << len(coupled_l)):
            pick = set(single) | {n for i, n in enumerate(coupled_l) if mask >> i & 1}
            slots = [s for n in pick for s in slot_of[n]]
            if len(slots) != len(set(slots)):
                continue
            total = raw + sum(unary[n] for n in pick) + sum(v for pr, v in within.items() if pr <= pick) + \
                (regs_adj if all(r in pick for r in regs) else 0.0)
            sized = {n: p for n, p in conf.items() if n in SIZE_PLUGINS}
            sized.update({n: self.best_params(n) for n in pick if n in SIZE_PLUGINS})
            if seed_sim.artifact_bytes(sized) > seed_sim.ARTIFACT_LIMIT:
                continue
            if best is None or total < best[0]:
                best = (total, {**conf, **{n: self.best_params(n) for n in pick}})
        return best

def seed_sim_clash(registry: Any, a: str, b: str) -> bool:
    from golfplan.registry import clash

    return clash(registry.get(a), registry.get(b))


def summary(world: ShiftedWorld) -> str:
    """One line to sanity-check a world: its optimum, and how far its techniques' defaults lie from it."""
    best, conf = world.optimum()
    reg = world.registry
    at_defaults = world.true_bpb(seed_sim.canonical({n: {} for n in conf}, reg))
    base = {n: p for n, p in seed_sim.FIXED.items()}
    hurt = [n for n in conf if n not in base and world.true_bpb(seed_sim.canonical(
        {**({} if "lr_schedule" in reg.get(n).slots() else base), n: {}}, reg)) > world.true_bpb(
        seed_sim.canonical(base, reg))]
    return (f"world {world.seed}: optimum {best - BASE_BPB:+.4f} with {len(conf) - ('cosine' in conf)} techniques, "
            f"{len(hurt)} of which hurt alone at their defaults; those techniques at defaults "
            f"{at_defaults - best:+.4f} from it; flipped {len(world.flipped)}, {len(world.pairs)} pairs")


def value_floors(world: ShiftedWorld, counts: list[int]) -> tuple[int, dict[int, float]]:
    """How much of the distance is values: the optimum's own set of techniques with every param at its
    plugin's default, except the ``n`` params that cost most there, set at their best (for each ``n`` in
    ``counts``). Returns (params off their best at the defaults, ``n`` -> distance from the optimum)."""
    best, conf = world.optimum()
    defaults = world.defaults  # every candidate's params at its plugin's defaults
    off = [(n, k) for n in conf if n in world.bowls for k in conf[n] if conf[n][k] != defaults[n][k]]

    def at_defaults(keep: list[tuple[str, str]]) -> float:
        c = {n: dict(p) for n, p in conf.items()}
        for n, k in off:
            if (n, k) not in keep:
                c[n][k] = defaults[n][k]
        return world.true_bpb(c) - best

    cost = {p: at_defaults([q for q in off if q != p]) for p in off}  # that param alone at its default
    order = sorted(off, key=lambda p: -cost[p])
    return len(off), {n: at_defaults(order[:n]) for n in counts}


if __name__ == "__main__":
    import argparse
    import statistics

    from golfplan.registry import Registry

    ap = argparse.ArgumentParser(description="Held-out worlds: each one's summary, and how much of its optimum "
                                             "is values (value_floors)")
    ap.add_argument("--seeds", type=int, default=16)
    a = ap.parse_args()
    reg, counts = Registry(), [0, 3, 5, 10, 15]
    rows = []
    for s in range(a.seeds):
        w = ShiftedWorld(s, reg)
        print(summary(w), flush=True)
        rows.append(value_floors(w, counts))
    print(f"\nthe optimum's techniques with every param at its default, but the n costliest set at their best "
          f"(median over {a.seeds} worlds; params off their best at the defaults: median "
          f"{statistics.median(r[0] for r in rows):g}):")
    for n in counts:
        print(f"  n = {n:2d}: {statistics.median(r[1][n] for r in rows):+.4f} BPB from the optimum "
              f"[{min(r[1][n] for r in rows):+.4f}, {max(r[1][n] for r in rows):+.4f}]")
