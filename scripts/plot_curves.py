"""Learning curves of runs: held-out accuracy and loss of every task after every epoch, from results.json.

    python scripts/plot_curves.py RUN_DIR [RUN_DIR ...] [--out DIR]

A run records its curves when it evaluates after every epoch (`eval.every_epoch=true`, the default).
For each run and task, curves.md (printed too) gives the best held-out accuracy and the step it was
reached, the accuracy at the end, the lowest held-out loss and its step, and the loss at the end: a
held-out loss that rises while accuracy stays flat is a model fitting its training texts without
generalising. curves.png draws accuracy and loss against optimizer steps, one line per run and task.
Both go into --out (default: the first RUN_DIR). Runs are named by their directory; an archived run
(docs/results/..., results.json.gz) reads like the run itself.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nested_learning.analysis.plots import plt  # with the headless backend the project uses
from nested_learning.analysis.results import load_results
from nested_learning.errors import UserError


def task_curves(run_dir: Path) -> list[dict]:
    """Per task of the run: its name and (step, accuracy, loss) after every evaluation, the untrained start left out."""
    record = load_results(run_dir)
    points = [point for point in record.get("curves", []) if point["epoch"] >= 0]
    if not points:
        raise UserError(f"{run_dir}: no learning curve recorded (the run evaluated only at task ends: eval.every_epoch=false)")
    return [{"run": run_dir.name, "task": task,
             "points": [(p["step"], p["accuracy"][j], p["loss"][j]) for p in points]}
            for j, task in enumerate(record["tasks"])]


def table(curves: list[dict]) -> str:
    lines = ["| run | task | best accuracy (step) | accuracy at the end | lowest loss (step) | loss at the end |",
             "|---|---|---|---|---|---|"]
    for curve in curves:
        steps, accs, losses = zip(*curve["points"])
        best = max(range(len(accs)), key=accs.__getitem__)  # the first step that reached it
        low = min(range(len(losses)), key=losses.__getitem__)
        lines.append(f"| {curve['run']} | {curve['task']} | {accs[best]:.3f} ({steps[best]}) | {accs[-1]:.3f} | "
                     f"{losses[low]:.3f} ({steps[low]}) | {losses[-1]:.3f} |")
    return "\n".join(lines) + "\n"


def figure(curves: list[dict]) -> plt.Figure:
    fig, (acc_ax, loss_ax) = plt.subplots(1, 2, figsize=(11, 4))
    several_tasks = len({curve["task"] for curve in curves}) > 1
    for curve in curves:
        steps, accs, losses = zip(*curve["points"])
        label = f"{curve['run']}: {curve['task']}" if several_tasks else curve["run"]
        acc_ax.plot(steps, accs, label=label)
        loss_ax.plot(steps, losses, label=label)
    for ax, what in ((acc_ax, "held-out accuracy"), (loss_ax, "held-out loss (nats)")):
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(what)
        ax.grid(alpha=0.3)
    acc_ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+", type=Path, help="run directories (or archived runs under docs/results/)")
    parser.add_argument("--out", type=Path, help="where curves.md and curves.png go (default: the first RUN_DIR)")
    args = parser.parse_args()
    out = args.out or args.run_dirs[0]
    try:
        curves = [curve for run_dir in args.run_dirs for curve in task_curves(run_dir)]
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    text = table(curves)
    (out / "curves.md").write_text(text)
    figure(curves).savefig(out / "curves.png", dpi=110)
    print(text + f"wrote {out / 'curves.md'}, {out / 'curves.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
