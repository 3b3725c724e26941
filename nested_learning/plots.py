"""Figures: the accuracy matrix as a heatmap."""
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


def sweep_heatmap_figure(tables: dict, x: str, y: str) -> plt.Figure:
    """One annotated heatmap per metric over two config axes (each cell: mean over the other axes and seeds).

    Fixed scales, so colours compare across sweeps: accuracy on [0, 1]; signed metrics (forgetting)
    on a diverging map centred at 0, white meaning "no change".
    """
    fig, axes = plt.subplots(1, len(tables), figsize=(4.6 * len(tables), 4.0), squeeze=False)
    for ax, (metric, table) in zip(axes[0], tables.items()):
        values = table.to_numpy(dtype=float)
        if metric == "acc":
            cmap, low, high, fmt = "viridis", 0.0, 1.0, ".3f"
        else:
            bound = max(0.05, float(np.nanmax(np.abs(values))))
            cmap, low, high, fmt = "RdBu_r", -bound, bound, "+.3f"
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
