"""NL Table 6's ablation layout for `hope_nl` on one formal language: one row per variant, Bin0 and Bin1
sequence accuracy in %, mean and Student-t 95% interval over seeds, and each seed's values.

    python scripts/ablation_table.py SWEEP_DIR [SWEEP_DIR ...] [--language parity] [--lr 0.001] [--out DIR]

Reads every finished `hope_nl` run of the language at the learning rate from the sweep directories or
their archives (docs/results/...), and names each variant by the model settings in which it differs
from conf/model/hope_nl.yaml, among the settings that differ between the runs read (so the dropout
that experiment=formal_languages sets for every run names none). Writes ablation_table.md into --out
(default: the first SWEEP_DIR) and prints it. docs/formal_languages.md ("Table 6-style ablation on
Parity") shows the table made from its archives.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from formal_table import BINS, _cell
from nested_learning.errors import UserError
from nested_learning.analysis.summary import load_sweep

DEFAULTS = Path(__file__).resolve().parents[1] / "conf" / "model" / "hope_nl.yaml"
# Table 6's rows in its order, by the settings that make them (the paper's name for each).
ROWS = {
    "": "HOPE (chunk 16)",
    "inner_rule=gd": "w/o DGD (plain GD)",
    "momentum=0.9": "with momentum 0.9 (default: none)",
    "weight_decay=False": "w/o weight decay (alpha = 1)",
    "periods=[1]": "w/o CMS (one MLP, every step)",
    "static=['k']": "w/o inner projection k (static)",
    "static=['v']": "w/o inner projection v (static)",
    "chunk_size=1": "chunk 1",
    "chunk_size=4": "chunk 4",
    "chunk_size=1 inner_rule=gd": "chunk 1 w/o DGD",
}


def variants(sweep_dirs: list[Path], language: str, lr: float) -> dict[str, list[dict]]:
    """{variant label: runs in seed order}; the label lists the model settings that set the variant apart."""
    runs = []
    for sweep_dir in sweep_dirs:
        sweep = load_sweep(sweep_dir)
        runs += [r for r in sweep.runs if r["model"] == "hope_nl" and r["config"]["task"].get("language") == language
                 and float(r["config"]["optimizer"]["lr"]) == lr]
        for job, why in sweep.failures:
            print(f"warning: {sweep_dir / job} left out: {why}", file=sys.stderr)
    if not runs:
        raise UserError(f"{', '.join(map(str, sweep_dirs))}: no finished hope_nl run of {language} at lr {lr:g}")
    defaults = OmegaConf.to_container(OmegaConf.load(DEFAULTS))
    settings = [r["config"]["model"] for r in runs]
    varying = [key for key in defaults if len({repr(s.get(key, defaults[key])) for s in settings}) > 1]
    groups: dict[str, list[dict]] = {}
    for run, model in zip(runs, settings):
        label = " ".join(f"{key}={model.get(key, defaults[key])}" for key in varying if model.get(key, defaults[key]) != defaults[key])
        groups.setdefault(label, []).append(run)
    for label, members in groups.items():
        seeds = [r["seed"] for r in members]
        if len(set(seeds)) != len(seeds):
            raise UserError(f"hope_nl {label or 'default'}: seed {max(seeds, key=seeds.count)} twice; give each run once")
        members.sort(key=lambda r: r["seed"])
    return groups


def markdown(groups: dict[str, list[dict]], language: str) -> str:
    order = [label for label in ROWS if label in groups] + sorted(set(groups) - set(ROWS))
    lines = ["| variant | settings | Bin0 | Bin1 | Bin0 per seed | Bin1 per seed | epochs |", "|---|---|---|---|---|---|---|"]
    for label in order:
        runs = groups[label]
        accuracy = {split: [100 * r["accuracy_matrices"][split]["sequence"][-1][0] for r in runs] for split in BINS}
        per_seed = {split: ", ".join(f"{a:.1f}" for a in accuracy[split]) for split in BINS}
        lines.append(f"| {ROWS.get(label, label)} | `{label or 'defaults'}` | {_cell(accuracy['bin0'])} | {_cell(accuracy['bin1'])} "
                     f"| {per_seed['bin0']} (seeds {', '.join(str(r['seed']) for r in runs)}) | {per_seed['bin1']} "
                     f"| {np.mean([r['epochs_taken'][0] for r in runs]):.1f} |")
    lines += ["", f"`hope_nl` on {language}: sequence accuracy (%), mean [95% interval, clipped to 0-100] over the seeds named "
              "(no interval: one seed, or every seed gave that value); epochs: mean epochs taken."]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dirs", type=Path, nargs="+", help="multirun directories (or archives) of experiment=formal_languages")
    parser.add_argument("--language", default="parity", help="the language whose runs are read (default parity)")
    parser.add_argument("--lr", type=float, default=1e-3, help="the learning rate whose runs are read (default 0.001)")
    parser.add_argument("--out", type=Path, default=None, help="where ablation_table.md goes (default: the first SWEEP_DIR)")
    args = parser.parse_args()
    try:
        table = markdown(variants(args.sweep_dirs, args.language, args.lr), args.language)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = args.out or args.sweep_dirs[0]
    out.mkdir(parents=True, exist_ok=True)
    (out / "ablation_table.md").write_text(table)
    print(table, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
