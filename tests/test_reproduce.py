"""Rerun, resume and finish: on every directory the app writes, named with any character.

Sweep job directories are named after their overrides ("0_model=hope,seed=1"); the user's own paths
may hold spaces, quotes or brackets. The runs here are killed for real (SIGKILL) and compared with
uninterrupted ones, matrix for matrix.
"""
import json
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from nested_learning.cli.rerun import replay_command, with_dirs

from .conftest import ODD, REPO, compose_config, kill_env, run_cli, run_script


def _results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


@pytest.mark.parametrize("char", [" ", "=", ",", "'", '"', "[", "]"])
def test_a_saved_config_replays_into_a_directory_named_with(tmp_path, char):
    """The saved config is read from, and the new run goes to, directories holding `char` (Hydra resolves it)."""
    run_dir = tmp_path / f"run{char}1"
    (run_dir / ".hydra").mkdir(parents=True)
    OmegaConf.save(compose_config("model=hope"), run_dir / ".hydra" / "config.yaml")
    new = run_dir / "reruns" / f"new{char}2"
    command = replay_command(run_dir, []) + ["--cfg", "hydra", "--resolve", "--package", "hydra.run.dir"]
    out = subprocess.run(command, env=with_dirs(run_dir=new), capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(new)


@pytest.mark.slow
def test_a_killed_sweep_is_finished_and_its_jobs_rerun_and_resume_in_odd_paths(killed_sweep, tmp_path):
    whole, killed, jobs = killed_sweep.whole, killed_sweep.killed, killed_sweep.jobs
    assert killed_sweep.whole_out.returncode == 0, killed_sweep.whole_out.stderr
    assert jobs[1] == "1_batch_size=16,checkpoint_every_s=0,epochs_per_task=[1,4],model=transformer,seed=1,task.repeats=32"

    # The second job killed the sweep after its epoch 3 and that epoch's checkpoint, two epochs into the second task.
    assert killed_sweep.killed_out.returncode == -signal.SIGKILL, killed_sweep.killed_out.stderr
    cut_copy = killed_sweep.cut_copy
    assert _results(cut_copy / jobs[0])["status"] == "complete"
    cut = killed_sweep.cut
    assert cut["status"] == "running" and len(cut["accuracy_matrix"]) == 1, "the kill missed the second task"
    assert not (cut_copy / jobs[2] / "results.json").exists()
    finished_job = (cut_copy / jobs[0] / "results.json").read_bytes()
    copy = tmp_path / ODD / "copy"
    shutil.copytree(cut_copy, copy)

    # One job, resumed in place.
    resumed = killed_sweep.resumed
    assert resumed.returncode == 0, resumed.stderr
    assert re.search(r"from its checkpoint after epoch 3 of 5 \(Task_1: epoch 2 of 4\), step \d+", resumed.stdout)
    for key in ("accuracy_matrix", "loss_matrix"):
        assert _results(killed / jobs[1])[key] == _results(whole / jobs[1])[key], key

    # The whole sweep, finished: the finished job untouched, the cut one resumed, the last one run.
    finished = run_script("resume.py", copy)
    assert finished.returncode == 0, finished.stderr
    assert (copy / jobs[0] / "results.json").read_bytes() == finished_job
    assert "already complete, left as it is" in finished.stdout
    for job in jobs:
        for key in ("accuracy_matrix", "loss_matrix"):
            assert _results(copy / job)[key] == _results(whole / job)[key], (job, key)
    assert _results(copy / jobs[1])["resumed"] == 1 and "resumed" not in _results(copy / jobs[2])
    assert "3 finished runs, 0 failed" in (copy / "summary.md").read_text()

    # A job of the odd sweep, re-run from its saved config.
    rerun = run_script("rerun.py", copy / jobs[2])
    assert rerun.returncode == 0, rerun.stderr
    assert "identical: the accuracy and loss matrices" in rerun.stdout
    # ... recording the job's overrides, so that a summary of reruns labels and groups it like the job.
    (rerun_dir,) = (copy / jobs[2] / "reruns").iterdir()
    for key in ("accuracy_matrix", "loss_matrix"):
        assert _results(rerun_dir)[key] == _results(copy / jobs[2])[key], key
    assert _results(rerun_dir)["overrides"] == _results(copy / jobs[2])["overrides"]
    assert "seed=2" in _results(copy / jobs[2])["overrides"]


@pytest.mark.slow
def test_a_run_killed_before_its_first_checkpoint_says_so_and_restarts(tmp_path, run_in_process):
    job = ["model=transformer", "epochs_per_task=[3,1]", "task.repeats=32", "batch_size=16", "logger=none"]
    killed = tmp_path / "killed"
    # Killed after the first epoch of three in Task_0, which writes no checkpoint (30 s have not passed).
    out = run_cli(*job, f"hydra.run.dir={killed}", env_extra=kill_env(1, "after"))
    assert out.returncode == -signal.SIGKILL, out.stderr
    assert not (killed / "checkpoints").exists()
    done = len(_results(killed)["curves"]) - 1
    assert done == 1
    out = run_script("resume.py", killed)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1] == (
        f"error: resume=true: {killed} has no checkpoint: {done} epoch(s) finished (results.json), but it was "
        "stopped before its first checkpoint, which is written at the end of each task and, within a task, 30 s "
        "after the previous one (checkpoint_every_s); to run it again from the beginning in the same directory: "
        f"python scripts/resume.py --restart {killed}"
    )
    restarted = run_script("resume.py", "--restart", killed)
    assert restarted.returncode == 0, restarted.stderr
    assert f"starting {killed} again from the beginning: it stopped after {done} finished epoch(s)" in restarted.stdout
    whole = run_in_process(*job, run_dir=tmp_path / "whole")  # in this process, to save a start-up
    assert whole["status"] == "complete"
    assert _results(killed)["accuracy_matrix"] == whole["accuracy_matrix"]


@pytest.mark.slow
def test_a_sweep_with_a_failed_job_exits_1_after_running_every_job_and_summarising(tmp_path):
    # commute4 has four tasks: two epoch counts are wrong for it, found when its job builds them.
    out = run_cli("-m", "model=hope", "task=commute4,commute", "epochs_per_task=[1,1]", "logger=none",
                  "hydra/launcher=joblib", f"hydra.sweep.dir={tmp_path}")
    assert out.returncode == 1
    assert "1 of 2 jobs failed or did not finish: exit status 1" in out.stdout
    why = "epochs_per_task=[1, 1]: give one integer or 4 (one per task)"
    assert f"error: job 1: {why}" in out.stderr.splitlines()
    (good,) = tmp_path.glob("1_*")
    assert _results(good)["status"] == "complete"
    # joblib's jobs run side by side: each progress line says whose it is
    assert "job 2: hope finished Task_1 (2/2, step 4): accuracy on it" in out.stdout
    summary = (tmp_path / "summary.md").read_text()
    (failed,) = tmp_path.glob("0_*")
    assert "1 finished runs, 1 failed" in summary and f"- `{failed.name}`: {why}" in summary.splitlines()


@pytest.mark.slow
def test_a_trial_of_an_optuna_search_reruns_and_the_search_finishes(optuna_search, tmp_path):
    shared, optuna = optuna_search
    assert optuna.returncode == 0, optuna.stderr
    search = tmp_path / "optuna"
    shutil.copytree(shared, search)
    rerun = run_script("rerun.py", next(search.glob("0_*")))
    assert rerun.returncode == 0, rerun.stderr
    assert "identical: the accuracy and loss matrices" in rerun.stdout
    # The last trial as if the search had been killed before it: the seeded sampler, fed the same
    # results, proposes the same trial again.
    (last,) = search.glob("2_*")
    saved = _results(last)
    shutil.rmtree(last)
    finished = run_script("resume.py", search)
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.count("already complete, left as it is") == 2
    assert _results(last)["accuracy_matrix"] == saved["accuracy_matrix"]


def test_a_replayed_run_records_its_source_overrides_with_its_own_on_top(tmp_path):
    from types import SimpleNamespace

    from nested_learning.cli.rerun import replayed_overrides

    source = tmp_path / "0_model=hope,seed=1"
    (source / ".hydra").mkdir(parents=True)
    (source / "results.json").write_text(json.dumps({"overrides": ["model=hope", "seed=1", "+cms_arm=step"]}))
    main = SimpleNamespace(provider="main", path=str(source / ".hydra"))
    hydra_pkg = SimpleNamespace(provider="hydra", path="hydra.conf")
    assert replayed_overrides([hydra_pkg, main], ["seed=2"]) == ["model=hope", "+cms_arm=step", "seed=2"]
    assert replayed_overrides([hydra_pkg, main], []) == ["model=hope", "seed=1", "+cms_arm=step"]
    conf = SimpleNamespace(provider="main", path=str(REPO / "conf"))  # a run composed from conf/: its own only
    assert replayed_overrides([hydra_pkg, conf], ["seed=2"]) == ["seed=2"]
