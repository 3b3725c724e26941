"""Summarise a sweep: mean, std and 95% CI of ACC, BWT, FWT and forgetting over seeds.

    python scripts/summarize.py SWEEP_DIR [--axes rates.fast rates.slow] [--reference transformer]
    python scripts/summarize.py SWEEP_DIR --split bin1 [--metric token]   # another split or accuracy
    python scripts/summarize.py docs/results/EXPERIMENT --out DIR         # an archive, read where it is

Reads every job's results.json under SWEEP_DIR (a multirun directory), groups the runs that differ
only by seed, prints the table and writes summary.csv, summary.md (with
learning accuracy per task: the accuracy matrix's diagonal) and, over two rate axes (given,
or the first two rates that vary), summary_heatmap.png (summary_scatter.png when the runs do not
form a grid, as sampled by Optuna). With --reference MODEL it also reports each
other model's difference to MODEL under the same settings (--reference optimizer=adam: each other
optimizer's difference to Adam, per model), with its 95% CI (paired by seed when the
seeds match). Failed or unfinished jobs are listed, never fatal. The same summary is written at the
end of every multirun.

Every run measures each evaluation split with each accuracy (token and sequence); the summary reads
the runs' own choice (eval.split, eval.metric) unless --split / --metric pick another, whose files are
then named after it (summary_bin1.md, summary_bin1_token.csv, ...) beside the sweep's own summary.
--out writes every file into another directory instead, so that an archive (docs/results/...) stays as
committed.
"""
import argparse
import sys
from pathlib import Path

from nested_learning.errors import UserError
from nested_learning.analysis.report import make_console, print_comparison
from nested_learning.analysis.summary import load_sweep, missing_reference, write_summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dir", type=Path, help="a multirun directory (outputs/multiruns/<time>)")
    parser.add_argument("--axes", nargs=2, metavar=("X", "Y"), help="two config keys for the heatmap, e.g. rates.fast rates.slow")
    parser.add_argument("--reference", metavar="MODEL", help="model name to compare every other model against, or one "
                        "override KEY=OPTION (e.g. optimizer=adam, cms_arm=step) to compare every other option against")
    parser.add_argument("--split", help="evaluation split to read (e.g. bin1 of task=formal); default: each run's eval.split")
    parser.add_argument("--metric", choices=("token", "sequence"), help="accuracy to read; default: each run's eval.metric")
    parser.add_argument("--out", type=Path, help="where the files go (default: SWEEP_DIR)")
    args = parser.parse_args()
    name = "_".join(["summary"] + [choice for choice in (args.split, args.metric) if choice])
    try:
        sweep = load_sweep(args.sweep_dir, args.split, args.metric)
        missing = missing_reference(sweep.runs, args.reference) if args.reference else None
        if missing:
            raise UserError(f"--reference {args.reference}: {missing}")
        print_comparison(sweep.runs, sweep.failures, make_console())
        written = write_summary(args.sweep_dir, sweep, tuple(args.axes) if args.axes else None, args.reference, name, args.out)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
