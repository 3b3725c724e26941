"""NL Table 5's layout from a formal-language sweep (experiment=formal_languages): per model and
language, Bin0 and Bin1 accuracy in %, mean and Student-t 95% interval over seeds, beside the
paper's values, and a heatmap of the means.

    python scripts/formal_table.py SWEEP_DIR [--metric sequence|token] [--out DIR]

Writes formal_table.md and formal_table.png into SWEEP_DIR (or --out) and prints the table. Each
run must have trained one language (`task=formal task.language=NAME`); its row of results.json's
`accuracy_matrices[bin][metric]` after that language is the value. The paper's HOPE is this
framework's `hope_nl` (self-modifying Titans followed by CMS); `hope` is the seed's cell.
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
MODEL_ORDER = ("rnn", "transformer", "linear_attention", "deltanet", "hope", "titans", "hope_nl", "hope_attention")  # others by name


def collect(sweep_dir: Path, metric: str) -> tuple[dict[tuple[str, str, str], list[float]], dict[tuple[str, str], list[int]]]:
    """{(model, language, bin): [accuracy % per seed]} and {(model, language): [epochs taken per seed]}."""
    sweep = load_sweep(sweep_dir)
    values: dict[tuple[str, str, str], list[float]] = {}
    epochs: dict[tuple[str, str], list[int]] = {}
    for run in sweep.runs:
        language = run["config"]["task"].get("language")
        if run["config"]["task"].get("_target_", "").rsplit(".", 1)[-1] != "formal_tasks" or not isinstance(language, str):
            raise UserError(f"{run['job']}: not a run of one formal language (task=formal task.language=NAME)")
        for split in BINS:
            values.setdefault((run["model"], language, split), []).append(100 * run["accuracy_matrices"][split][metric][-1][0])
        epochs.setdefault((run["model"], language), []).append(run["epochs_taken"][0])
    if not values:
        raise UserError(f"{sweep_dir}: no finished run to tabulate")
    for job, why in sweep.failures:
        print(f"warning: {job} left out: {why}", file=sys.stderr)
    return values, epochs


def _cell(xs: list[float] | None) -> str:
    if not xs:
        return "—"
    mean, std, low, high = t_interval(xs)
    if math.isnan(low) or std == 0:
        return f"{mean:.1f}"
    return f"{mean:.1f} [{max(low, 0):.1f}, {min(high, 100):.1f}]"


def markdown(values: dict, epochs: dict, metric: str) -> str:
    models = sorted({m for m, _, _ in values}, key=lambda m: (MODEL_ORDER.index(m) if m in MODEL_ORDER else len(MODEL_ORDER), m))
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
    models = sorted({m for m, _, _ in values}, key=lambda m: (MODEL_ORDER.index(m) if m in MODEL_ORDER else len(MODEL_ORDER), m))
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
    parser.add_argument("sweep_dir", type=Path, help="a multirun directory of experiment=formal_languages")
    parser.add_argument("--metric", choices=("sequence", "token"), default="sequence",
                        help="sequence: a string counts when every position is right (the paper's); token: per position")
    parser.add_argument("--out", type=Path, default=None, help="where formal_table.md/.png go (default: SWEEP_DIR)")
    args = parser.parse_args()
    try:
        values, epochs = collect(args.sweep_dir, args.metric)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = args.out or args.sweep_dir
    out.mkdir(parents=True, exist_ok=True)
    table = markdown(values, epochs, args.metric)
    (out / "formal_table.md").write_text(table)
    heatmap(values, args.metric).savefig(out / "formal_table.png", dpi=120)
    print(table)
    print(f"wrote formal_table.md, formal_table.png in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
