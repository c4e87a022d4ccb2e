"""How close each planner strategy gets to the best configuration of the simulated seed world, per run.

    python benchmarks/planner_efficiency.py                 # 12 seeds, budgets 20, 33, 66 (a few minutes)
    python benchmarks/planner_efficiency.py --seeds 16 --jobs 2 --perturb

Strategies, each driven through golfplan's Python API with ``benchmarks/seed_sim.py``'s runner (no
training) over the seed's 39 measured techniques on its cosine baseline, Optuna in memory, checks off:

  stack-tune   golfplan.planner.strategy (stack one at a time, re-test the close calls, tune), max_runs=B
  tpe          ``golfplan study`` over every plugin (TPE, on/off + params), B trained runs
  random       the same with ``--sampler random``
  plan         ``golfplan plan`` as in golfplan/planner/waves.py: ablate (3 seeds each) -> greedy stack
               of the Winners (3 seeds each) -> TPE over the stack's params (20 trials); run to its end

Each budget B is its own session (a strategy told its budget plans for it; TPE's startup count
depends on it). "Distance" is the noise-free BPB of what the strategy would answer after B runs
(stack-tune: its current configuration; tpe/random: the study's best trial; plan: its best measured
configuration, the tune study's best once tuning started) minus the optimum of the simulated space
(``seed_sim.optimum``: exact enumeration of the context-setting choices, every other plugin at its best
params). "Runs to 0.002": the first run count at which the answer is within 0.002 BPB, in the session
with the largest budget (plan: its only session). Runs are the runs that trained: configurations the
simulator rejects as invalid (KV heads 3, an odd head dim, ...) cost nothing, as a check would refuse
them before training (with ``--checks none`` golfplan does not filter such values itself).
``--perturb`` draws a different world for each seed (effects x0.6-1.4, noise sd 0.0006-0.0013).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from dataclasses import replace
from multiprocessing import Pool
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

import seed_sim  # noqa: E402 (imported after the path is set)

NEAR = 0.002
STRATEGIES = ("stack-tune", "tpe", "random", "plan")

# the log's stacks, as the simulation sees them (a calibration check printed first)
TIDAL_SC_ROPE = {"tidal": {"warmup_frac": 0.382}, "softcap": {"value": 20.0}, "rope_base": {"base": 5000.0}}
AGGR = {"lr": {"embed_lr": 0.8, "matrix_lr": 0.06}, "head_diversity": {}}
STACKS = {
    "N2 tidal": (1.5906, {"tidal": {"warmup_frac": 0.382}}),
    "W0e tidal+SC20+RoPE5k+HD+AggrLR": (1.5744, {**TIDAL_SC_ROPE, **AGGR}),
    "A7 W0e+parallel": (1.5600, {**TIDAL_SC_ROPE, **AGGR, "parallel": {}}),
    "B4 A7+SiLU2": (1.5527, {**TIDAL_SC_ROPE, **AGGR, "parallel": {}, "silu2": {}}),
    "E8 B4+1/8+SC15+MatLR0.10": (1.5354, {**TIDAL_SC_ROPE, **AGGR, "parallel": {}, "silu2": {},
                                          "softcap": {"value": 15.0}, "lr": {"embed_lr": 0.8, "matrix_lr": 0.10},
                                          "unet": {"encoder_layers": 1}}),
    "H1 seed best": (1.5207, {**TIDAL_SC_ROPE, **AGGR, "parallel": {}, "silu2": {}, "softcap": {"value": 15.0},
                              "lr": {"embed_lr": 0.8, "matrix_lr": 0.11}, "unet": {"encoder_layers": 0},
                              "gqa": {"kv_heads": 2}, "untied": {}}),
}


class Traced:
    """The simulated runner, recording after every trained run what the strategy would answer."""

    def __init__(self, world: seed_sim.SeedWorld, true: Callable[[dict], float]) -> None:
        self.world, self.true = world, true
        self.choice: Callable[[], dict | None] = lambda: None
        self.trace: dict[int, float] = {}  # trained runs so far -> distance of the answer

    def note(self) -> None:
        c = self.choice()
        if c is not None:
            self.trace[self.world.trained] = self.true(c)

    def __call__(self, job: Any) -> dict:
        self.note()
        return self.world(job)

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


def run_stack_tune(tr: Traced, names: list[str], seed: int, budget: int, registry: Any) -> None:
    import optuna

    from golfplan.planner.definition import canonical_plugins
    from golfplan.planner.strategy import StackTuneStrategy

    st = StackTuneStrategy(study_def("plan", names, seed), storage=optuna.storages.InMemoryStorage(), runner=tr,
                           registry=registry, max_runs=budget, say=lambda m: None)
    tr.choice = lambda: canonical_plugins(registry, st.stack)
    st.run()
    tr.note()


def run_study(tr: Traced, names: list[str], seed: int, budget: int, registry: Any, sampler: str) -> None:
    import optuna

    from golfplan.planner.study import Planner

    d = study_def("study", names, seed, mode="tune", trials=budget, sampler=sampler)
    p = Planner(d, storage=optuna.storages.InMemoryStorage(), runner=tr, registry=registry, say=lambda m: None)
    p.open()
    p.d.trials = 20 * budget  # run until `budget` runs trained (refused-as-invalid ones are free)

    def choice() -> dict | None:
        best = p.best()
        return best[0].user_attrs["plugins"] if best else None

    tr.choice = choice
    while tr.world.trained < budget:
        p.run(max_new=1)
    tr.note()


def run_plan(tr: Traced, names: list[str], seed: int, registry: Any) -> int:
    import optuna

    from golfplan.planner import waves
    from golfplan.planner.report import best_row, collect
    from golfplan.planner.study import BASELINE_ATTR, Planner

    storage, quiet = optuna.storages.InMemoryStorage(), (lambda m: None)
    abl = study_def("plan.ablate", names, seed, mode="ablate", repeats=3)
    ap = Planner(abl, storage=storage, runner=tr, registry=registry, say=quiet)
    phases: list[Any] = [ap]

    def choice() -> dict | None:
        if len(phases) == 3:
            b = phases[2].best()
            return b[0].user_attrs["plugins"] if b else None
        rows = [r for p in phases for r in collect(p.study)[0]]
        best = best_row(rows)
        return best.plugins if best else None

    tr.choice = choice
    ap.open()
    ap.run()
    sdef = replace(abl, name="plan.stack", mode="experiments", plugins={}, experiments=[], baseline=True)
    sp = Planner(sdef, storage=storage, runner=tr, registry=registry, say=quiet)
    sp.open(enqueue=False)
    sp.study.set_user_attr(BASELINE_ATTR, sp.key_of(dict(abl.fixed)))
    phases.append(sp)
    result = waves.stack(ap, sp, say=quiet)
    tdef = waves.tune_definition(sp.d, result.plugins, dict(abl.fixed), registry, "plan.tune", 20, None)
    if tdef is not None:
        tp = Planner(tdef, storage=storage, runner=tr, registry=registry, say=quiet)
        tp.open()
        phases.append(tp)
        tp.run()
    tr.note()
    return tr.world.trained


def one_seed(args: tuple[int, list[int], list[str], bool]) -> dict[str, Any]:
    seed, budgets, strategies, perturb = args
    from golfplan.registry import Registry

    registry = Registry()
    scale, noise = seed_sim.perturbed(seed) if perturb else (None, seed_sim.NOISE_SD)
    best, _ = seed_sim.optimum(registry=registry, scale=scale)
    names = list(seed_sim.CANDIDATES)
    random.Random(seed).shuffle(names)  # the order a user lists plugins in is arbitrary

    def true(plugins: dict) -> float:
        return seed_sim.true_bpb(plugins, scale) - best

    out: dict[str, Any] = {"seed": seed}
    for strat in strategies:
        t0 = time.time()
        dists: dict[int, float] = {}
        first: int | None = None
        total = None
        if strat == "plan":
            tr = Traced(seed_sim.SeedWorld(noise, scale, salt=seed), true)
            total = run_plan(tr, names, seed, registry)
            dists = {b: tr.at(b) for b in budgets}
            dists[-1] = tr.at(total)
            first = tr.first_within(NEAR)
        else:
            for b in budgets:
                tr = Traced(seed_sim.SeedWorld(noise, scale, salt=seed), true)
                if strat == "stack-tune":
                    run_stack_tune(tr, names, seed, b, registry)
                else:
                    run_study(tr, names, seed, b, registry, "tpe" if strat == "tpe" else "random")
                dists[b] = tr.at(b)
                if b == max(budgets):
                    first = tr.first_within(NEAR)
        out[strat] = {"dist": dists, "first": first, "total": total, "seconds": time.time() - t0}
    return out


def fmt_dist(values: list[float]) -> str:
    return f"{statistics.median(values):+.4f} [{min(values):+.4f}, {max(values):+.4f}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=12)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--budgets", default="20,33,66")
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    ap.add_argument("--jobs", type=int, default=1, help="processes (one seed each at a time)")
    ap.add_argument("--perturb", action="store_true", help="a differently scaled world for each seed")
    a = ap.parse_args()
    budgets = sorted(int(b) for b in a.budgets.split(","))
    strategies = [s for s in a.strategies.split(",") if s]
    seeds = list(range(a.first_seed, a.first_seed + a.seeds))

    from golfplan.registry import Registry

    registry = Registry()
    best, conf = seed_sim.optimum(registry=registry)
    print(f"seed world: {len(seed_sim.CANDIDATES)} candidate plugins on the cosine baseline ({seed_sim.BASE_BPB}), "
          f"noise sd {seed_sim.NOISE_SD}" + (" (perturbed per seed)" if a.perturb else ""))
    print(f"optimum {best:.4f} ({best - seed_sim.BASE_BPB:+.4f}): " +
          " + ".join(n + ("" if not p else "(" + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                                              for k, v in p.items()) + ")") for n, p in conf.items()))
    print("the log's stacks in the simulation:")
    for label, (measured, plugins) in STACKS.items():
        full = seed_sim.canonical({**({} if "tidal" in plugins else seed_sim.FIXED), **plugins}, registry)
        print(f"  {label:32s} log {measured:.4f}  sim {seed_sim.true_bpb(full):.4f}  "
              f"(distance to the optimum {seed_sim.true_bpb(full) - best:+.4f})")
    t0 = time.time()
    jobs = [(s, budgets, strategies, a.perturb) for s in seeds]
    if a.jobs > 1:
        with Pool(a.jobs) as pool:
            results = pool.map(one_seed, jobs)
    else:
        results = [one_seed(j) for j in jobs]
    n = len(results)
    print(f"\n{n} seeds, {time.time() - t0:.0f} s. Distance from the optimum (BPB): median [min, max]; "
          f"runs to within {NEAR}: median over seeds (a seed that never got there counts as never)\n")
    head = "| strategy | " + " | ".join(f"at {b} runs" for b in budgets) + \
           f" | runs to {NEAR} | within {NEAR} by {max(budgets)} runs | seconds/seed |"
    print(head)
    print("|" + "---|" * (len(budgets) + 4))
    for strat in strategies:
        rows = [r[strat] for r in results]
        cells = [fmt_dist([r["dist"][b] for r in rows]) for b in budgets]
        firsts = sorted(r["first"] if r["first"] is not None else float("inf") for r in rows)
        med = statistics.median(firsts)
        within = sum(1 for f in firsts if f <= max(budgets))
        name = strat
        if strat == "plan":
            totals = [r["total"] for r in rows]
            name += f" (ends after {min(totals)}-{max(totals)} runs at {fmt_dist([r['dist'][-1] for r in rows])})"
        print(f"| {name} | " + " | ".join(cells) + f" | {'never' if med == float('inf') else int(med)} | "
              f"{within}/{n} | {statistics.mean(r['seconds'] for r in rows):.0f} |")
    if "stack-tune" in strategies:
        worst = {b: sum(1 for r in results if r["stack-tune"]["dist"][b] <= NEAR) for b in budgets}
        print("\nstack-tune within 0.002 after B runs: " + ", ".join(f"B={b}: {k}/{n}" for b, k in worst.items()))


if __name__ == "__main__":
    main()
