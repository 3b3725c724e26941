"""ACC and forgetting of every model x strategy of a baselines sweep, with 95% CI error bars.

    python scripts/plot_baselines.py SWEEP_DIR [--out FILE]     # FILE: SWEEP_DIR/baselines.png by default
    python scripts/plot_baselines.py SWEEP_DIR --split bin1      # another evaluation split (or --metric token)

Reads the jobs' results.json through nested_learning.analysis.summary (load_sweep, aggregate): one bar per
group of runs that differ only by seed, at the mean, with its Student-t 95% confidence interval.
Strategies run along the x axis from the lower bound (naive) to the upper bound (joint), one bar
per model. Metrics as in nested_learning/analysis/metrics.py (forgetting: Chaudhry et al. 2018), on the
accuracy the runs chose (eval.split, eval.metric) or the one --split / --metric pick; the title says which.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from nested_learning.errors import UserError
from nested_learning.analysis.plots import plt  # with the headless backend the project uses
from nested_learning.analysis.results import accuracy_shown
from nested_learning.analysis.summary import aggregate, group_runs, load_sweep

METRICS = (("acc", "ACC: mean final accuracy (higher is better)"), ("forgetting", "Forgetting (lower is better)"))
STRATEGY_ORDER = ("naive", "ewc", "lwf", "replay", "joint")  # others follow in name order


def model_strategy_table(sweep_dir: Path, split: str | None = None, metric: str | None = None) -> tuple[pd.DataFrame, list]:
    """The aggregate with a strategy column, and the finished runs."""
    sweep = load_sweep(sweep_dir, split, metric)
    if not sweep.runs:
        raise UserError(f"{sweep_dir}: no finished run to plot")
    table = aggregate(sweep.runs)
    strategy = {label: members[0].get("strategy", {}).get("name", "naive") for label, members in group_runs(sweep.runs).items()}
    table["strategy"] = table["group"].map(strategy)
    if table.duplicated(["model", "strategy"]).any():
        raise UserError(f"{sweep_dir}: its runs vary more than model, strategy and seed; plot a baselines sweep")
    return table, sweep.runs


def baselines_figure(table: pd.DataFrame, runs: list) -> plt.Figure:
    models = list(dict.fromkeys(table["model"]))
    present = set(table["strategy"])
    strategies = [s for s in STRATEGY_ORDER if s in present] + sorted(present - set(STRATEGY_ORDER))
    x = np.arange(len(strategies))
    width = 0.8 / len(models)
    fig, axes = plt.subplots(len(METRICS), 1, figsize=(max(7.0, 1.6 * len(strategies) + 0.25 * len(models) * len(strategies)), 7.5))
    for ax, (metric, title) in zip(axes, METRICS):
        for i, model in enumerate(models):
            rows = table[table["model"] == model].set_index("strategy").reindex(strategies)
            mean = rows[f"{metric}_mean"].to_numpy()
            # no bar for a missing group; no whisker where n < 2 leaves the CI undefined
            below = np.nan_to_num(mean - rows[f"{metric}_ci_low"].to_numpy())
            above = np.nan_to_num(rows[f"{metric}_ci_high"].to_numpy() - mean)
            ax.bar(x + (i - (len(models) - 1) / 2) * width, mean, width, yerr=[below, above], capsize=2, label=model)
        ax.axhline(0.0, color="black", linewidth=0.6)
        ax.set_xticks(x, strategies)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    n = sorted(set(table["n"]))
    seeds = f"{n[0]}" if len(n) == 1 else f"{n[0]}-{n[-1]}"
    fig.suptitle(f"{len(runs)} runs: mean and 95% CI (Student t) over {seeds} seeds per bar\n{accuracy_shown(runs)}", fontsize=10)
    # above the panels, so no bar hides behind it
    fig.legend(*axes[0].get_legend_handles_labels(), loc="upper center", ncol=len(models), fontsize="small",
               bbox_to_anchor=(0.5, 0.925), frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return fig


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dir", type=Path, help="a multirun directory of experiment=baselines")
    parser.add_argument("--out", type=Path, help="where to write the PNG (default: SWEEP_DIR/baselines.png; the figure "
                        "of docs/baselines.md and docs/results.md is docs/baselines.png, replaced only when named here)")
    parser.add_argument("--split", help="evaluation split to read (e.g. bin1 of task=formal); default: each run's eval.split")
    parser.add_argument("--metric", choices=("token", "sequence"), help="accuracy to read; default: each run's eval.metric")
    args = parser.parse_args()
    args.out = args.out or args.sweep_dir / "baselines.png"
    try:
        table, runs = model_strategy_table(args.sweep_dir, args.split, args.metric)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    baselines_figure(table, runs).savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
