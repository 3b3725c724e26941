"""scripts/plot_curves.py: each task's best and final held-out accuracy and loss, from a run's curves."""
from __future__ import annotations

from nested_learning.analysis.results import write_results

from .conftest import call_script


def _run(tmp_path, name, curves, tasks=("a", "b")):
    write_results(tmp_path / name, {"status": "complete", "tasks": list(tasks), "curves": curves})
    return tmp_path / name


def test_curves_table_finds_the_best_accuracy_and_the_lowest_loss_of_each_task(tmp_path):
    run = _run(tmp_path, "overfits", [
        {"epoch": -1, "step": 0, "accuracy": [0.9, 0.0], "loss": [9.0, 1.0]},  # before training: left out of best and lowest
        {"epoch": 0, "step": 10, "accuracy": [0.5, 0.0], "loss": [0.7, 5.0]},
        {"epoch": 1, "step": 20, "accuracy": [0.6, 0.1], "loss": [0.9, 4.0]},
        {"epoch": 2, "step": 30, "accuracy": [0.6, 0.3], "loss": [1.5, 2.0]},  # a tie for the best: the first step is named
    ])
    done = call_script("plot_curves.py", run, "--out", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "out" / "curves.md").read_text()
    assert "| overfits | a | 0.600 (20) | 0.600 | 0.700 (10) | 1.500 |" in text
    assert "| overfits | b | 0.300 (30) | 0.300 | 2.000 (30) | 2.000 |" in text
    assert (tmp_path / "out" / "curves.png").stat().st_size > 0


def test_a_run_without_curves_or_without_results_gets_one_line(tmp_path):
    flat = _run(tmp_path, "task_ends_only", [{"epoch": -1, "step": 0, "accuracy": [0.0], "loss": [9.0]}], tasks=("a",))
    done = call_script("plot_curves.py", flat)
    assert done.returncode == 2 and done.stderr.strip() == (
        f"error: {flat}: no learning curve recorded (the run evaluated only at task ends: eval.every_epoch=false)")
    done = call_script("plot_curves.py", tmp_path / "missing")
    assert done.returncode == 2 and "not a run directory" in done.stderr and "Traceback" not in done.stderr
