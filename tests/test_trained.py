"""A finished run's trained model: checkpoints/final.ckpt, read back with nested_learning.run.trained.load_run."""
import json

import pytest

from nested_learning.errors import UserError


def test_a_finished_run_loads_and_its_model_gives_back_the_final_row(run_in_process, tmp_path):
    # The Transformer has dropout: the row is only given back if the loaded model is in eval mode.
    result = run_in_process("model=transformer", "epochs_per_task=[1,2]", "task.repeats=4", "checkpoint_every_s=0",
                            run_dir=tmp_path / "run")
    from nested_learning.run.trained import load_run

    run = load_run(tmp_path / "run")
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["final.ckpt"]  # last.ckpt went
    assert not run.model.training and run.cfg.model.name == "transformer"
    assert run.results == json.loads((tmp_path / "run" / "results.json").read_text())
    accs, losses = run.evaluate()
    assert accs[result["eval_split"]][result["eval_metric"]] == result["accuracy_matrix"][-1]
    assert losses[result["eval_split"]] == pytest.approx(result["loss_matrix"][-1], rel=1e-6)
    # the state the run ended with (issue 22: last.ckpt held the end of the previous task, step 2 of 3)
    import torch

    final = torch.load(tmp_path / "run" / "checkpoints" / "final.ckpt", weights_only=False)
    assert final["global_step"] == result["curves"][-1]["step"] == 3  # 3 epochs of one batch (16 sentences)


def test_a_single_task_run_without_resume_checkpoints_still_writes_its_model(run_in_process, tmp_path):
    result = run_in_process("model=rnn", "task=synthetic", "task.num_tasks=1", "epochs_per_task=2", "checkpoint_every_s=null",
                            run_dir=tmp_path / "run")
    from nested_learning.run.trained import load_run

    run = load_run(tmp_path / "run")
    accs, _ = run.evaluate()
    assert accs[result["eval_split"]][result["eval_metric"]] == result["accuracy_matrix"][-1]


def test_a_directory_that_is_not_a_run_is_one_line(tmp_path):
    from nested_learning.run.trained import load_run

    with pytest.raises(UserError, match=f"^{tmp_path}: not a run directory \\(no results.json\\)"):
        load_run(tmp_path)
    (tmp_path / "results.json").write_text(json.dumps({"status": "running"}))
    with pytest.raises(UserError, match=r"no trained model \(checkpoints/final.ckpt\): the run is running; .*scripts/resume.py"):
        load_run(tmp_path)
    (tmp_path / "results.json").write_text(json.dumps({"status": "complete"}))  # a run from before final.ckpt
    with pytest.raises(UserError, match=r"the run is complete; it finished before .*scripts/rerun.py"):
        load_run(tmp_path)
