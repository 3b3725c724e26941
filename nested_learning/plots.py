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
    cell, left, right, bottom, top = 0.9, 1.3, 0.2, 1.0, 0.6  # inches: the figure grows with the tasks
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
    ax.set_title(f"accuracy matrix\n{title}", fontsize=10)
    return fig
