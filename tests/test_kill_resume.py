"""SIGKILL at an exact epoch (checkpoints.TEST_SIGKILL_ENV), then resume: the memories' state and the final model.

Each killed run is resumed in this process (resume=true: what scripts/resume.py runs, as the other kill tests
do through it, less two interpreter start-ups) and must end with the uninterrupted run's accuracy AND loss
matrices (one scored token moves an accuracy by a few percent on these tiny tasks; a loss shows any leak).
"""
import pytest

from .conftest import assert_matches_uninterrupted, kill_at

# 4 optimizer steps per epoch; the kill lands after epoch 2 and its checkpoint: one epoch into task 2 (of 2).
TINY = ["epochs_per_task=[1,2]", "task.repeats=8", "batch_size=8", "checkpoint_every_s=0", "logger=none"]


@pytest.mark.slow
@pytest.mark.parametrize("model", [
    ["model=hope"],
    # chunks of 4 tokens, so the inner memory is written and read inside each ~10-token sentence
    ["model=titans", "model.chunk_size=4"],
    ["model=hope_nl", "model.chunk_size=4"],
    # the token clock's fast state carried along training and evaluation: buffers that must travel in the checkpoint
    ["model=cms", "model.cms_clock=token", "model.cms_state=carry_all"],
], ids=["hope", "titans", "hope_nl", "cms_token_carry_all"])
def test_a_memory_model_killed_mid_task_resumes_to_the_same_matrices(tmp_path, model, run_in_process):
    job = [*model, *TINY]
    run_in_process(*job, run_dir=tmp_path / "whole")  # the uninterrupted run: in this process, to save a start-up
    killed = kill_at(job, tmp_path / "killed", epoch=2, when="after")
    assert killed["status"] == "running" and len(killed["accuracy_matrix"]) == 1 and len(killed["curves"]) == 1 + 2
    assert run_in_process(*job, "resume=true", run_dir=tmp_path / "killed")["resumed"] == 1
    assert_matches_uninterrupted(tmp_path / "killed", tmp_path / "whole")


@pytest.mark.slow
def test_a_run_killed_after_its_final_checkpoint_but_before_complete_resumes_and_loads(tmp_path, run_in_process):
    job = ["model=transformer", *TINY]
    run_in_process(*job, run_dir=tmp_path / "whole")
    killed = tmp_path / "killed"
    # after the last epoch's final.ckpt, before results.json says "complete": resumed from last.ckpt (epoch 2)
    assert kill_at(job, killed, epoch=3, when="after")["status"] == "running"
    assert sorted(p.name for p in (killed / "checkpoints").iterdir()) == ["final.ckpt", "last.ckpt"]
    assert run_in_process(*job, "resume=true", run_dir=killed)["resumed"] == 1
    assert_matches_uninterrupted(killed, tmp_path / "whole")
    assert sorted(p.name for p in (killed / "checkpoints").iterdir()) == ["final.ckpt"]
    from nested_learning.run.trained import load_run

    run = load_run(killed)
    accs, _ = run.evaluate()
    assert accs[run.results["eval_split"]][run.results["eval_metric"]] == run.results["accuracy_matrix"][-1]
