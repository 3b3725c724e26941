"""Per-level CMS diagnostics of a sweep, averaged over the runs that differ only by seed.

For every group of a multirun directory whose runs recorded CMS diagnostics (`model_state` in
results.json: any CMS model, either clock), prints per level the mean number of updates, the mean
norm of the change of its parameters, the mean norm of its in-context change (token clock only),
and the mean cosine similarity between the outputs of each pair of levels on the evaluation data
(averaged over layers). docs/cms_clocks.md shows a real output.

    python scripts/cms_diagnostics.py outputs/multiruns/<time>
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from nested_learning.errors import UserError
from nested_learning.analysis.summary import group_runs, load_sweep


def mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def describe(runs: list[dict]) -> list[str]:
    levels = [run["model_state"]["cms_levels"] for run in runs]
    lines = []
    for i in range(len(levels[0])):
        fast = [lv[i]["fast_change_norm"] for lv in levels if "fast_change_norm" in lv[i]]
        lines.append(
            f"  level {i + 1}: period {levels[0][i]['period']}, updates {mean([lv[i]['updates'] for lv in levels]):.0f}, "
            f"change {mean([lv[i]['change_norm'] for lv in levels]):.3f}"
            + (f", in-context change {mean(fast):.3f}" if fast else "")
        )
    pairs = sorted({key.split("/", 1)[1] for run in runs for key in run["model_state"]["cms_level_cosine"]})
    for pair in pairs:
        values = [v for run in runs for key, v in run["model_state"]["cms_level_cosine"].items() if key.endswith("/" + pair)]
        lines.append(f"  cosine {pair}: {mean(values):+.3f}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dir", type=Path, help="a multirun directory (outputs/multiruns/<time>)")
    args = parser.parse_args()
    try:
        sweep = load_sweep(args.sweep_dir)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    # runs made before the diagnostics lack them
    groups = group_runs([run for run in sweep.runs if "cms_level_cosine" in (run.get("model_state") or {})])
    if not groups:
        print(f"error: {args.sweep_dir}: no finished run recorded CMS diagnostics (model_state.cms_level_cosine)", file=sys.stderr)
        return 2
    for label, runs in groups.items():
        state = runs[0]["model_state"]
        scope = f", state {state['cms_state']}" if state.get("cms_state") else ""
        print(f"{label}  (n={len(runs)}, clock {state.get('cms_clock', 'step')}{scope})")
        print("\n".join(describe(runs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
