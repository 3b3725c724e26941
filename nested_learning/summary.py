"""Aggregate the runs of a sweep: group runs that differ only by seed, mean / std / 95% CI per group."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd
from scipy import stats

from nested_learning.errors import UserError
from nested_learning.results import RESULTS_FILE, load_results

METRICS = ("acc", "bwt", "fwt", "forgetting")


@dataclass
class Sweep:
    runs: list[dict[str, Any]] = field(default_factory=list)  # complete results
    failures: list[tuple[str, str]] = field(default_factory=list)  # (job dir, why)


def _job_order(job: Path) -> tuple[int, str]:
    number = job.name.split("_", 1)[0]
    return (int(number) if number.isdigit() else 1 << 30, job.name)


def load_sweep(sweep_dir: str | Path) -> Sweep:
    """Every job directory under a multirun directory; unfinished or failed jobs are listed, not fatal."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise UserError(f"{sweep_dir}: not a directory; give a multirun directory (outputs/multiruns/...)")
    jobs = sorted(
        (p for p in sweep_dir.iterdir() if p.is_dir() and ((p / ".hydra").is_dir() or (p / RESULTS_FILE).is_file())),
        key=_job_order,
    )
    if not jobs:
        raise UserError(f"{sweep_dir}: no job directories (with .hydra/ or {RESULTS_FILE}) inside; is it a multirun directory?")
    sweep = Sweep()
    for job in jobs:
        if not (job / RESULTS_FILE).is_file():
            sweep.failures.append((job.name, "no results.json (crashed before the first task ended, or still running)"))
            continue
        try:
            result = load_results(job)
        except UserError as err:
            sweep.failures.append((job.name, str(err)))
            continue
        if result.get("status") != "complete":
            sweep.failures.append((job.name, f"status {result.get('status')}: {result.get('error') or 'unfinished'}"))
            continue
        result["job"] = job.name
        sweep.runs.append(result)
    return sweep


def group_label(result: dict[str, Any]) -> str:
    """The run's command-line overrides minus the seed: runs with equal labels differ only by seed."""
    kept = [o for o in result.get("overrides", []) if not o.split("=", 1)[0].lstrip("+~") == "seed"]
    if not any(o.startswith("model=") for o in kept):
        kept.insert(0, f"model={result['model']}")
    return " ".join(kept)


def short_labels(labels: list[str]) -> dict[str, str]:
    """Drop the overrides every label shares (e.g. experiment=seed): what is left tells groups apart."""
    common = set.intersection(*(set(label.split()) for label in labels)) if len(labels) > 1 else set()
    return {label: " ".join(o for o in label.split() if o not in common) or label for label in labels}


def t_interval(values: Iterable[float], confidence: float = 0.95) -> tuple[float, float, float, float]:
    """(mean, sample std, CI low, CI high) with Student's t; std and CI are NaN for n < 2."""
    x = np.asarray([v for v in values if v is not None], dtype=float)
    if len(x) == 0:
        return (math.nan,) * 4
    mean = float(x.mean())
    if len(x) < 2:
        return mean, math.nan, math.nan, math.nan
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, len(x) - 1)) * std / math.sqrt(len(x))
    return mean, std, mean - half, mean + half


def aggregate(runs: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per group: n, seeds and mean/std/ci_low/ci_high of every metric."""
    rows = []
    groups: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault(group_label(run), []).append(run)
    for label, members in groups.items():
        row: dict[str, Any] = {"group": label, "model": members[0]["model"], "n": len(members)}
        row["seeds"] = ",".join(str(r["seed"]) for r in sorted(members, key=lambda r: r["seed"]))
        for metric in METRICS:
            mean, std, low, high = t_interval(r["metrics"][metric] for r in members)
            row.update({f"{metric}_mean": mean, f"{metric}_std": std, f"{metric}_ci_low": low, f"{metric}_ci_high": high})
        rows.append(row)
    return pd.DataFrame(rows)


def format_mean_ci(row: Any, metric: str) -> str:
    """"mean ± std [CI low, CI high]" of one aggregated metric (the mean alone for n = 1)."""
    mean, std, low, high = (row[f"{metric}_{s}"] for s in ("mean", "std", "ci_low", "ci_high"))
    fmt = ".3f" if metric == "acc" else "+.3f"
    if row["n"] < 2:
        return f"{mean:{fmt}}"
    return f"{mean:{fmt}} ± {std:.3f} [{low:{fmt}}, {high:{fmt}}]"


def readable(table: pd.DataFrame) -> pd.DataFrame:
    """The aggregate as a reader wants it: short group labels, one "mean ± std [CI]" cell per metric."""
    labels = short_labels(list(table["group"]))
    out = pd.DataFrame({"runs": [labels[g] for g in table["group"]], "n": table["n"], "seeds": table["seeds"]})
    for metric in METRICS:
        out[metric.upper() if metric != "forgetting" else "Forgetting"] = [format_mean_ci(row, metric) for _, row in table.iterrows()]
    return out


def difference_interval(
    runs_a: list[dict[str, Any]], runs_b: list[dict[str, Any]], metric: str, confidence: float = 0.95
) -> tuple[float, float, float, str]:
    """Mean of metric(a) - metric(b) with its t interval: paired by seed when both have the same seeds."""
    # A metric is None where it is undefined (BWT, FWT and forgetting of a one-task run).
    by_seed_a = {r["seed"]: r["metrics"][metric] for r in runs_a if r["metrics"][metric] is not None}
    by_seed_b = {r["seed"]: r["metrics"][metric] for r in runs_b if r["metrics"][metric] is not None}
    if not by_seed_a or not by_seed_b:
        return math.nan, math.nan, math.nan, "undefined"
    if set(by_seed_a) == set(by_seed_b) and len(by_seed_a) >= 2:
        mean, _, low, high = t_interval(by_seed_a[s] - by_seed_b[s] for s in by_seed_a)
        return mean, low, high, "paired by seed"
    a, b = np.asarray(list(by_seed_a.values()), float), np.asarray(list(by_seed_b.values()), float)
    mean = float(a.mean() - b.mean())
    if len(a) < 2 or len(b) < 2:
        return mean, math.nan, math.nan, "n < 2"
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1)) if se > 0 else len(a) + len(b) - 2
    half = float(stats.t.ppf(0.5 + confidence / 2, dof)) * se
    return mean, mean - half, mean + half, "Welch"


def config_value(result: dict[str, Any], dotted: str) -> Any:
    node: Any = result.get("config", {})
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def varying_rate_axes(runs: list[dict[str, Any]]) -> list[str]:
    """The rates.* keys that take more than one value across the runs, in track order."""
    names = list((runs[0].get("config", {}).get("rates") or {}).keys()) if runs else []
    return [f"rates.{n}" for n in names if len({config_value(r, f"rates.{n}") for r in runs}) > 1]


def axis_table(runs: list[dict[str, Any]], x: str, y: str, metric: str) -> pd.DataFrame:
    """Mean of a metric over every run at each (y, x) point, averaged over all other axes and seeds."""
    frame = pd.DataFrame(
        {"x": [config_value(r, x) for r in runs], "y": [config_value(r, y) for r in runs], "v": [r["metrics"][metric] for r in runs]}
    )
    if frame["x"].isna().any() or frame["y"].isna().any():
        raise UserError(f"--axes {x} {y}: not every run has both keys in its config")
    return frame.pivot_table(index="y", columns="x", values="v", aggfunc="mean").sort_index(ascending=False)


def reference_differences(runs: list[dict[str, Any]], reference: str) -> pd.DataFrame:
    """For each group, the difference of every metric to the reference group with the same settings otherwise.

    `reference` is a model name (the groups of that model), or one override `key=value` (the groups
    whose label holds it, e.g. `cms_arm=step`); "otherwise" ignores that key (and the model, which
    such a key may set, as the arms of experiment=cms_clocks do).
    """
    key, value = reference.split("=", 1) if "=" in reference else ("model", reference)

    def bare(override: str) -> str:  # "+cms_arm=step" -> "cms_arm=step"
        return override.lstrip("+~")

    # Settings other than the reference key; with `key=value` the model too, which such a key may choose.
    ignored = {key, "model"}

    def rest(label: str) -> str:
        return " ".join(o for o in label.split() if bare(o).split("=", 1)[0] not in ignored)

    def is_reference(label: str, members: list[dict[str, Any]]) -> bool:
        return members[0]["model"] == value if key == "model" else f"{key}={value}" in map(bare, label.split())

    groups: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault(group_label(run), []).append(run)
    rows = []
    for label, members in groups.items():
        if is_reference(label, members):
            continue
        refs = [g for g, m in groups.items() if is_reference(g, m) and rest(g) == rest(label)]
        if not refs:
            continue
        row: dict[str, Any] = {"group": label, "reference": refs[0]}
        for metric in METRICS:
            diff, low, high, how = difference_interval(members, groups[refs[0]], metric)
            row.update({f"{metric}_diff": diff, f"{metric}_ci_low": low, f"{metric}_ci_high": high})
        row["pairing"] = how
        rows.append(row)
    return pd.DataFrame(rows)


def write_summary(
    sweep_dir: str | Path, sweep: Sweep, axes: tuple[str, str] | None = None, reference: str | None = None
) -> list[Path]:
    """summary.csv, summary.md and (with two rate axes) summary_heatmap.png in the sweep directory."""
    from nested_learning.plots import sweep_heatmap_figure

    sweep_dir = Path(sweep_dir)
    written = []
    table = aggregate(sweep.runs) if sweep.runs else pd.DataFrame()
    table.to_csv(sweep_dir / "summary.csv", index=False)
    written.append(sweep_dir / "summary.csv")
    lines = [f"# Summary of {sweep_dir.name}", "", f"{len(sweep.runs)} finished runs, {len(sweep.failures)} failed or unfinished.", ""]
    lines += ["Mean, sample std and 95% confidence interval (Student t) over runs that differ only by seed;",
              "metrics as defined in nested_learning/metrics.py (forgetting: Chaudhry et al. 2018).", ""]
    if not table.empty:
        lines += [readable(table).to_markdown(index=False), ""]
    if reference and sweep.runs:
        diffs = reference_differences(sweep.runs, reference)
        if not diffs.empty:
            diffs.to_csv(sweep_dir / "summary_vs_reference.csv", index=False)
            written.append(sweep_dir / "summary_vs_reference.csv")
            labels = short_labels(list(diffs["group"]) + list(diffs["reference"]))
            shown = pd.DataFrame({"runs": [labels[g] for g in diffs["group"]], "minus": [labels[g] for g in diffs["reference"]]})
            for metric in METRICS:
                shown[metric] = [
                    f"{r[f'{metric}_diff']:+.3f} [{r[f'{metric}_ci_low']:+.3f}, {r[f'{metric}_ci_high']:+.3f}]" for _, r in diffs.iterrows()
                ]
            shown["pairing"] = diffs["pairing"]
            named = reference if "=" in reference else f"model={reference}"
            lines += [f"## Difference to {named}, same settings otherwise (95% CI)", "", shown.to_markdown(index=False), ""]
    if sweep.failures:
        lines += ["## Failed or unfinished jobs", ""] + [f"- `{job}`: {why}" for job, why in sweep.failures] + [""]
    axes = axes or tuple(varying_rate_axes(sweep.runs)[:2]) or None
    if axes and len(axes) == 2 and sweep.runs:
        figure = sweep_heatmap_figure(
            {m: axis_table(sweep.runs, axes[0], axes[1], m) for m in ("forgetting", "acc")}, axes[0], axes[1]
        )
        figure.savefig(sweep_dir / "summary_heatmap.png", dpi=110)
        written.append(sweep_dir / "summary_heatmap.png")
        lines += [f"![forgetting and ACC over {axes[0]} x {axes[1]}](summary_heatmap.png)", ""]
    (sweep_dir / "summary.md").write_text("\n".join(lines))
    written.append(sweep_dir / "summary.md")
    return written
