"""The continual-learning metrics against matrices computed by hand (definitions in nested_learning/analysis/metrics.py)."""
import pytest

from nested_learning.analysis import metrics as M


def test_single_task_defines_only_acc():
    assert M.all_metrics([[0.7]], [0.1]) == {"acc": 0.7, "bwt": None, "fwt": None, "forgetting": None, "la": 0.7}


def test_two_tasks_by_hand():
    R = [[0.9, 0.2], [0.6, 0.8]]  # row i: after training task i
    b = [0.1, 0.05]
    m = M.all_metrics(R, b)
    assert m["acc"] == pytest.approx((0.6 + 0.8) / 2)
    assert m["bwt"] == pytest.approx(0.6 - 0.9)
    assert m["fwt"] == pytest.approx(0.2 - 0.05)
    assert m["forgetting"] == pytest.approx(0.9 - 0.6)
    assert M.final_minus_first(R) == pytest.approx([0.6 - 0.9, 0.8 - 0.2])


def test_three_tasks_max_based_forgetting_differs_from_final_minus_first():
    # Task 0 peaks after task 1 (0.95), not right after its own training (0.5).
    R = [
        [0.50, 0.10, 0.00],
        [0.95, 0.70, 0.20],
        [0.40, 0.60, 0.90],
    ]
    b = [0.05, 0.10, 0.15]
    m = M.all_metrics(R, b)
    assert m["acc"] == pytest.approx((0.40 + 0.60 + 0.90) / 3)
    assert m["bwt"] == pytest.approx(((0.40 - 0.50) + (0.60 - 0.70)) / 2)
    assert m["fwt"] == pytest.approx(((0.10 - 0.10) + (0.20 - 0.15)) / 2)
    # max over rows 0..T-2 minus final: task 0 -> 0.95 - 0.40, task 1 -> 0.70 - 0.60
    assert m["forgetting"] == pytest.approx(((0.95 - 0.40) + (0.70 - 0.60)) / 2)
    assert M.forgetting_per_task(R) == pytest.approx([0.55, 0.10, None])
    assert m["la"] == pytest.approx((0.50 + 0.70 + 0.90) / 3)  # the diagonal: each task just after its training
    # The seed's column uses the first row only, and has the opposite sign.
    assert M.final_minus_first(R) == pytest.approx([0.40 - 0.50, 0.60 - 0.10, 0.90 - 0.00])
    assert -M.final_minus_first(R)[0] != pytest.approx(M.forgetting_per_task(R)[0])


def test_rejects_non_square_matrix():
    with pytest.raises(ValueError, match="square"):
        M.average_accuracy([[0.1, 0.2]])
