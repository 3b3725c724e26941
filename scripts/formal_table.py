"""NL Table 5's layout from a formal-language sweep (experiment=formal_languages): per model and
language, Bin0 and Bin1 accuracy in %, mean and Student-t 95% interval over seeds, beside the
paper's values, and a heatmap of the means.

    python scripts/formal_table.py SWEEP_DIR [SWEEP_DIR ...] [--metric sequence|token] [--out DIR] [--tune-lr]

Writes formal_table.md and formal_table.png into the first SWEEP_DIR (or --out) and prints the
table. Each run must have trained one language (`task=formal task.language=NAME`); its row of
results.json's `accuracy_matrices[bin][metric]` after that language is the value. The paper's HOPE
is this framework's `hope_nl` (self-modifying Titans followed by CMS); `hope` is the seed's cell.

Runs of one model and language at several learning rates need --tune-lr: for each model and
language family (regular: Parity, (aa)*, (abab)*; counter: a^n b^n, a^n b^n c^n, Shuffle-2), the
rate whose seed-0 runs (`--grid-seed`) have the highest mean Bin0 accuracy over the family's
languages, unless the default rate (`--default-lr`, 1e-3) is within `--margin` points (1.0) of it:
one string of a small Bin0 is not a reason to change the rate. The table then shows every seed at
the chosen rates, and formal_lr_grid.md the grid and the choice.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

from nested_learning.data.formal import LANGUAGES
from nested_learning.errors import UserError
from nested_learning.analysis.plots import plt  # with the headless backend the project uses
from nested_learning.analysis.summary import load_sweep, t_interval

BINS = ("bin0", "bin1")
HEADINGS = {"parity": "Parity", "aa": "(aa)*", "abab": "(abab)*", "anbn": "a^n b^n", "anbncn": "a^n b^n c^n",
            "shuffle2": "Shuffle-2"}
# NL Table 5 (arXiv 2512.24695), sequence accuracy %, (Bin0, Bin1) per language in HEADINGS' order.
PAPER = {
    "rnn": ("LSTM", [(100.0, 100.0)] * 6),
    "transformer": ("Transformer", [(46.4, 0.0), (0.0, 0.0), (0.0, 0.0), (100.0, 100.0), (100.0, 100.0), (100.0, 100.0)]),
    "linear_attention": ("Linear", [(78.1, 0.0), (0.0, 0.0), (0.0, 0.0), (100.0, 100.0), (100.0, 100.0), (100.0, 100.0)]),
    "deltanet": ("DeltaNet", [(98.2, 10.1), (0.0, 0.0), (0.0, 0.0), (100.0, 100.0), (100.0, 100.0), (100.0, 100.0)]),
    "hope_nl": ("HOPE", [(100.0, 100.0)] * 6),
}
FAMILIES = {"regular": ("parity", "aa", "abab"), "counter": ("anbn", "anbncn", "shuffle2")}
MODEL_ORDER = ("rnn", "transformer", "linear_attention", "deltanet", "hope", "titans", "hope_nl", "hope_attention")  # others by name


def collect(sweep_dirs: list[Path], metric: str) -> list[dict]:
    """One record per finished run: model, language, lr, seed, {bin: accuracy %}, Bin0 token accuracy %, epochs."""
    records = []
    for sweep_dir in sweep_dirs:
        sweep = load_sweep(sweep_dir)
        for run in sweep.runs:
            language = run["config"]["task"].get("language")
            if run["config"]["task"].get("_target_", "").rsplit(".", 1)[-1] != "formal_tasks" or not isinstance(language, str):
                raise UserError(f"{run['job']}: not a run of one formal language (task=formal task.language=NAME)")
            records.append({"model": run["model"], "language": language, "lr": float(run["config"]["optimizer"]["lr"]),
                            "seed": run["seed"], "epochs": run["epochs_taken"][0],
                            "accuracy": {split: 100 * run["accuracy_matrices"][split][metric][-1][0] for split in BINS},
                            "bin0_token": 100 * run["accuracy_matrices"]["bin0"]["token"][-1][0]})
        for job, why in sweep.failures:
            print(f"warning: {sweep_dir / job} left out: {why}", file=sys.stderr)
    if not records:
        raise UserError(f"{', '.join(map(str, sweep_dirs))}: no finished run to tabulate")
    return records


def family_of(language: str) -> str:
    return next(name for name, languages in FAMILIES.items() if language in languages)


def choose_rates(records: list[dict], grid_seed: int, default_lr: float, margin: float) -> tuple[dict[tuple[str, str], float], dict]:
    """{(model, family): chosen lr} and {(model, family, lr): (mean Bin0 %, mean Bin0 token %)} from the grid seed's runs."""
    grid: dict[tuple[str, str, float], dict[str, dict]] = {}
    for r in records:
        if r["seed"] == grid_seed:
            grid.setdefault((r["model"], family_of(r["language"]), r["lr"]), {})[r["language"]] = r
    scores = {}
    for (model, family, lr), runs in grid.items():
        wanted = {lg for r in records if r["model"] == model and family_of(r["language"]) == family for lg in [r["language"]]}
        if set(runs) != wanted:
            missing = ", ".join(sorted(wanted - set(runs)))
            raise UserError(f"{model} at lr {lr:g}: no seed-{grid_seed} run of {missing}; the grid needs every language of the {family} family")
        scores[(model, family, lr)] = (float(np.mean([r["accuracy"]["bin0"] for r in runs.values()])),
                                      float(np.mean([r["bin0_token"] for r in runs.values()])))
    chosen = {}
    for model, family in {(m, f) for m, f, _ in scores}:
        rates = sorted(lr for m, f, lr in scores if (m, f) == (model, family))
        best = max(rates, key=lambda lr: (*scores[(model, family, lr)], -lr))
        default = next((lr for lr in rates if math.isclose(lr, default_lr)), None)
        keep = default is not None and scores[(model, family, default)][0] >= scores[(model, family, best)][0] - margin
        chosen[(model, family)] = default if keep else best
    return chosen, scores


def at_one_rate(records: list[dict], tune_lr: bool, grid_seed: int, default_lr: float = 1e-3,
                margin: float = 1.0) -> tuple[list[dict], str | None]:
    """The records the table shows and, with tune_lr, the grid's table; several rates without tune_lr is an error."""
    if not tune_lr:
        for model, language in sorted({(r["model"], r["language"]) for r in records}):
            rates = sorted({r["lr"] for r in records if (r["model"], r["language"]) == (model, language)})
            if len(rates) > 1:
                raise UserError(f"{model} on {language}: runs at learning rates {', '.join(f'{lr:g}' for lr in rates)}; "
                                "pass --tune-lr to choose one per model and language family")
        return records, None
    chosen, scores = choose_rates(records, grid_seed, default_lr, margin)
    models = sorted({m for m, _ in chosen}, key=_model_key)
    rates = sorted({lr for _, _, lr in scores})
    lines = [f"| model | family | " + " | ".join(f"lr {lr:g}" for lr in rates) + " | chosen |", "|" + "---|" * (3 + len(rates))]
    for model in models:
        for family in FAMILIES:
            if (model, family) in chosen:
                cells = [f"{scores[(model, family, lr)][0]:.1f} ({scores[(model, family, lr)][1]:.1f})"
                         if (model, family, lr) in scores else "—" for lr in rates]
                lines.append(f"| `{model}` | {family} | " + " | ".join(cells) + f" | {chosen[(model, family)]:g} |")
    lines += ["", f"Mean Bin0 accuracy (%) over the family's languages, seed {grid_seed}: the table's metric (Bin0 token "
              f"accuracy in brackets). Chosen: the best, unless lr {default_lr:g} is within {margin:g} points of it."]
    kept = [r for r in records if r["lr"] == chosen[(r["model"], family_of(r["language"]))]]
    return kept, "\n".join(lines) + "\n"


def tabulate(records: list[dict]) -> tuple[dict[tuple[str, str, str], list[float]], dict[tuple[str, str], list[int]]]:
    """{(model, language, bin): [accuracy % per seed]} and {(model, language): [epochs taken per seed]}."""
    values: dict[tuple[str, str, str], list[float]] = {}
    epochs: dict[tuple[str, str], list[int]] = {}
    for r in sorted(records, key=lambda r: r["seed"]):
        for split in BINS:
            values.setdefault((r["model"], r["language"], split), []).append(r["accuracy"][split])
        epochs.setdefault((r["model"], r["language"]), []).append(r["epochs"])
    return values, epochs


def _model_key(model: str) -> tuple[int, str]:
    return (MODEL_ORDER.index(model) if model in MODEL_ORDER else len(MODEL_ORDER), model)


def _cell(xs: list[float] | None) -> str:
    if not xs:
        return "—"
    mean, std, low, high = t_interval(xs)
    if math.isnan(low) or std == 0:
        return f"{mean:.1f}"
    return f"{mean:.1f} [{max(low, 0):.1f}, {min(high, 100):.1f}]"


def markdown(values: dict, epochs: dict, metric: str) -> str:
    models = sorted({m for m, _, _ in values}, key=_model_key)
    languages = [lang for lang in LANGUAGES if any(lang == lg for _, lg, _ in values)]
    seeds = sorted({len(v) for v in values.values()})
    head = "| model | " + " | ".join(f"{HEADINGS[lg]} Bin0 | {HEADINGS[lg]} Bin1" for lg in languages) + " |"
    lines = [head, "|" + "---|" * (1 + 2 * len(languages))]
    for model in models:
        cells = [_cell(values.get((model, lg, split))) for lg in languages for split in BINS]
        lines.append(f"| `{model}` | " + " | ".join(cells) + " |")
        if model in PAPER:
            name, paper = PAPER[model]
            by_language = dict(zip(HEADINGS, paper))
            lines.append(f"| paper: {name} | " + " | ".join(f"{by_language[lg][b]:.1f}" for lg in languages for b in (0, 1)) + " |")
    lines += ["", f"{metric} accuracy (%), mean [95% interval, clipped to 0-100] over {'/'.join(map(str, seeds))} seeds "
              "(no interval: every seed gave that value); paper rows: NL Table 5.", "", "Epochs each language took (mean; the cap ends a language that never met the rule):", "",
              "| model | " + " | ".join(HEADINGS[lg] for lg in languages) + " |", "|" + "---|" * (1 + len(languages))]
    for model in models:
        lines.append(f"| `{model}` | " + " | ".join(f"{np.mean(epochs[(model, lg)]):.1f}" if (model, lg) in epochs else "—"
                                                     for lg in languages) + " |")
    return "\n".join(lines) + "\n"


def heatmap(values: dict, metric: str) -> plt.Figure:
    models = sorted({m for m, _, _ in values}, key=_model_key)
    languages = [lang for lang in LANGUAGES if any(lang == lg for _, lg, _ in values)]
    fig, axes = plt.subplots(1, 2, figsize=(2.0 + 1.3 * len(languages) * 2, 0.6 * len(models) + 1.6), constrained_layout=True)
    for ax, split in zip(axes, BINS):
        grid = np.array([[np.mean(values[(m, lg, split)]) if (m, lg, split) in values else np.nan for lg in languages] for m in models])
        image = ax.imshow(grid, vmin=0, vmax=100, cmap="viridis", aspect="auto")
        for (r, c), v in np.ndenumerate(grid):
            if not np.isnan(v):
                ax.text(c, r, f"{v:.0f}", ha="center", va="center", color="white" if v < 60 else "black", fontsize=9)
        ax.set_xticks(range(len(languages)), [HEADINGS[lg] for lg in languages], rotation=30, ha="right")
        ax.set_yticks(range(len(models)), models)
        ax.set_title(f"{split}: {'held-out, training lengths' if split == 'bin0' else 'longer strings'}")
    fig.colorbar(image, ax=axes, label=f"{metric} accuracy (%), mean over seeds")
    return fig


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dirs", type=Path, nargs="+", help="multirun directories (or archives) of experiment=formal_languages")
    parser.add_argument("--metric", choices=("sequence", "token"), default="sequence",
                        help="sequence: a string counts when every position is right (the paper's); token: per position")
    parser.add_argument("--out", type=Path, default=None, help="where formal_table.md/.png go (default: the first SWEEP_DIR)")
    parser.add_argument("--tune-lr", action="store_true", help="choose each model's rate per language family on the grid seed's Bin0")
    parser.add_argument("--grid-seed", type=int, default=0, help="the seed whose runs choose the rates (default 0)")
    parser.add_argument("--default-lr", type=float, default=1e-3, help="the rate kept unless another is better by more than --margin")
    parser.add_argument("--margin", type=float, default=1.0, help="points of mean Bin0 accuracy (default 1.0)")
    args = parser.parse_args()
    try:
        records, grid = at_one_rate(collect(args.sweep_dirs, args.metric), args.tune_lr, args.grid_seed,
                                    args.default_lr, args.margin)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    values, epochs = tabulate(records)
    out = args.out or args.sweep_dirs[0]
    out.mkdir(parents=True, exist_ok=True)
    table = markdown(values, epochs, args.metric)
    (out / "formal_table.md").write_text(table)
    heatmap(values, args.metric).savefig(out / "formal_table.png", dpi=120)
    if grid:
        (out / "formal_lr_grid.md").write_text(grid)
        print(grid)
    print(table)
    print(f"wrote formal_table.md, formal_table.png{', formal_lr_grid.md' if grid else ''} in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
