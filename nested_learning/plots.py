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
    fig, ax = plt.subplots(figsize=(1.4 * len(tasks) + 2.2, 0.9 * len(tasks) + 1.6))
    image = ax.imshow(shown, vmin=0.0, vmax=1.0, cmap="viridis")
    ax.set_xticks(range(shown.shape[1]), [f"after {t}" for t in tasks[: shown.shape[1]]], rotation=30, ha="right")
    ax.set_yticks(range(len(tasks)), tasks)
    ax.set_ylabel("evaluated on")
    for j in range(shown.shape[0]):
        for i in range(shown.shape[1]):
            ax.text(i, j, f"{shown[j, i]:.2f}", ha="center", va="center", color="white" if shown[j, i] < 0.6 else "black")
    fig.colorbar(image, ax=ax, label="next-token accuracy")
    ax.set_title(title)
    fig.tight_layout()
    return fig
