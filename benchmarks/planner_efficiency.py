"""How close each planner strategy gets to the best configuration of a simulated world, per run.

    python benchmarks/planner_efficiency.py --seeds 16 --jobs 2                   # in-sample and shifted worlds
    python benchmarks/planner_efficiency.py --seeds 16 --jobs 2 --worlds indep    # the independent simulator

Worlds (``--worlds``, comma-separated):

  insample   ``seed_sim``: the seed log's effects, every technique's best values at its plugin's defaults
             (the defaults carry the seed's findings), Gaussian noise of 0.0009. In-sample: it rewards
             switching defaults on and says nothing about finding values
  shifted    ``shifted_world``: a held-out world per seed: each param's optimum drawn inside its range,
             weak effects flipping sign, random pairwise interactions, heavy-tailed noise, 2 % crashes
  indep      ``indep_world``: a held-out world per seed from an independently built simulator (another
             author, the same brief), over its compile-safe seed techniques; ``indep-insample`` its
             in-sample variant
  perturbed  ``seed_sim`` with every effect scaled by x0.6-1.4 and the noise varied, per seed

Strategies (``--strategies``), each driven through golfplan's Python API with the world as the runner
(no training) over the world's candidate techniques on the cosine baseline, Optuna in memory, checks off:

  plan       ``golfplan plan`` (golfplan.planner.strategy), told its budget: max_runs=B
  greedy     each candidate once at its defaults on the current stack, kept if its run beat the stack's:
             no re-test, no value search, no tuning
  tpe        ``golfplan study`` over every plugin (TPE, on/off + params), B trained runs; its first
             trials the baseline and every plugin on at its defaults (the study's own start)
  tpe-warm   the same, its first trials the baseline and every plugin alone at its defaults (an
             ablation), then TPE
  random     ``golfplan study --sampler random``
  waves      ``golfplan plan --strategy waves`` (golfplan/planner/waves.py): ablate (3 seeds each) ->
             greedy stack of the Winners (3 seeds each) -> TPE over the stack's params (20 trials), run to
             its end (it plans for no budget: one session, read at each budget and at its end)

``--noise-scale S`` multiplies every world's run-to-run noise (0: each run lands on the world's noise-free
BPB; crashes stay), a diagnostic: a strategy that is no closer without noise is held back by its runs.

Each budget B is its own session (a strategy told its budget plans for it; TPE's startup count depends
on it). "Distance" is the noise-free BPB of what the strategy would answer after B runs (plan, greedy:
its current configuration; tpe/random: the study's best trial; waves: its best measured configuration,
the tune study's best once tuning started) minus the world's optimum. "Runs to 0.002": the first run
count at which the answer is within 0.002 BPB, in the session with the largest budget. Runs are the
runs that trained, crashed runs included: configurations a world rejects as invalid (KV heads 3, an odd
head dim, ...) cost nothing, as a check would refuse them before training. Every session is
deterministic (one trial at a time).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from dataclasses import dataclass, replace
from multiprocessing import Pool
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

import seed_sim  # noqa: E402 (imported after the path is set)

NEAR = 0.002
STRATEGIES = ("plan", "greedy", "tpe", "tpe-warm", "random", "waves")
WORLDS = ("insample", "shifted", "indep", "indep-insample", "perturbed")
QUIET = (lambda m: None)
# the log's stacks, as the in-sample world sees them (a calibration check printed first)
TIDAL_SC_ROPE = {"tidal": {"warmup_frac": 0.382}, "softcap": {"value": 20.0}, "rope_base": {"base": 5000.0}}
AGGR = {"lr": {"embed_lr": 0.8, "matrix_lr": 0.06}, "head_diversity": {}}
BEST_E8 = {**TIDAL_SC_ROPE, **AGGR, "parallel": {}, "silu2": {}, "softcap": {"value": 15.0}}
STACKS = {
    "N2 tidal": (1.5906, {"tidal": {"warmup_frac": 0.382}}),
    "W0e tidal+SC20+RoPE5k+HD+AggrLR": (1.5744, {**TIDAL_SC_ROPE, **AGGR}),
    "A7 W0e+parallel": (1.5600, {**TIDAL_SC_ROPE, **AGGR, "parallel": {}}),
    "B4 A7+SiLU2": (1.5527, {**TIDAL_SC_ROPE, **AGGR, "parallel": {}, "silu2": {}}),
    "E8 B4+1/8+SC15+MatLR0.10": (1.5354, {**BEST_E8, "lr": {"embed_lr": 0.8, "matrix_lr": 0.10},
                                          "unet": {"encoder_layers": 1}}),
    "H1 seed best": (1.5207, {**BEST_E8, "lr": {"embed_lr": 0.8, "matrix_lr": 0.11}, "unet": {"encoder_layers": 0},
                              "gqa": {"kv_heads": 2}, "untied": {}}),
}


@dataclass
class World:
    """One simulated world: a runner, the noise-free BPB of a configuration, its optimum, its candidates."""

    runner: Callable[[Any], dict]
    true_bpb: Callable[[dict], float]
    best: float
    names: list[str]


def make_world(kind: str, seed: int, registry: Any, noise_scale: float = 1.0) -> World:
    """The world ``kind`` drawn with ``seed``; ``noise_scale`` multiplies its run-to-run noise (0: every run
    lands on the noise-free BPB; crashes stay)."""
    world = _make_world(kind, seed, registry)
    world.runner.noise *= noise_scale
    return world


def _make_world(kind: str, seed: int, registry: Any) -> World:
    if kind in ("insample", "perturbed"):
        scale, noise = seed_sim.perturbed(seed) if kind == "perturbed" else (None, seed_sim.NOISE_SD)
        best, _ = seed_sim.optimum(registry=registry, scale=scale)
        return World(seed_sim.SeedWorld(noise, scale, salt=seed), lambda p: seed_sim.true_bpb(p, scale), best,
                     list(seed_sim.CANDIDATES))
    if kind == "shifted":
        import shifted_world

        w = shifted_world.ShiftedWorld(seed, registry)
        return World(w, w.true_bpb, w.optimum()[0], list(w.names))
    if kind in ("indep", "indep-insample"):
        import indep_world

        # the registry's seed techniques that compile (layer_dropout and progressive_growing need --allow-eager)
        safe = [n for n in registry.names() if registry.get(n).seed_refs and registry.get(n).compile_safe]
        w = indep_world.make_world(seed, candidates=safe, shifted=kind == "indep", registry=registry)
        return World(w, w.true_bpb, w.optimum()[0], [n for n in w.techs if n not in seed_sim.FIXED and n != "relu2"])
    raise SystemExit(f"error: unknown world '{kind}' (one of {', '.join(WORLDS)})")


class Traced:
    """The world's runner, recording after every trained run what the strategy would answer."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.trained = 0
        self.choice: Callable[[], dict | None] = lambda: None
        self.trace: dict[int, float] = {}  # trained runs so far -> distance of the answer

    def note(self) -> None:
        c = self.choice()
        if c is not None:
            self.trace[self.trained] = self.world.true_bpb(c) - self.world.best

    def __call__(self, job: Any) -> dict:
        self.note()
        out = self.world.runner(job)
        if out.get("status") != "refused" and not str(out.get("reason", "")).startswith("invalid config"):
            self.trained += 1
        return out

    def at(self, runs: int) -> float:
        keys = [k for k in self.trace if k <= runs]
        return self.trace[max(keys)] if keys else float("inf")

    def first_within(self, near: float) -> int | None:
        hits = [k for k, d in self.trace.items() if d <= near]
        return min(hits) if hits else None


def study_def(name: str, names: list[str], seed: int, **kw: Any) -> Any:
    from golfplan.planner.definition import StudyDef

    return StudyDef(name=name, profile="rtx4000", fixed=dict(seed_sim.FIXED), plugins={n: {} for n in names},
                    checks="none", seed=seed, pruner="none", **kw)


def planner_for(d: Any, tr: Traced, registry: Any, storage: Any = None) -> Any:
    import optuna

    from golfplan.planner.resume import base_spec
    from golfplan.planner.study import Planner

    return Planner(d, base_spec(d), registry, storage=storage or optuna.storages.InMemoryStorage(), runner=tr,
                   say=QUIET, jobs=1)


def run_plan(tr: Traced, names: list[str], seed: int, budget: int, registry: Any) -> str:
    import optuna

    from golfplan.planner.definition import canonical_plugins
    from golfplan.planner.strategy import StackTuneStrategy

    st = StackTuneStrategy(study_def("plan", names, seed), storage=optuna.storages.InMemoryStorage(), runner=tr,
                           registry=registry, max_runs=budget, say=QUIET)
    tr.choice = lambda: canonical_plugins(registry, st.stack)
    res = st.run()
    tr.note()
    return res.stopped


def run_greedy(tr: Traced, names: list[str], seed: int, budget: int, registry: Any) -> None:
    from golfplan.planner.configs import TrialConfig
    from golfplan.planner.definition import canonical_plugins
    from golfplan.planner.records import TrialRecord
    from golfplan.registry import clash, combination_problems

    p = planner_for(study_def("greedy", names, seed, mode="experiments", experiments=[], baseline=True), tr, registry)
    p.open(enqueue=False)

    def measure(plugins: dict) -> float | None:
        key = p.enqueue(TrialConfig("greedy", plugins, phase="greedy"))
        p.run()
        rec = [TrialRecord.of(t) for t in p.finished() if TrialRecord.of(t).key == key][-1]
        ok = rec.status == "complete" and all((r.artifact_bytes or 0) <= seed_sim.ARTIFACT_LIMIT for r in rec.done)
        return sum(rec.values) / len(rec.values) if ok and rec.values else None

    stack = dict(seed_sim.FIXED)
    tr.choice = lambda: canonical_plugins(registry, stack)
    current = measure(stack)
    for name in names:
        if tr.trained >= budget:
            break
        alt = {n: q for n, q in stack.items() if not clash(registry.get(n), registry.get(name))} | {name: {}}
        if not any("lr_schedule" in registry.get(n).slots() for n in alt):
            alt |= seed_sim.FIXED
        if combination_problems(registry.classes(alt)):
            continue
        got = measure(alt)
        if got is not None and (current is None or got < current):
            stack, current = alt, got
    tr.note()


def run_study(tr: Traced, names: list[str], seed: int, budget: int, registry: Any, sampler: str,
              warm: bool = False) -> None:
    d = study_def("study", names, seed, mode="tune", trials=budget, sampler=sampler)
    p = planner_for(d, tr, registry)
    p.open(enqueue=not warm)
    if warm:  # the baseline, then each plugin alone at its defaults, then TPE
        p.set_baseline(dict(seed_sim.FIXED))
        for chosen in [{}] + [{n: p.space.defaults(n)} for n in names]:
            p.study.enqueue_trial(p.space.encode(chosen))
    p.d.trials = 20 * budget  # run until `budget` runs trained (refused-as-invalid ones are free)

    def choice() -> dict | None:
        from golfplan.planner.records import TrialRecord

        best = p.best()
        return TrialRecord.of(best[0]).plugins if best else None

    tr.choice = choice
    while tr.trained < budget and len(p.study.trials) < 20 * budget:
        p.run(max_new=1)
    tr.note()


def run_waves(tr: Traced, names: list[str], seed: int, registry: Any) -> int:
    import optuna

    from golfplan.planner import waves
    from golfplan.planner.records import TrialRecord
    from golfplan.planner.report import best_row, collect

    storage = optuna.storages.InMemoryStorage()
    abl = study_def("plan.ablate", names, seed, mode="ablate", repeats=3)
    ap = planner_for(abl, tr, registry, storage)
    phases: list[Any] = [ap]

    def choice() -> dict | None:
        if len(phases) == 3:
            b = phases[2].best()
            return TrialRecord.of(b[0]).plugins if b else None
        rows = [r for p in phases for r in collect(p.study)[0]]
        best = best_row(rows)
        return best.plugins if best else None

    tr.choice = choice
    ap.open()
    ap.run()
    sdef = replace(abl, name="plan.stack", mode="experiments", plugins={}, experiments=[], baseline=True)
    sp = planner_for(sdef, tr, registry, storage)
    sp.open(enqueue=False)
    sp.set_baseline(dict(abl.fixed))
    phases.append(sp)
    result = waves.stack(ap, sp, say=QUIET)
    tdef = waves.tune_definition(sp.d, result.plugins, dict(abl.fixed), registry, "plan.tune", 20, None)
    if tdef is not None:
        tp = planner_for(tdef, tr, registry, storage)
        tp.open()
        phases.append(tp)
        tp.run()
    tr.note()
    return tr.trained


def one_seed(args: tuple) -> dict[str, Any]:
    """(kind, seed, budgets, strategies[, noise_scale]): every strategy's session(s) on one world."""
    kind, seed, budgets, strategies = args[:4]
    from golfplan.registry import Registry

    registry = Registry()
    world = make_world(kind, seed, registry, *args[4:])
    names = list(world.names)
    random.Random(seed).shuffle(names)  # the order a user lists plugins in is arbitrary
    out: dict[str, Any] = {"seed": seed}
    for strat in strategies:
        t0 = time.time()
        dists: dict[int, float] = {}
        first: int | None = None
        total, stopped = None, {}
        if strat == "waves":
            tr = Traced(world)
            total = run_waves(tr, names, seed, registry)
            dists = {b: tr.at(b) for b in budgets}
            dists[-1] = tr.at(total)
            first = tr.first_within(NEAR)
        else:
            for b in budgets:
                tr = Traced(world)
                if strat == "plan":
                    stopped[b] = run_plan(tr, names, seed, b, registry)
                elif strat == "greedy":
                    run_greedy(tr, names, seed, b, registry)
                else:
                    run_study(tr, names, seed, b, registry, "random" if strat == "random" else "tpe",
                              warm=strat == "tpe-warm")
                dists[b] = tr.at(b)
                if b == max(budgets):
                    first = tr.first_within(NEAR)
        out[strat] = {"dist": dists, "first": first, "total": total, "stopped": stopped, "seconds": time.time() - t0}
    return out


def fmt_dist(values: list[float]) -> str:
    return f"{statistics.median(values):+.4f} [{min(values):+.4f}, {max(values):+.4f}]"


def table(kind: str, results: list[dict], budgets: list[int], strategies: list[str]) -> None:
    n = len(results)
    print(f"\n{kind}: {n} worlds. Distance from the optimum (BPB): median [min, max]; runs to within {NEAR}: "
          f"median over worlds (never: not within it in half of them)\n")
    print("| strategy | " + " | ".join(f"at {b} runs" for b in budgets) +
          f" | runs to {NEAR} | within {NEAR} by {max(budgets)} runs | seconds/world |")
    print("|" + "---|" * (len(budgets) + 4))
    for strat in strategies:
        rows = [r[strat] for r in results]
        cells = [fmt_dist([r["dist"][b] for r in rows]) for b in budgets]
        firsts = sorted(r["first"] if r["first"] is not None else float("inf") for r in rows)
        med = statistics.median(firsts)
        within = sum(1 for f in firsts if f <= max(budgets))
        name = strat
        if strat == "waves":
            totals = [r["total"] for r in rows]
            name += f" (ends after {min(totals)}-{max(totals)} runs at {fmt_dist([r['dist'][-1] for r in rows])})"
        print(f"| {name} | " + " | ".join(cells) + f" | {'never' if med == float('inf') else int(med)} | "
              f"{within}/{n} | {statistics.mean(r['seconds'] for r in rows):.0f} |")
    if "plan" in strategies:
        print(f"\nplan within {NEAR} after B runs: " + ", ".join(
            f"B={b}: {sum(1 for r in results if r['plan']['dist'][b] <= NEAR)}/{n}" for b in budgets))
        for b in budgets:
            why: dict[str, int] = {}
            for r in results:
                s = r["plan"]["stopped"].get(b, "?")
                why[s] = why.get(s, 0) + 1
            print(f"plan at B={b} stopped: " + "; ".join(f"{k} ({v})" for k, v in sorted(why.items(), key=lambda x: -x[1])))


def header(registry: Any, kinds: list[str]) -> None:
    best, conf = seed_sim.optimum(registry=registry)
    print(f"in-sample seed world: {len(seed_sim.CANDIDATES)} candidate plugins on the cosine baseline "
          f"({seed_sim.BASE_BPB}), noise sd {seed_sim.NOISE_SD}")
    print(f"its optimum {best:.4f} ({best - seed_sim.BASE_BPB:+.4f}): " +
          " + ".join(n + ("" if not p else "(" + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                                              for k, v in p.items()) + ")") for n, p in conf.items()))
    print("the log's stacks in it (a calibration check):")
    for label, (measured, plugins) in STACKS.items():
        full = seed_sim.canonical({**({} if "tidal" in plugins else seed_sim.FIXED), **plugins}, registry)
        print(f"  {label:32s} log {measured:.4f}  sim {seed_sim.true_bpb(full):.4f}")
    total, near, closest = seed_sim.count_near(registry, NEAR)
    print(f"its on/off combinations at default params ({'golfplan study'}'s space): {total:,}, of which {near:,} "
          f"lie within {NEAR} BPB of the optimum (the closest {closest:+.4f})")
    if "shifted" in kinds:
        import shifted_world

        print("shifted worlds (seeds 0-3 shown): " + "; ".join(shifted_world.summary(shifted_world.ShiftedWorld(s, registry))
                                                            for s in range(4)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=12, help="worlds (seeds) per world kind")
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--budgets", default="20,33,66,131")
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    ap.add_argument("--worlds", default="insample,shifted", help=f"comma-separated: {', '.join(WORLDS)}")
    ap.add_argument("--jobs", type=int, default=1, help="processes (one world each at a time)")
    ap.add_argument("--noise-scale", type=float, default=1.0,
                    help="multiply every world's run-to-run noise (0: none; a diagnostic: is a strategy held back "
                         "by the noise or by the runs it has?)")
    a = ap.parse_args()
    budgets = sorted(int(b) for b in a.budgets.split(","))
    strategies = [s for s in a.strategies.split(",") if s]
    kinds = [k for k in a.worlds.split(",") if k]
    for s in strategies:
        if s not in STRATEGIES:
            raise SystemExit(f"error: unknown strategy '{s}' (one of {', '.join(STRATEGIES)})")
    for k in kinds:
        if k not in WORLDS:
            raise SystemExit(f"error: unknown world '{k}' (one of {', '.join(WORLDS)})")
    seeds = list(range(a.first_seed, a.first_seed + a.seeds))

    from golfplan.registry import Registry

    header(Registry(), kinds)
    t0 = time.time()
    if a.noise_scale != 1.0:
        print(f"every world's run-to-run noise x {a.noise_scale:g} (--noise-scale)")
    jobs = [(k, s, budgets, strategies, a.noise_scale) for k in kinds for s in seeds]
    if a.jobs > 1:
        with Pool(a.jobs) as pool:
            results = pool.map(one_seed, jobs, chunksize=1)
    else:
        results = [one_seed(j) for j in jobs]
    print(f"\n{len(jobs)} worlds in {time.time() - t0:.0f} s")
    for k in kinds:
        table(k, [r for j, r in zip(jobs, results) if j[0] == k], budgets, strategies)


if __name__ == "__main__":
    main()
