"""Continual-learning metrics on an accuracy matrix, as defined (with their sources) below.

R[i][j] is the accuracy on task j after training on tasks 0..i; b[j] the untrained model's accuracy
on task j; T tasks. The definitions below are used everywhere in this project, exactly:

    ACC        = 1/T     sum_j        R[T-1][j]                              (average accuracy)
    BWT        = 1/(T-1) sum_{j<T-1} (R[T-1][j] - R[j][j])                   (Lopez-Paz & Ranzato 2017)
    FWT        = 1/(T-1) sum_{j>0}   (R[j-1][j] - b[j])
    forgetting = 1/(T-1) sum_{j<T-1} (max_{l<T-1} R[l][j] - R[T-1][j])       (Chaudhry et al. 2018)
    LA         = 1/T     sum_j        R[j][j]                                (learning accuracy, Riemer et al. 2019)

Perplexity comes from the loss matrix L (mean nats per counted token, same layout as R): exp(L[j][j])
when task j was just learned, exp(L[T-1][j]) at the end.

LA says whether each task was learned when it was trained: forgetting means little where LA is low.

With one task, BWT, FWT and forgetting are undefined and returned as None. GEM's code divides BWT by
T, Avalanche's forgetting drops the max and Mammoth's max runs over all rows: those differ from this.
The seed demo's "Forgetting" column is yet another quantity, R[T-1][j] - R[0][j] (final minus the
value after the first task, with the opposite sign); `final_minus_first` gives it, labelled as such.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

Matrix = Sequence[Sequence[float]] | np.ndarray


def _square(R: Matrix) -> np.ndarray:
    R = np.asarray(R, dtype=float)
    if R.ndim != 2 or R.shape[0] != R.shape[1] or R.shape[0] == 0:
        raise ValueError(f"accuracy matrix must be square T x T with T >= 1, got shape {R.shape}")
    return R


def average_accuracy(R: Matrix) -> float:
    R = _square(R)
    return float(R[-1].mean())


def backward_transfer(R: Matrix) -> float | None:
    R = _square(R)
    T = len(R)
    if T < 2:
        return None
    return float(np.mean([R[-1, j] - R[j, j] for j in range(T - 1)]))


def forward_transfer(R: Matrix, initial: Sequence[float]) -> float | None:
    R = _square(R)
    b = np.asarray(initial, dtype=float)
    T = len(R)
    if b.shape != (T,):
        raise ValueError(f"initial accuracies must have one entry per task ({T}), got shape {b.shape}")
    if T < 2:
        return None
    return float(np.mean([R[j - 1, j] - b[j] for j in range(1, T)]))


def forgetting_per_task(R: Matrix) -> list[float | None]:
    """max_{l<T-1} R[l][j] - R[T-1][j] for each j < T-1; None for the last task (not yet forgettable)."""
    R = _square(R)
    T = len(R)
    return [float(R[: T - 1, j].max() - R[-1, j]) for j in range(T - 1)] + [None]


def forgetting(R: Matrix) -> float | None:
    per_task = forgetting_per_task(R)[:-1]
    return float(np.mean(per_task)) if per_task else None


def learning_accuracy(R: Matrix) -> float:
    R = _square(R)
    return float(np.mean(np.diag(R)))


def final_minus_first(R: Matrix) -> list[float]:
    """The seed demo's "Forgetting" column: R[T-1][j] - R[0][j] (positive means it improved)."""
    R = _square(R)
    return [float(R[-1, j] - R[0, j]) for j in range(len(R))]


def all_metrics(R: Matrix, initial: Sequence[float]) -> dict[str, float | None]:
    return {
        "acc": average_accuracy(R),
        "bwt": backward_transfer(R),
        "fwt": forward_transfer(R, initial),
        "forgetting": forgetting(R),
        "la": learning_accuracy(R),
    }


def record_metrics(R: Matrix, initial: Sequence[float]) -> dict[str, object]:
    """What results.json derives from one accuracy matrix: the summary metrics and the per-task columns."""
    return {"metrics": all_metrics(R, initial), "forgetting_per_task": forgetting_per_task(R), "final_minus_first": final_minus_first(R)}


def perplexities(L: Matrix) -> dict[str, object]:
    """Perplexity from the loss matrix: per task when learned and at the end, and of the final row's mean loss."""
    L = _square(L)
    return {"learned": [float(np.exp(L[j, j])) for j in range(len(L))], "final": [float(np.exp(v)) for v in L[-1]],
            "mean_final": float(np.exp(L[-1].mean()))}
