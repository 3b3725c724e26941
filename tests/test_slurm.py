"""The Slurm launcher against a real cluster (CI starts a one-node one with .ci/start_slurm.sh)."""
import json
import os
import shutil
import subprocess

import pytest

from .conftest import SWEEP_JOB, run_cli, run_script


@pytest.fixture(scope="session")
def slurm_cluster() -> None:
    """A cluster that answers, or every test that needs one skips; installed but stopped counts as absent (a user's
    machine after a reboot). Asked once: `sinfo` can take seconds to give up on a stopped controller."""
    if not shutil.which("sinfo"):
        why = "no sinfo on PATH"
    elif subprocess.run(["sinfo", "--noheader"], capture_output=True).returncode != 0:
        why = "sinfo cannot reach a Slurm controller"
    else:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but no Slurm cluster ({why}): .ci/run starts one with .ci/start_slurm.sh")
    pytest.skip(f"no Slurm cluster here ({why}); `sudo .ci/start_slurm.sh` starts a one-node one")


def _results(run_dir):
    return json.loads((run_dir / "results.json").read_text())


@pytest.mark.slow
def test_a_slurm_sweep_gives_the_basic_launchers_matrices_and_its_jobs_rerun(slurm_cluster, basic_sweep, tmp_path):
    basic_dir, basic = basic_sweep
    assert basic.returncode == 0, basic.stderr
    slurm = run_cli("-m", *SWEEP_JOB, "seed=0,1", "hydra/launcher=slurm", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=2",
                    f"hydra.sweep.dir={tmp_path / 'slurm'}", timeout=600)
    assert slurm.returncode == 0, slurm.stderr
    # submitit's warning that a status poll failed (sacct, without accounting) printed once, not once per poll x 3
    assert (slurm.stdout + slurm.stderr).count("Bypassing sacct error") <= 1
    jobs = sorted(p.name for p in basic_dir.glob("[0-9]_*"))
    assert sorted(p.name for p in (tmp_path / "slurm").glob("[0-9]_*")) == jobs and len(jobs) == 2
    assert list((tmp_path / "slurm" / ".submitit").glob("*/*_log.out")), "the jobs did not run through Slurm"
    for job in jobs:
        for key in ("accuracy_matrix", "loss_matrix"):
            assert _results(tmp_path / "slurm" / job)[key] == _results(basic_dir / job)[key], (job, key)
    assert (tmp_path / "slurm" / "summary.md").is_file()
    rerun = run_script("rerun.py", tmp_path / "slurm" / jobs[1])
    assert rerun.returncode == 0, rerun.stderr
    assert "identical: the accuracy and loss matrices" in rerun.stdout

@pytest.mark.slow
def test_a_slurm_job_with_two_tasks_trains_one_run_on_two_ranks(slurm_cluster, tmp_path):
    """hydra/launcher=slurm_ddp: Slurm starts the two ranks of trainer=ddp_cpu; they train as one process does."""
    job = ["model=rnn", "seed=0", "epochs_per_task=1", "task.repeats=9", "batch_size=5", "logger=none"]
    one = run_cli(*job, f"hydra.run.dir={tmp_path / 'one'}")
    assert one.returncode == 0, one.stderr
    slurm = run_cli("-m", *job, "trainer=ddp_cpu", "hydra/launcher=slurm_ddp", "hydra.launcher.gpus_per_node=null",
                    "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=2", f"hydra.sweep.dir={tmp_path / 'slurm'}",
                    timeout=600)
    assert slurm.returncode == 0, slurm.stderr
    (run_dir,) = (tmp_path / "slurm").glob("0_*")
    (submission,) = (tmp_path / "slurm" / ".submitit").glob("*/*_submission.sh")
    assert "#SBATCH --ntasks-per-node=2" in submission.read_text()
    assert len(list(submission.parent.glob("*_[01]_log.out"))) == 2, "the job did not run two tasks"
    # Rank 1 knew it was rank 1 of 2 (it wrote and logged nothing), and the two ranks computed one process's matrix.
    assert (run_dir / "train.log").read_text().count("rnn finished Task_0") == 1
    ddp, single = _results(run_dir), _results(tmp_path / "one")
    assert ddp["status"] == "complete" and ddp["accuracy_matrices"] == single["accuracy_matrices"]
    for ddp_row, one_row in zip(ddp["loss_matrix"], single["loss_matrix"], strict=True):
        assert ddp_row == pytest.approx(one_row, rel=1e-5)


@pytest.mark.slow
def test_a_partition_slurm_refuses_is_one_line_with_slurms_message(slurm_cluster, tmp_path):
    out = run_cli("-m", "seed=0,1", "hydra/launcher=slurm", "hydra.launcher.partition=no_such_partition",
                  f"hydra.sweep.dir={tmp_path}")
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1] == (
        "error: the scheduler refused the sweep's jobs: sbatch: error: invalid partition specified: no_such_partition; "
        "sbatch: error: Batch job submission failed: Invalid partition name specified (check "
        "hydra.launcher.partition, cpus_per_task and mem_gb against `sinfo`)")
