"""A study's PNG plots.

    history.png        Optuna's optimisation history (each complete trial's mean BPB, the best
                       feasible so far; infeasible trials marked), optuna.visualization.matplotlib
    importance.png     Optuna's parameter importances (fANOVA, else PED-ANOVA), tune studies with
                       three complete trials or more
    bpb_vs_steps.png   each run's BPB against the steps it did (the 12 best configurations)
    distribution.png   BPB per configuration, one dot per seed
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any


def write_plots(study: Any, rows: list[Any], out_dir: Path, ranked: list[Any]) -> list[str]:
    """Write the plots that have data; return their paths. ``ranked``: the rows best first."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as ovm

    written: list[str] = []
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if complete:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ax = ovm.plot_optimization_history(study, target_name="val_bpb (round trip)")
        written.append(_save(ax.figure, out_dir / "history.png"))

    runs = [run for row in rows for run in row.runs if run.status == "complete"]
    if runs:
        fig, ax = plt.subplots(figsize=(7, 4))
        for row in ranked[:12]:
            pts = [(r.steps, r.val_bpb) for r in row.runs if r.status == "complete" and r.steps]
            if pts:
                ax.scatter(*zip(*pts), s=18, label=row.label[:30])
        ax.set_xlabel("steps done")
        ax.set_ylabel("val_bpb")
        ax.set_title("BPB against steps done")
        ax.legend(fontsize=7, ncol=2)
        written.append(_save(fig, out_dir / "bpb_vs_steps.png"))

        shown = [r for r in ranked if r.values][:30]
        fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(shown) + 2), 4))
        ax.boxplot([r.values for r in shown], showfliers=False)
        for i, r in enumerate(shown, 1):
            ax.scatter([i] * len(r.values), r.values, s=10, color="black", zorder=3)
        ax.set_xticks(range(1, len(shown) + 1), [r.label[:18] for r in shown], rotation=60, ha="right", fontsize=7)
        ax.set_ylabel("val_bpb")
        ax.set_title("BPB per configuration (each dot a seed)")
        written.append(_save(fig, out_dir / "distribution.png"))

    ax = importance_plot(study, complete)
    if ax is not None:
        written.append(_save(ax.figure, out_dir / "importance.png"))
    return written


def importance_plot(study: Any, complete: list[Any]) -> Any:
    """Optuna's importance plot over the complete trials (None when it cannot be computed)."""
    import optuna
    from optuna.visualization import matplotlib as ovm

    if len([t for t in complete if t.params]) < 3:
        return None
    for evaluator in (None, optuna.importance.PedAnovaImportanceEvaluator()):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return ovm.plot_param_importances(study, evaluator=evaluator)
        except Exception:  # noqa: BLE001 - conditional params, too few distinct values: try the next, else no plot
            import matplotlib.pyplot as plt

            plt.close("all")
    return None


def _save(fig: Any, path: Path) -> str:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)
