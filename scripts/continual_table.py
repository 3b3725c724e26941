"""The tables of a continual benchmark (every model x every strategy) from its sweep or its archive.

    python scripts/continual_table.py SWEEP_DIR [SWEEP_DIR ...] [--references transformer lstm] [--split bin1] [--out DIR]

docs/continual_text.md, continual_text_classes.md, continual_formal.md and baselines.md show what it
writes for experiment=continual_text, continual_text_classes, continual_formal and baselines. Per strategy, one row per model,
mean and Student-t 95% interval over seeds: LA (learning accuracy, the accuracy matrix's diagonal: was
each task learned?), ACC (its last row), forgetting (Chaudhry), and, where the runs record a baseline,
the weakest task's LA as a multiple of it: its unigram accuracy (task=text_domains, then also the
perplexity at the end) or its majority-class accuracy (task=text_classes; a one-class task, whose
baseline is 1, has nothing to tell apart and is left out of the minimum). Then each model's difference
to every reference model (the Transformer, and the LSTM that the experiments make of `rnn`) in ACC and
forgetting under the same strategy, paired by seed, each strategy's difference to naive fine-tuning,
model by model, and task by task the accuracy right after training it and at the end of the sequence
(mean over seeds). --split reads another evaluation split of the same runs (bin1 of task=formal: the
longer strings). Writes continual_table.md (printed too) and
continual_table.png (ACC against forgetting, one panel per strategy, 95% intervals as bars), named
continual_table_SPLIT.* with --split, into --out (default: the first SWEEP_DIR).
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

from nested_learning.analysis.plots import plt  # with the headless backend the project uses
from nested_learning.analysis.results import accuracy_shown
from nested_learning.analysis.summary import difference_interval, load_sweep, t_interval
from nested_learning.errors import UserError

STRATEGY_ORDER = ("naive", "replay", "joint")
MODEL_ORDER = ("lstm", "rnn", "transformer", "linear_attention", "deltanet", "hope", "cms", "titans", "hope_nl", "hope_attention")
COLUMNS = {"la": "LA", "acc": "ACC", "forgetting": "forgetting"}


def model_name(run: dict) -> str:
    """The model as the tables name it: `rnn` with model.cell=lstm is the LSTM."""
    return "lstm" if run["model"] == "rnn" and run["config"]["model"].get("cell") == "lstm" else run["model"]


def collect(sweep_dirs: list[Path], split: str | None = None) -> dict[tuple[str, str], list[dict]]:
    """{(model, strategy): finished runs in seed order}, read on `split` (None: each run's own);
    unfinished jobs are named on stderr."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for sweep_dir in sweep_dirs:
        sweep = load_sweep(sweep_dir, split=split)
        for job, why in sweep.failures:
            print(f"warning: {sweep_dir / job} left out: {why}", file=sys.stderr)
        for run in sweep.runs:
            groups.setdefault((model_name(run), run["strategy"]["name"]), []).append(run)
    if not groups:
        raise UserError(f"{', '.join(map(str, sweep_dirs))}: no finished run")
    tasks = {tuple(runs[0]["tasks"]) for runs in groups.values()}
    if len(tasks) > 1:
        raise UserError(f"the runs read trained different task sequences: {sorted(tasks)}; give one experiment's runs")
    return {key: sorted(runs, key=lambda r: r["seed"]) for key, runs in groups.items()}


def _order(key: tuple[str, str]) -> tuple:
    model, strategy = key
    return (STRATEGY_ORDER.index(strategy) if strategy in STRATEGY_ORDER else len(STRATEGY_ORDER), strategy,
            MODEL_ORDER.index(model) if model in MODEL_ORDER else len(MODEL_ORDER), model)


def _cell(xs: list[float], signed: bool = False) -> str:
    fmt = "+.3f" if signed else ".3f"
    mean, _, low, high = t_interval(xs)
    return f"{mean:{fmt}}" if math.isnan(low) else f"{mean:{fmt}} [{low:{fmt}}, {high:{fmt}}]"


BASELINES = {"unigram_accuracy": "unigram", "majority_accuracy": "majority class"}  # task_info key -> its name


def baseline_of(groups: dict[tuple[str, str], list[dict]]) -> str | None:
    """The task_info key of the baseline every run records, if any."""
    infos = [run.get("task_info") or {} for runs in groups.values() for run in runs]
    return next((key for key in BASELINES if all(key in info for info in infos)), None)


def weakest_over_baseline(run: dict, key: str) -> float:
    """min over tasks of LA / the task's baseline accuracy (`key` in task_info): how far above always answering the
    most frequent token (or class) the model got on the task it learned worst. Tasks whose baseline is 1 are left out."""
    diagonal = np.diag(np.asarray(run["accuracy_matrix"], float))
    baseline = np.asarray(run["task_info"][key], float)
    return float(np.min(diagonal[baseline < 1] / baseline[baseline < 1]))


def results_table(groups: dict[tuple[str, str], list[dict]]) -> str:
    baseline = baseline_of(groups)
    lm = baseline == "unigram_accuracy"
    head = ["strategy", "model", "n", *COLUMNS.values()] + ([f"weakest LA / {BASELINES[baseline]}"] if baseline else []) + (
        ["perplexity at the end"] if lm else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key in sorted(groups, key=_order):
        runs = groups[key]
        cells = [key[1], f"`{key[0]}`", str(len(runs))]
        cells += [_cell([r["metrics"][m] for r in runs], signed=m == "forgetting") for m in COLUMNS]
        if baseline:
            cells.append(f"{np.mean([weakest_over_baseline(r, baseline) for r in runs]):.1f}x")
        if lm:
            cells.append(f"{np.mean([r['metrics']['ppl'] for r in runs]):.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def differences_table(groups: dict[tuple[str, str], list[dict]], pairs: list[tuple[tuple[str, str], tuple[str, str]]]) -> str:
    """ACC and forgetting of each (model, strategy) minus its counterpart, paired by seed where the seeds match."""
    head = ["strategy", "model", "against", "ACC difference", "forgetting difference", "pairing"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, against in pairs:
        cells = [key[1], f"`{key[0]}`", f"`{against[0]}`" if against[1] == key[1] else against[1]]
        for metric in ("acc", "forgetting"):
            diff, low, high, how = difference_interval(groups[key], groups[against], metric)
            cells.append(f"{diff:+.3f}" if math.isnan(low) else f"{diff:+.3f} [{low:+.3f}, {high:+.3f}]")
        lines.append("| " + " | ".join(cells + [how]) + " |")
    return "\n".join(lines)


def model_pairs(groups: dict[tuple[str, str], list[dict]], references: list[str]) -> list:
    """Every model against each reference model under the same strategy."""
    return [((model, strategy), (reference, strategy)) for reference in references for model, strategy in sorted(groups, key=_order)
            if model != reference and (reference, strategy) in groups]


def strategy_pairs(groups: dict[tuple[str, str], list[dict]], baseline: str = "naive") -> list:
    """Every other strategy against naive fine-tuning, model by model."""
    return [((model, strategy), (model, baseline)) for model, strategy in sorted(groups, key=lambda k: (_order((k[0], ""))[2:], _order(k)))
            if strategy != baseline and (model, baseline) in groups]


def task_by_task_table(groups: dict[tuple[str, str], list[dict]]) -> str:
    """Each task's accuracy right after training it (LA) and at the end of the sequence (the last row), mean over
    seeds: which tasks a model learned, and which of those it kept, so that low forgetting of a task never learned
    is not read as retention."""
    tasks = next(iter(groups.values()))[0]["tasks"]
    lines = ["| strategy | model | " + " | ".join(tasks) + " |", "|" + "---|" * (len(tasks) + 2)]
    for key in sorted(groups, key=_order):
        matrices = [np.asarray(r["accuracy_matrix"], float) for r in groups[key]]
        learned, final = np.mean([np.diag(m) for m in matrices], axis=0), np.mean([m[-1] for m in matrices], axis=0)
        lines.append(f"| {key[1]} | `{key[0]}` | " + " | ".join(f"{a:.3f} / {b:.3f}" for a, b in zip(learned, final)) + " |")
    return "\n".join(lines)


def figure(groups: dict[tuple[str, str], list[dict]]) -> plt.Figure:
    strategies = sorted({strategy for _, strategy in groups}, key=lambda s: _order(("", s)))
    models = sorted({model for model, _ in groups}, key=lambda m: _order((m, "")))
    colours = dict(zip(models, plt.get_cmap("tab10").colors))  # one colour per model in every panel
    fig, axes = plt.subplots(1, len(strategies), figsize=(4.2 * len(strategies), 3.8), sharey=True, squeeze=False)
    for ax, strategy in zip(axes[0], strategies):
        for key in sorted((k for k in groups if k[1] == strategy), key=_order):
            (acc, _, acc_low, _), (fgt, _, fgt_low, _) = (t_interval(r["metrics"][m] for r in groups[key]) for m in ("acc", "forgetting"))
            errors = ([[acc - acc_low]], [[fgt - fgt_low]]) if not math.isnan(acc_low) else (None, None)
            ax.errorbar(acc, fgt, xerr=errors[0], yerr=errors[1], fmt="o", capsize=3, color=colours[key[0]], label=key[0])
        ax.axhline(0.0, color="grey", linewidth=0.8)
        ax.set(title=strategy, xlabel="ACC (final mean accuracy)")
    axes[0][0].set_ylabel("forgetting (Chaudhry)")
    handles = [plt.Line2D([], [], marker="o", linestyle="", color=colours[m], label=m) for m in models]
    fig.legend(handles=handles, loc="center right", fontsize=8)
    fig.tight_layout(rect=(0, 0, 0.87, 1))
    return fig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("sweep_dirs", nargs="+", type=Path, help="multirun directories or their archives (docs/results/...)")
    parser.add_argument("--references", nargs="+", default=["transformer", "lstm"],
                        help="models every other model is compared with (default: transformer lstm)")
    parser.add_argument("--split", help="evaluation split to read (e.g. bin1 of task=formal); default: each run's eval.split")
    parser.add_argument("--out", type=Path, help="where continual_table.md goes (default: the first SWEEP_DIR)")
    args = parser.parse_args(argv)
    try:
        groups = collect(args.sweep_dirs, args.split)
        models = sorted({model for model, _ in groups})
        unknown = [r for r in args.references if r not in models]
        if unknown:
            raise UserError(f"--references {' '.join(unknown)}: no such model in the runs; they have {', '.join(models)}")
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    accuracy = accuracy_shown([run for runs in groups.values() for run in runs])
    text = (f"Accuracy: {accuracy}. Mean [95% interval] over seeds.\n\n{results_table(groups)}\n\n"
            f"Differences (model - reference), mean [95% interval]:\n\n{differences_table(groups, model_pairs(groups, args.references))}\n\n"
            f"Strategies against naive fine-tuning, model by model (strategy - naive):\n\n"
            f"{differences_table(groups, strategy_pairs(groups))}\n\n"
            f"Task by task, mean over seeds: accuracy right after training the task (LA) / at the end of the sequence:\n\n"
            f"{task_by_task_table(groups)}\n")
    out = args.out or args.sweep_dirs[0]
    out.mkdir(parents=True, exist_ok=True)
    name = f"continual_table_{args.split}" if args.split else "continual_table"
    (out / f"{name}.md").write_text(text)
    figure(groups).savefig(out / f"{name}.png", dpi=120)
    print(text)
    print(f"wrote {name}.md, {name}.png in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
