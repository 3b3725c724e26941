"""Figures: the accuracy matrix as a heatmap; a sweep over two config axes as a heatmap (a grid) or a scatter."""
from __future__ import annotations

from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # headless: runs write figures to files and TensorBoard, never to a screen
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def accuracy_matrix_figure(R: Sequence[Sequence[float]], tasks: Sequence[str], title: str) -> plt.Figure:
    """Heatmap with evaluation tasks as rows and "after training task i" as columns (the seed's layout)."""
    shown = np.asarray(R, dtype=float).T  # (eval task j, after task i)
    cell, left, right, bottom, top = 0.9, 1.3, 0.2, 1.0, 0.4  # inches: the figure grows with the tasks
    n_cols, n_rows = shown.shape[1], shown.shape[0]
    width, height = left + right + cell * n_cols, bottom + top + cell * n_rows
    fig, ax = plt.subplots(figsize=(max(width, 3.2), height))
    fig.subplots_adjust(left=left / max(width, 3.2), right=1 - right / max(width, 3.2), bottom=bottom / height, top=1 - top / height)
    ax.imshow(shown, vmin=0.0, vmax=1.0, cmap="viridis")
    ax.set_xticks(range(n_cols), [f"after {t}" for t in tasks[:n_cols]], rotation=30, ha="right")
    ax.set_yticks(range(n_rows), tasks)
    ax.set_ylabel("evaluated on")
    # Every cell carries its value, so no colorbar: rendering it (and tight_layout) tripled the cost
    # of logging this figure at the end of every run.
    for j in range(n_rows):
        for i in range(n_cols):
            ax.text(i, j, f"{shown[j, i]:.2f}", ha="center", va="center", color="white" if shown[j, i] < 0.6 else "black")
    ax.set_title(title, fontsize=10)
    fig.set_dpi(72)  # rendered at the end of every run for TensorBoard: fewer pixels, a third less time
    return fig


def _tick(value: object) -> str:
    """A compact label for a config value on a heatmap axis: numbers as %g, anything else as text."""
    return f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def _metric_colours(metric: str, values: np.ndarray) -> tuple[str, float, float, str]:
    """Fixed scales, so colours compare across sweeps: accuracy on [0, 1]; signed metrics (forgetting)
    on a diverging map centred at 0, white meaning "no change". (colormap, low, high, number format)"""
    if metric == "acc":
        return "viridis", 0.0, 1.0, ".3f"
    finite = values[np.isfinite(values)]
    bound = max(0.05, float(np.abs(finite).max())) if finite.size else 0.05
    return "RdBu_r", -bound, bound, "+.3f"


def sweep_heatmap_figure(tables: dict, x: str, y: str) -> plt.Figure:
    """One annotated heatmap per metric over two config axes (each cell: mean over the other axes and seeds)."""
    fig, axes = plt.subplots(1, len(tables), figsize=(4.6 * len(tables), 4.0), squeeze=False)
    for ax, (metric, table) in zip(axes[0], tables.items()):
        values = table.to_numpy(dtype=float)
        cmap, low, high, fmt = _metric_colours(metric, values)
        image = ax.imshow(values, cmap=cmap, vmin=low, vmax=high, aspect="auto")
        ax.set_xticks(range(values.shape[1]), [_tick(v) for v in table.columns])
        ax.set_yticks(range(values.shape[0]), [_tick(v) for v in table.index])
        ax.set_xlabel(x)
        ax.set_ylabel(y)
        ax.set_title(f"{metric} (mean over other axes and seeds)", fontsize=10)
        fig.colorbar(image, ax=ax)
        for j in range(values.shape[0]):
            for i in range(values.shape[1]):
                r, g, b, _ = image.cmap(image.norm(values[j, i]))
                ink = "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"
                ax.text(i, j, f"{values[j, i]:{fmt}}", ha="center", va="center", fontsize=8, color=ink)
    fig.tight_layout()
    return fig


def _spans_decades(values: Sequence[object]) -> bool:
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return len(numbers) == len(values) and min(numbers) > 0 and max(numbers) / min(numbers) >= 20


def sweep_scatter_figure(xs: Sequence[object], ys: Sequence[object], values: dict[str, Sequence[float]], x: str, y: str) -> plt.Figure:
    """One scatter per metric: every run at its (x, y) config values, coloured by the metric.

    For axes sampled rather than gridded (Optuna's continuous rates), where a heatmap would be a
    mostly empty grid with one tick label per run. An axis spanning 20x or more is drawn on a log scale.
    """
    fig, axes = plt.subplots(1, len(values), figsize=(4.8 * len(values), 4.0), squeeze=False)
    for ax, (metric, metric_values) in zip(axes[0], values.items()):
        v = np.asarray([np.nan if m is None else m for m in metric_values], dtype=float)
        cmap, low, high, _ = _metric_colours(metric, v)
        points = ax.scatter(xs, ys, c=v, cmap=cmap, vmin=low, vmax=high, s=40, edgecolors="black", linewidths=0.4)
        if _spans_decades(xs):
            ax.set_xscale("log")
        if _spans_decades(ys):
            ax.set_yscale("log")
        ax.set_xlabel(x)
        ax.set_ylabel(y)
        ax.set_title(f"{metric}, one point per run", fontsize=10)
        fig.colorbar(points, ax=ax)
    fig.tight_layout()
    return fig
