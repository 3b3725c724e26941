"""Figures: the accuracy matrix as a heatmap; a sweep over two config axes as a heatmap (a grid) or a scatter."""
from __future__ import annotations

from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # headless: runs write figures to files and TensorBoard, never to a screen
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import colormaps  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402


def accuracy_matrix_image(R: Sequence[Sequence[float]], tasks: Sequence[str], title: str) -> np.ndarray:
    """Heatmap with evaluation tasks as rows and "after training task i" as columns (the seed's layout),
    each cell coloured on viridis over [0, 1] and carrying its value: an RGB image (H, W, 3) for TensorBoard.

    Drawn with Pillow rather than as a matplotlib figure: it is logged at the end of every run, and
    laying out and rendering a figure's text cost 35-70 ms a run, against a seed run's training of 0.2 s.
    """
    shown = np.asarray(R, dtype=float).T  # (eval task j, after task i)
    n_rows, n_cols = shown.shape
    font = ImageFont.load_default(size=12)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    width_of = lambda text: int(measure.textlength(text, font=font))  # noqa: E731
    after = [f"after {t}" for t in tasks[:n_cols]]
    pad, cell_h = 8, 40
    cell_w = max(56, *(width_of(a) + pad for a in after))
    left = max(width_of("evaluated on"), *(width_of(t) for t in tasks)) + 2 * pad
    top, bottom = 44, 24  # the title's line, then the row labels' header
    width = max(left + cell_w * n_cols, width_of(title)) + pad
    image = Image.new("RGB", (width, top + cell_h * n_rows + bottom), "white")
    draw = ImageDraw.Draw(image)
    draw.text((pad, pad), title, fill="black", font=font, anchor="lt")
    draw.text((left - pad, top - 4), "evaluated on", fill="dimgray", font=font, anchor="rd")
    colours = (np.asarray(colormaps["viridis"](np.clip(shown, 0.0, 1.0)))[..., :3] * 255).round().astype(np.uint8)
    for j in range(n_rows):
        y = top + j * cell_h
        draw.text((left - pad, y + cell_h // 2), tasks[j], fill="black", font=font, anchor="rm")
        for i in range(n_cols):
            x = left + i * cell_w
            draw.rectangle((x, y, x + cell_w - 1, y + cell_h - 1), fill=tuple(int(c) for c in colours[j, i]))
            ink = "white" if shown[j, i] < 0.6 else "black"
            draw.text((x + cell_w // 2, y + cell_h // 2), f"{shown[j, i]:.2f}", fill=ink, font=font, anchor="mm")
    for i, label in enumerate(after):
        draw.text((left + i * cell_w + cell_w // 2, top + n_rows * cell_h + bottom // 2), label, fill="black", font=font, anchor="mm")
    return np.asarray(image)


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
