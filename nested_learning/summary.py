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


def difference_interval(
    runs_a: list[dict[str, Any]], runs_b: list[dict[str, Any]], metric: str, confidence: float = 0.95
) -> tuple[float, float, float, str]:
    """Mean of metric(a) - metric(b) with its t interval: paired by seed when both have the same seeds."""
    by_seed_a = {r["seed"]: r["metrics"][metric] for r in runs_a}
    by_seed_b = {r["seed"]: r["metrics"][metric] for r in runs_b}
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
