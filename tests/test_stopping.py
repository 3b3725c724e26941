"""The per-task stopping rule (data/datamodule.py StoppingRule, TaskSchedule): scripted accuracies,
and a real run that stops tasks early, is killed, and resumes to the same matrices and epochs."""
from __future__ import annotations

import json

import pytest

from nested_learning.data.datamodule import StoppingRule, TaskSchedule

from .conftest import assert_resume_matches, kill_at


def test_rule_on_scripted_accuracies():
    def stops(rule: StoppingRule, history: list[float]) -> bool:
        return rule.reason(history) is not None

    target = StoppingRule(target=0.9)
    assert [stops(target, [0.5, a]) for a in (0.89, 0.9, 1.0)] == [False, True, True]
    assert target.reason([0.5, 0.9375]) == "reached 0.938 (stopping.target=0.9)"
    patience = StoppingRule(patience=2)
    assert not stops(patience, [0.3, 0.5, 0.5])  # one epoch without a new best (a tie is no improvement)
    assert patience.reason([0.3, 0.5, 0.5, 0.4]) == (  # two
        "has not beaten its best, 0.500 after epoch 2, for 2 epochs (stopping.patience=2, min_delta=0)")
    assert not stops(patience, [0.3, 0.5, 0.4, 0.6])  # a new best resets the count
    assert not StoppingRule().active and not stops(StoppingRule(), [1.0])
    slow = StoppingRule(patience=2, min_delta=0.01)  # gains of at most 0.01 are no new best
    assert stops(slow, [0.5, 0.505, 0.51]) and not stops(slow, [0.5, 0.505, 0.52])
    assert not stops(slow, [0.5, 0.52, 0.525]) and stops(slow, [0.5, 0.52, 0.525, 0.53])


def test_schedule_places_tasks_by_the_epochs_they_took():
    schedule = TaskSchedule([4, 3, 5], StoppingRule(target=0.9, patience=2))
    assert schedule.epochs == [4, 3, 5]
    # task 0 reaches the target at its 2nd epoch; task 1 never improves after its 1st and stops at its cap
    # (3, before patience would), task 2 stalls after its 2nd epoch and stops two epochs later
    script = [(0.5, False), (0.95, True), (0.4, False), (0.4, False), (0.3, True), (0.2, False), (0.6, False),
              (0.6, False), (0.5, True)]
    assert [schedule.end_epoch(acc) for acc, _ in script] == [done for _, done in script]
    assert schedule.taken == [2, 3, 4] and schedule.epochs == [2, 3, 4]
    restored = TaskSchedule([4, 3, 5], StoppingRule(target=0.9, patience=2))
    partial = TaskSchedule([4, 3, 5], StoppingRule(target=0.9, patience=2))
    for acc, _ in script[:3]:
        partial.end_epoch(acc)
    restored.load_state_dict(partial.state_dict())  # as a checkpoint carries it
    assert restored.epochs == [2, 3, 5] and [restored.end_epoch(a) for a, _ in script[3:]] == [d for _, d in script[3:]]


def test_schedule_says_why_a_task_stopped_before_its_cap():
    schedule = TaskSchedule([4, 2], StoppingRule(target=0.9))
    assert [schedule.end_epoch(a) for a in (0.5, 0.95)] == [False, True]
    assert schedule.stopped_early == "reached 0.950 (stopping.target=0.9)"
    assert [schedule.end_epoch(a) for a in (0.1, 0.2)] == [False, True]
    assert schedule.stopped_early is None  # it ended at its cap: the rule did not fire


def test_without_a_rule_every_task_runs_to_its_cap():
    schedule = TaskSchedule([2, 1], StoppingRule())
    assert [schedule.end_epoch(None) for _ in range(3)] == [False, True, True] and schedule.taken == [2, 1]


@pytest.mark.slow
def test_stopped_tasks_resume_exactly_after_sigkill(tmp_path, run_in_process):
    # Patience ends both tasks before their cap of 8 (7 epochs each); the kill lands in the second task.
    job = ["model=rnn", "epochs_per_task=[8,8]", "stopping.target=0.95", "stopping.patience=2", "task.repeats=16",
           "batch_size=16", "checkpoint_every_s=0", "logger=none"]
    # the uninterrupted run: in this process, to save a start-up
    assert run_in_process(*job, run_dir=tmp_path / "whole")["status"] == "complete"
    whole = json.loads((tmp_path / "whole" / "results.json").read_text())
    assert whole["epochs_per_task"] == [8, 8] and whole["epochs_taken"] == [7, 7]
    assert len(whole["curves"]) == 1 + 14  # the run ended with its last task, before the caps' 16 epochs
    # its trained model was written when the rule ended the last task; the resume checkpoint is gone
    assert sorted(p.name for p in (tmp_path / "whole" / "checkpoints").iterdir()) == ["final.ckpt"]
    # Killed after epoch 10's evaluation, before its checkpoint: the resumed run repeats epoch 10 from epoch 9's.
    killed = kill_at(job, tmp_path / "killed", epoch=10, when="before")
    assert killed["status"] == "running" and killed["epochs_taken"] == [7] and len(killed["curves"]) == 1 + 10
    assert_resume_matches(tmp_path / "killed", tmp_path / "whole")
    resumed = json.loads((tmp_path / "killed" / "results.json").read_text())
    assert resumed["epochs_taken"] == [7, 7] and resumed["curves"] == whole["curves"]


@pytest.mark.parametrize("override, message", [
    ("stopping.target=2", "stopping.target=2: must be null or a number in (0, 1]"),
    ("stopping.patience=0", "stopping.patience=0: must be null or an integer >= 1"),
    ("stopping.metric=bleu", "stopping.metric='bleu': must be null (eval.metric), token or sequence"),
    ("stopping.min_delta=-0.1", "stopping.min_delta=-0.1: must be a number in [0, 1)"),
])
def test_bad_stopping_values_are_one_line_errors(override, message):
    from nested_learning.errors import UserError
    from nested_learning.cli.config_checks import validate

    from .conftest import compose_config

    with pytest.raises(UserError) as err:
        validate(compose_config(override))
    assert str(err.value) == message


def test_rule_reads_its_own_metric_and_without_curves_measures_the_same_rows(run_in_process, tmp_path):
    # The tables show sequence accuracy; the rule reads token accuracy (stopping.metric). With
    # eval.every_epoch=false only the current task is evaluated after each epoch (the rule's number)
    # and the whole row at a task's end: the same decisions, the same matrices, no curve.
    job = ["model=rnn", "epochs_per_task=[6,6]", "stopping.target=0.75", "stopping.patience=2", "stopping.metric=token",
           "eval.metric=sequence", "task.repeats=8", "batch_size=16"]
    with_curves = run_in_process(*job, run_dir=tmp_path / "curves")
    without = run_in_process(*job, "eval.every_epoch=false", run_dir=tmp_path / "rows")
    assert with_curves["epochs_taken"] == without["epochs_taken"]
    assert with_curves["epochs_taken"][0] < 6  # the rule ended the first task at its target, read on tokens
    token = with_curves["accuracy_matrices"]["eval"]["token"]
    assert token[0][0] >= 0.75 and with_curves["accuracy_matrix"][0][0] < 0.75  # not on sequences
    assert without["accuracy_matrices"] == with_curves["accuracy_matrices"]
    assert without["loss_matrices"] == with_curves["loss_matrices"]
    assert len(without["curves"]) == 1 and len(with_curves["curves"]) == 1 + sum(with_curves["epochs_taken"])  # + the initial point
