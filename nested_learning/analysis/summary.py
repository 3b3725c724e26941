"""Aggregate the runs of a sweep: group runs that differ only by seed, mean / std / 95% CI per group."""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd
from scipy import stats

from nested_learning.errors import FAILURE_LOG, UserError
from nested_learning.analysis.metrics import learning_accuracy
from nested_learning.cli.overrides import override_key
from nested_learning.analysis.results import RESULTS_FILE, accuracy_shown, load_results, results_path, with_accuracy

METRICS = ("acc", "bwt", "fwt", "forgetting")  # the tables' columns
# summary.csv also has learning accuracy (the accuracy matrix's diagonal): was each task learned at all?
# And perplexity at the end, exp of the final row's mean loss (real text: data/text.py).
AGGREGATED = (*METRICS, "la", "ppl")
log = logging.getLogger(__name__)


@dataclass
class Sweep:
    runs: list[dict[str, Any]] = field(default_factory=list)  # complete results
    failures: list[tuple[str, str]] = field(default_factory=list)  # (job dir, why)


def _job_order(job: Path) -> tuple[int, str]:
    number = job.name.split("_", 1)[0]
    return (int(number) if number.isdigit() else 1 << 30, job.name)


def load_sweep(sweep_dir: str | Path, split: str | None = None, metric: str | None = None) -> Sweep:
    """Every job directory under a multirun directory; unfinished or failed jobs are listed, not fatal.

    split / metric: read every run's accuracy on that evaluation split / with that accuracy (token or
    sequence) instead of its own `eval.split` / `eval.metric` (results.with_accuracy).
    """
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise UserError(f"{sweep_dir}: not a directory; give a multirun directory (outputs/multiruns/...)")
    jobs = sorted(
        (p for p in sweep_dir.iterdir() if p.is_dir() and ((p / ".hydra").is_dir() or results_path(p) is not None)),
        key=_job_order,
    )
    if not jobs:
        raise UserError(f"{sweep_dir}: no job directories (with .hydra/ or {RESULTS_FILE}) inside; is it a multirun directory?")
    sweep = Sweep()
    for job in jobs:
        if results_path(job) is None:
            sweep.failures.append((job.name, logged_failure(job) or
                                   "no results.json (crashed before the first task ended, or still running)"))
            continue
        try:
            result = load_results(job)
        except UserError as err:
            sweep.failures.append((job.name, str(err)))
            continue
        if result.get("status") != "complete":
            sweep.failures.append((job.name, f"status {result.get('status')}: {result.get('error') or 'unfinished'}"))
            continue
        if split or metric:
            try:
                result = with_accuracy(result, split, metric)
            except UserError as err:
                raise UserError(f"{job.name}: {err}") from None
        result["job"] = job.name
        if "la" not in result.get("metrics", {}) and result.get("accuracy_matrix"):
            result["metrics"]["la"] = learning_accuracy(result["accuracy_matrix"])  # written before LA was recorded
        sweep.runs.append(result)
    return sweep


def logged_failure(job: Path) -> str | None:
    """The error a failed job logged (train.py, FAILURE_LOG) as the last such line of its train.log, if any."""
    marker = f"[{FAILURE_LOG}][ERROR] - "
    try:
        lines = (job / "train.log").read_text(errors="replace").splitlines()
    except OSError:
        return None
    return next((line.split(marker, 1)[1] for line in reversed(lines) if marker in line), None)


def _short_number(override: str) -> str:
    """key=0.6841694527491273 -> key=0.6842: Optuna's sampled values, readable in every report."""
    key, sep, value = override.partition("=")
    try:
        number = float(value)
    except ValueError:
        return override
    return f"{key}={number:.4g}" if sep and "." in value and len(value) > 6 else override


# Overrides that say where or how a run was launched, not what was trained (conf/config.yaml leaves the
# same ones out of job directory names): runs differing only in them are one setting.
NOT_SETTINGS = ("seed", "paths.output_root", "hydra.launcher.n_jobs", "resume")


def setting_label(result: dict[str, Any]) -> str:
    """The run's command-line overrides minus the seed and NOT_SETTINGS (floats to 4 significant
    digits): runs with equal labels differ only by seed."""
    kept = [_short_number(o) for o in result.get("overrides", []) if override_key(o) not in NOT_SETTINGS]
    if not any(o.startswith("model=") for o in kept):
        kept.insert(0, f"model={result['model']}")
    return " ".join(kept)


def short_labels(labels: list[str]) -> dict[str, str]:
    """Drop the overrides every label shares (e.g. experiment=fair): what is left tells groups apart.

    The model is always named, so a sweep of one group still says what ran.
    """
    common = set.intersection(*(set(label.split()) for label in labels)) if labels else set()
    return {label: " ".join(o for o in label.split() if o not in common or o.startswith("model=")) for label in labels}


def group_runs(runs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Runs that differ only by seed, keyed by the label every report shows (console, summary.md, CSVs)."""
    by_setting: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        by_setting.setdefault(setting_label(run), []).append(run)
    labels = short_labels(list(by_setting))
    return {labels[setting]: members for setting, members in by_setting.items()}


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


# Where each metric can lie: a confidence interval is clipped to it (a t interval of accuracies
# near 1 at n = 2 otherwise runs past 1).
METRIC_RANGE = {"acc": (0.0, 1.0), "bwt": (-1.0, 1.0), "fwt": (-1.0, 1.0), "forgetting": (-1.0, 1.0), "la": (0.0, 1.0),
                "ppl": (1.0, math.inf)}
CLIPPED_NOTE = "95% intervals clipped to the metric's range ([0, 1] for ACC, [-1, 1] for the others)"


def pareto_front(points: list[tuple[float, float]]) -> list[bool]:
    """For (ACC, forgetting) points: True where no other point has higher-or-equal ACC and lower-or-equal
    forgetting with one of them strict. NaN points are never on the front."""
    def dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
        return a[0] >= b[0] and a[1] <= b[1] and (a[0] > b[0] or a[1] < b[1])

    finite = [not any(math.isnan(v) for v in p) for p in points]
    return [
        ok and not any(dominates(q, p) for j, q in enumerate(points) if j != i and finite[j])
        for i, (p, ok) in enumerate(zip(points, finite))
    ]


def aggregate(runs: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per group: n, seeds, mean/std/ci_low/ci_high of every metric, and whether it is on the
    Pareto front of (mean ACC up, mean forgetting down)."""
    rows = []
    for label, members in group_runs(runs).items():
        row: dict[str, Any] = {"group": label, "model": members[0]["model"], "n": len(members)}
        row["seeds"] = ",".join(str(r["seed"]) for r in sorted(members, key=lambda r: r["seed"]))
        for metric in AGGREGATED:
            mean, std, low, high = t_interval(r["metrics"].get(metric) for r in members)
            bottom, top = METRIC_RANGE[metric]
            low, high = (max(low, bottom), min(high, top)) if not math.isnan(low) else (low, high)
            row.update({f"{metric}_mean": mean, f"{metric}_std": std, f"{metric}_ci_low": low, f"{metric}_ci_high": high})
        rows.append(row)
    table = pd.DataFrame(rows)
    table["pareto"] = pareto_front(list(zip(table["acc_mean"], table["forgetting_mean"])))
    return table


def _task_columns(tasks: list[str]) -> list[str]:
    """Task names, numbered by position when a sequence visits a task twice (each visit is its own column)."""
    return tasks if len(set(tasks)) == len(tasks) else [f"{i + 1}:{name}" for i, name in enumerate(tasks)]


def learning_accuracy_per_task(runs: list[dict[str, Any]]) -> pd.DataFrame:
    """Each group's accuracy on every task right after training it (the accuracy matrix's diagonal),
    mean over seeds: where LA is low, which task was never learned. One column per task, in sequence
    order; a task a group's runs did not train is empty."""
    rows = []
    for label, members in group_runs(runs).items():
        diagonals = [dict(zip(_task_columns(r["tasks"]), np.diag(np.asarray(r["accuracy_matrix"], float)))) for r in members]
        names = list(dict.fromkeys(name for diagonal in diagonals for name in diagonal))
        row: dict[str, Any] = {"runs": label, "n": len(members)}
        row.update({name: float(np.mean([d[name] for d in diagonals if name in d])) for name in names})
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
    """The aggregate as a reader wants it: one "mean ± std [CI]" cell per metric, Pareto groups marked."""
    out = pd.DataFrame({"runs": table["group"], "n": table["n"], "seeds": table["seeds"]})
    for metric in METRICS:
        out[metric.upper() if metric != "forgetting" else "Forgetting"] = [format_mean_ci(row, metric) for _, row in table.iterrows()]
    if len(table) > 2:
        out["Pareto (ACC up, forgetting down)"] = ["yes" if p else "" for p in table["pareto"]]
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


def check_axes(runs: list[dict[str, Any]], x: str, y: str) -> None:
    if any(config_value(r, key) is None for r in runs for key in (x, y)):
        raise UserError(f"--axes {x} {y}: not every run has both keys in its config")


def axis_table(runs: list[dict[str, Any]], x: str, y: str, metric: str) -> pd.DataFrame:
    """Mean of a metric over every run at each (y, x) point, averaged over all other axes and seeds."""
    check_axes(runs, x, y)
    frame = pd.DataFrame(
        {"x": [config_value(r, x) for r in runs], "y": [config_value(r, y) for r in runs], "v": [r["metrics"][metric] for r in runs]}
    )
    return frame.pivot_table(index="y", columns="x", values="v", aggfunc="mean").sort_index(ascending=False)


MAX_GRID_SIDE = 12  # more distinct values on an axis than this: a sampled axis (e.g. Optuna's), not a grid


def sweep_figure(runs: list[dict[str, Any]], x: str, y: str, sweep_dir: Path, name: str = "summary") -> Path:
    """Forgetting and ACC over two config axes: an annotated heatmap when the runs form a full grid,
    a scatter of the runs otherwise (e.g. continuous rates sampled by Optuna)."""
    from nested_learning.analysis.plots import sweep_heatmap_figure, sweep_scatter_figure

    check_axes(runs, x, y)
    points = pd.DataFrame({"x": [config_value(r, x) for r in runs], "y": [config_value(r, y) for r in runs]})
    nx, ny = points["x"].nunique(), points["y"].nunique()
    grid = nx <= MAX_GRID_SIDE and ny <= MAX_GRID_SIDE and len(points.drop_duplicates()) == nx * ny
    if grid:
        figure = sweep_heatmap_figure({m: axis_table(runs, x, y, m) for m in ("forgetting", "acc")}, x, y)
        path = sweep_dir / f"{name}_heatmap.png"
    else:
        values = {m: [r["metrics"][m] for r in runs] for m in ("forgetting", "acc")}
        figure = sweep_scatter_figure(list(points["x"]), list(points["y"]), values, x, y)
        path = sweep_dir / f"{name}_scatter.png"
    figure.savefig(path, dpi=110)
    return path


def parse_reference(reference: str) -> tuple[str, str]:
    """`summary.reference` as (key, option): "transformer" means model=transformer; "optimizer=adam" or
    "cms_arm=step" as given."""
    key, _, option = reference.rpartition("=")
    return key or "model", option


def reference_differences(runs: list[dict[str, Any]], reference: str) -> pd.DataFrame:
    """For each group, the difference of every metric to the reference group with the same settings otherwise.

    `reference` is a model name (every model against it) or one override `key=option`: optimizer=adam
    compares every optimizer against Adam, each model on its own; cms_arm=step compares the arms of
    experiment=cms_clocks, whose arm also chooses the model. "The same settings" are the runs' own
    overrides, less the seed and the reference key, so a model that an override chose is a setting
    and one that an arm chose is not.
    """
    key, option = parse_reference(reference)

    def bare(override: str) -> str:  # "+cms_arm=step" -> "cms_arm=step"
        return override.lstrip("+~")

    def rest(members: list[dict[str, Any]]) -> tuple[str, ...]:
        return tuple(sorted(o for o in map(bare, members[0]["overrides"]) if o.split("=", 1)[0] not in (*NOT_SETTINGS, key)))

    def is_reference(members: list[dict[str, Any]]) -> bool:
        return members[0]["model"] == option if key == "model" else f"{key}={option}" in map(bare, members[0]["overrides"])

    groups = group_runs(runs)
    rows = []
    for label, members in groups.items():
        if is_reference(members):
            continue
        refs = [g for g, m in groups.items() if is_reference(m) and rest(m) == rest(members)]
        if not refs:
            continue
        row: dict[str, Any] = {"group": label, "reference": refs[0]}
        for metric in METRICS:
            diff, low, high, how = difference_interval(members, groups[refs[0]], metric)
            row.update({f"{metric}_diff": diff, f"{metric}_ci_low": low, f"{metric}_ci_high": high})
        row["pairing"] = how
        rows.append(row)
    return pd.DataFrame(rows)


def missing_reference(runs: list[dict[str, Any]], reference: str) -> str | None:
    """Why no difference to `reference` (a model name, or key=option) can be computed, or None if some run has it."""
    key, option = parse_reference(reference)
    labels = [[o.lstrip("+~") for o in setting_label(r).split()] for r in runs]
    if any(f"{key}={option}" in label for label in labels):
        return None
    present = sorted({o.split("=", 1)[1] for label in labels for o in label if o.startswith(f"{key}=")})
    return f"no run with {key}={option} in the sweep; {key} here: {', '.join(present) or 'not varied'}"


CSV_FLOATS = "%.6f"  # six decimals: accuracies are ratios of a few hundred tokens; beyond that is rounding noise


def write_summary(
    sweep_dir: str | Path, sweep: Sweep, axes: tuple[str, str] | None = None, reference: str | None = None, name: str = "summary",
    out_dir: str | Path | None = None,
) -> list[Path]:
    """summary.csv, summary.md, summary_vs_reference.csv (with a reference model) and a figure over two axes,
    into `out_dir` (default: the sweep's own directory; an archive under docs/results/ stays untouched with
    another); `name` replaces "summary" in every file name (e.g. for a view of another split beside the sweep's own).

    Each file is written on its own: one that fails (e.g. a figure) is reported in summary.md and on
    the log, and the others are still written.
    """
    sweep_dir = Path(sweep_dir)
    out_dir = Path(out_dir) if out_dir is not None else sweep_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    if axes and sweep.runs:
        check_axes(sweep.runs, *axes)  # bad input: an error before anything is written
    written: list[Path] = []
    problems: list[str] = []

    def attempt(what: str, write: Any) -> None:
        try:
            written.extend(write())
        except Exception as err:  # a report must never cost the others
            log.warning("could not write %s: %s: %s", what, type(err).__name__, err)
            problems.append(f"- {what}: {type(err).__name__}: {err}")

    table = aggregate(sweep.runs) if sweep.runs else pd.DataFrame()

    def summary_csv() -> list[Path]:
        table.to_csv(out_dir / f"{name}.csv", index=False, float_format=CSV_FLOATS)
        return [out_dir / f"{name}.csv"]

    attempt(f"{name}.csv", summary_csv)
    lines = [f"# Summary of {sweep_dir.name}", "", f"{len(sweep.runs)} finished runs, {len(sweep.failures)} failed or unfinished.", ""]
    lines += ["Mean, sample std and 95% confidence interval (Student t) over runs that differ only by seed;",
              f"{CLIPPED_NOTE}; metrics as defined in nested_learning/analysis/metrics.py (forgetting: Chaudhry et al. 2018).", ""]
    if sweep.runs:
        lines += [f"Accuracy: {accuracy_shown(sweep.runs)} (the runs' eval.metric and eval.split, or summarize.py's --metric and --split).", ""]
    if not table.empty:
        lines += [readable(table).to_markdown(index=False), ""]
    if any(len(r.get("tasks", [])) > 1 for r in sweep.runs):
        per_task = learning_accuracy_per_task(sweep.runs)
        per_task = per_task.astype(object).where(per_task.notna(), None)  # a task a group did not train: an empty cell
        lines += ["## Learning accuracy per task", "", "Accuracy on each task right after training it (the accuracy matrix's "
                  "diagonal), mean over seeds: LA by task, to tell forgetting of a learned task from a task never learned.", "",
                  per_task.to_markdown(index=False, floatfmt=".2f", missingval=""), ""]
    if reference and sweep.runs:
        missing = missing_reference(sweep.runs, reference)
        if missing:
            lines += [f"No difference to {reference}: {missing}.", ""]
        diffs = reference_differences(sweep.runs, reference)
        if not diffs.empty:
            def reference_csv() -> list[Path]:
                diffs.to_csv(out_dir / f"{name}_vs_reference.csv", index=False, float_format=CSV_FLOATS)
                return [out_dir / f"{name}_vs_reference.csv"]

            attempt(f"{name}_vs_reference.csv", reference_csv)
            shown = pd.DataFrame({"runs": diffs["group"], "minus": diffs["reference"]})
            for metric in METRICS:
                shown[metric] = [
                    f"{r[f'{metric}_diff']:+.3f} [{r[f'{metric}_ci_low']:+.3f}, {r[f'{metric}_ci_high']:+.3f}]" for _, r in diffs.iterrows()
                ]
            shown["pairing"] = diffs["pairing"]
            key, option = parse_reference(reference)
            lines += [f"## Difference to {key}={option}, same settings otherwise (95% CI)", "", shown.to_markdown(index=False), ""]
    if sweep.failures:
        lines += ["## Failed or unfinished jobs", ""] + [f"- `{job}`: {why}" for job, why in sweep.failures] + [""]
    axes = axes or tuple(varying_rate_axes(sweep.runs)[:2]) or None
    if axes and len(axes) == 2 and sweep.runs:
        figure_name: list[str] = []

        def figure() -> list[Path]:
            path = sweep_figure(sweep.runs, axes[0], axes[1], out_dir, name)
            figure_name.append(path.name)
            return [path]

        attempt(f"the figure over {axes[0]} x {axes[1]}", figure)
        if figure_name:
            lines += [f"![forgetting and ACC over {axes[0]} x {axes[1]}]({figure_name[0]})", ""]
    if problems:
        lines += ["## Not written", ""] + problems + [""]
    (out_dir / f"{name}.md").write_text("\n".join(lines))
    written.append(out_dir / f"{name}.md")
    return written
