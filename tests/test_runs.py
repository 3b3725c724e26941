"""Whole runs: results.json, reproducibility, bad input, the README's main command."""
import json
import math

import pytest

from nested_learning.analysis import metrics as M
from nested_learning.analysis.results import load_results

from .conftest import REPO, run_cli, run_cli_in_terminal


def test_run_writes_results_whose_metrics_match_its_matrix(run_in_process, tmp_path):
    result = run_in_process("model=hope", "epochs_per_task=[1,2]", "seed=3")
    saved = load_results(tmp_path / "run")
    assert saved["status"] == "complete"
    R, b = saved["accuracy_matrix"], saved["initial_accuracy"]
    assert len(R) == 2 and all(len(row) == 2 for row in R)
    # ppl: the perplexity of the final row's mean loss, from the loss matrix
    assert saved["metrics"] == pytest.approx({**M.all_metrics(R, b), "ppl": math.exp(sum(saved["loss_matrix"][-1]) / 2)})
    assert saved["tasks"] == ["Task_0", "Task_1"] and saved["model"] == "hope" and saved["seed"] == 3
    assert len(saved["loss_matrix"]) == 2 and len(saved["initial_loss"]) == 2
    assert saved["config"]["epochs_per_task"] == [1, 2] and saved["config"]["rates"]["fast"] == 0.6
    assert set(saved["provenance"]["versions"]) >= {"torch", "pytorch-lightning", "hydra-core", "python"}
    assert "commit" in saved["provenance"]["git"]
    # every epoch's evaluation is kept: before training + 3 epochs
    assert [c["epoch"] for c in saved["curves"]] == [-1, 0, 1, 2]
    assert result["accuracy_matrix"] == R


def test_same_config_gives_same_matrix(run_in_process, tmp_path):
    for model in ("transformer", "hope"):
        first = run_in_process(f"model={model}", "epochs_per_task=2", run_dir=tmp_path / f"{model}_a")
        second = run_in_process(f"model={model}", "epochs_per_task=2", run_dir=tmp_path / f"{model}_b")
        assert first["accuracy_matrix"] == second["accuracy_matrix"]
        assert first["loss_matrix"] == second["loss_matrix"]


def test_model_overrides_apply_to_their_model_only(run_in_process):
    overrides = "+model_overrides={transformer: {epochs_per_task: 1}, hope: {epochs_per_task: 2}}"
    result = run_in_process("model=hope", overrides)
    assert result["epochs_per_task"] == [2, 2]


def test_reset_optimizer_changes_training(run_in_process, tmp_path):
    kept = run_in_process("model=hope", "epochs_per_task=2", run_dir=tmp_path / "kept")
    reset = run_in_process("model=hope", "epochs_per_task=2", "reset_optimizer=true", run_dir=tmp_path / "reset")
    assert kept["accuracy_matrix"][0] == reset["accuracy_matrix"][0]  # identical until the boundary
    assert kept["loss_matrix"][1] != reset["loss_matrix"][1]


def test_bad_rate_stops_with_one_line_and_leaves_no_run_directory(tmp_path):
    out = run_cli("rates.fast=1.5", f"paths.output_root={tmp_path}")
    assert out.returncode == 2
    assert out.stderr.strip() == "error: rates.fast=1.5: a rate must lie in (0, 1]"
    assert list((tmp_path / "runs").iterdir()) == []  # no directory holding only .hydra/ and an empty log


def test_empty_task_stops_with_one_line_and_leaves_no_run_directory(tmp_path):
    out = run_cli("task.tasks.Task_1=[]", f"paths.output_root={tmp_path}")
    assert out.returncode == 2
    assert out.stderr.strip() == "error: task.tasks.Task_1: empty task; give at least one sentence"
    assert list((tmp_path / "runs").iterdir()) == []


@pytest.mark.slow
def test_bad_input_never_removes_a_directory_with_results(tmp_path):
    run_dir = tmp_path / "done"
    run_dir.mkdir()
    (run_dir / "results.json").write_text(json.dumps({"status": "complete"}))
    out = run_cli("resume=true", f"hydra.run.dir={run_dir}")
    assert out.returncode == 2 and "is complete; use scripts/rerun.py" in out.stderr
    assert json.loads((run_dir / "results.json").read_text()) == {"status": "complete"}


@pytest.mark.slow
def test_a_run_says_where_it_wrote_logs_to_train_log_and_shows_no_bar_when_piped(tmp_path):
    run_dir = tmp_path / "run"
    out = run_cli("epochs_per_task=1", "logger=none", f"hydra.run.dir={run_dir}", env_extra={"CI": ""})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == f"wrote checkpoints/, results.json, train.log in {run_dir}"
    log = (run_dir / "train.log").read_text()
    assert "hope finished Task_1 (2/2, step 4)" in log and "ACC " in log and f"in {run_dir}" in log
    assert "epoch 1/1" not in out.stdout  # stdout is a pipe: no progress bar


@pytest.mark.slow
def test_nan_loss_keeps_finished_rows(run_in_process, tmp_path):
    # EWC's penalty at lam=1e300 is inf (in float32) times 0 at Task_1's first step: NaN there, not before.
    job = ["model=hope", "epochs_per_task=[1,1]", "strategy=ewc"]
    out = run_cli(*job, "strategy.lam=1e300", "logger=none", f"paths.output_root={tmp_path}")
    assert out.returncode == 2, out.stderr
    line = out.stderr.strip().splitlines()[-1]
    # Task_0 took 2 steps (its 4 sentences x 32 repeats, batch 64): the loss of step 2 is Task_1's first.
    assert line == "error: training loss is nan at step 2 (Task_1); lower optimizer.lr (now 0.001) or check the data"
    (results,) = tmp_path.glob("runs/*/results.json")
    saved = json.loads(results.read_text())
    assert saved["status"] == "failed" and "NonFiniteLossError" in saved["error"]
    assert saved["epochs_taken"] == [1] and len(saved["initial_accuracy"]) == 2
    # Task_0's row is kept, and it is the row a run that does not diverge measures (the penalty is 0 until Task_1)
    finite = run_in_process(*job, "strategy.lam=1", run_dir=tmp_path / "finite")
    assert saved["accuracy_matrix"] == finite["accuracy_matrix"][:1]
    assert saved["loss_matrix"] == finite["loss_matrix"][:1]


@pytest.mark.slow
def test_training_curve_reaches_tensorboard_up_to_a_non_finite_loss(tmp_path):
    """Training values wait for the epoch's end before they go to TensorBoard; a failure inside an epoch still writes them."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = run_cli("model=transformer", "epochs_per_task=[1,1]", "optimizer.lr=1e30", f"paths.output_root={tmp_path}")
    assert out.returncode == 2, out.stderr
    # Task_0's epoch has 2 steps: the first step's update at lr 1e30 makes the second's loss NaN.
    assert "training loss is nan at step 1 (Task_0)" in out.stderr
    (tb,) = tmp_path.glob("runs/*/tb")
    events = EventAccumulator(str(tb)).Reload()
    assert [e.step for e in events.Scalars("train/loss")] == [0]


@pytest.mark.slow
def test_readme_main_command_runs(tmp_path):
    """`make seed` runs `python -m nested_learning.train experiment=seed`; here with one epoch per task."""
    out = run_cli("experiment=seed", "model_overrides.transformer.epochs_per_task=1",
                  "model_overrides.hope.epochs_per_task=1", f"paths.output_root={tmp_path}")
    assert out.returncode == 0, out.stderr
    assert "TRANSFORMER RETENTION" in out.stdout and "HOPE RETENTION" in out.stdout
    assert "CONTINUAL LEARNING SUMMARY" in out.stdout and "retained more" in out.stdout
    jobs = sorted(tmp_path.glob("multiruns/*/*/results.json"))
    assert len(jobs) == 2
    assert (REPO / "README.md").read_text().count("make seed") >= 1


@pytest.mark.parametrize("override,message", [
    ("seed=abc", "seed='abc': must be an integer"),
    ("batch_size=1.5", "batch_size=1.5: must be an integer >= 1"),
    ("epochs_per_task=2.5", "epochs_per_task=2.5: must be an integer >= 1, or a list of them, one per task"),
    ("epochs_per_task=[3,0]", "epochs_per_task=[3, 0]: must be an integer >= 1, or a list of them, one per task"),
    ("epochs_per_task=[3,3,3]", "epochs_per_task=[3, 3, 3]: give one integer or 2 (one per task)"),
    ("reset_optimizer=2", "reset_optimizer=2: must be true or false"),
    ("summary.reference=[a]", "summary.reference=['a']: must be null, a model name or one override key=value"),
    ("optimizer.lr=-1", "optimizer.lr=-1: must be a number > 0"),
    ("eval.count_padding=maybe", "eval.count_padding='maybe': must be true or false"),
    ("+model_overrides.hope.epochs_per_tsk=5", "model_overrides.hope: 'epochs_per_tsk' is not a config key"),
])
def test_bad_values_are_named_before_training(run_in_process, override, message):
    from nested_learning.errors import UserError

    with pytest.raises(UserError) as err:
        run_in_process(override)
    assert str(err.value).startswith(message)


def test_a_run_cut_mid_epoch_is_not_complete(run_in_process, tmp_path):
    # 3 epochs x 2 steps per task: step 7 stops inside the first epoch of Task_1.
    result = run_in_process("+trainer.max_steps=7")
    assert result["status"] == "running" and result["metrics"] is None
    assert len(result["accuracy_matrix"]) == 1  # Task_0 only: the cut epoch is no row
    assert [c["epoch"] for c in result["curves"]] == [-1, 0, 1, 2]
    assert load_results(tmp_path / "run")["status"] == "running"


def test_a_complete_run_is_not_resumed(run_in_process):
    from nested_learning.errors import UserError

    run_in_process("epochs_per_task=1")
    with pytest.raises(UserError, match="is complete; use scripts/rerun.py"):
        run_in_process("epochs_per_task=1", "resume=true")


def test_results_are_readable_by_others(run_in_process, tmp_path):
    import os
    import stat

    run_in_process("epochs_per_task=1")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "run" / "results.json").stat().st_mode) == 0o666 & ~umask


def test_tensorboard_heatmap_puts_each_accuracy_in_its_cell():
    import numpy as np
    from matplotlib import colormaps

    from nested_learning.analysis.plots import accuracy_matrix_image

    R = [[0.9, 0.1], [0.3, 0.7]]  # R[i][j]: after training task i, evaluated on task j
    image = accuracy_matrix_image(R, ["Task_0", "Task_1"], "R: hope, seed 0")  # (H, W, 3)
    centre = {}
    for i, row in enumerate(R):
        for j, value in enumerate(row):
            colour = (np.asarray(colormaps["viridis"](value)[:3]) * 255).round()
            ys, xs = np.nonzero((image == colour).all(-1))
            assert len(ys) > 500, f"no cell of colour viridis({value})"  # a filled cell, not a stray pixel
            centre[i, j] = (ys.mean(), xs.mean())  # the value printed in it shifts this by a pixel or so
    # rows are the evaluated tasks, columns "after training task i" (the seed's layout)
    assert centre[0, 0][0] == pytest.approx(centre[1, 0][0], abs=2) and centre[0, 0][1] < centre[1, 0][1]
    assert centre[0, 0][1] == pytest.approx(centre[0, 1][1], abs=2) and centre[0, 0][0] < centre[0, 1][0]

@pytest.mark.slow
def test_a_run_on_a_terminal_shows_live_progress_unless_under_ci(tmp_path):
    job = ["epochs_per_task=2", "logger=none"]
    status, screen = run_cli_in_terminal(*job, f"hydra.run.dir={tmp_path / 'tty'}", env_extra={"CI": None})
    assert status == 0, screen
    for shown in ("Task_0 (1/2) epoch 2/2", "Task_1 (2/2) epoch 1/2", "step: 6", "loss: "):
        assert shown in screen
    status, screen = run_cli_in_terminal(*job, f"hydra.run.dir={tmp_path / 'ci'}", env_extra={"CI": "true"})
    assert status == 0, screen
    assert "hope finished Task_1" in screen and "epoch 1/2" not in screen and "loss: " not in screen
