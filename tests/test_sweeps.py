"""Multiruns, launchers, reruns, resume and TensorBoard: the researcher's daily loop, end to end."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from .conftest import CONF, REPO, SWEEP_JOB, assert_resume_matches, run_cli, run_script


def compose_with_hydra(*overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=True)


def test_slurm_launcher_config_composes():
    cfg = compose_with_hydra("hydra/launcher=slurm")
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")
    assert cfg.hydra.launcher.cpus_per_task == 2 and cfg.hydra.launcher.timeout_min == 60


def test_optuna_search_config_composes():
    cfg = compose_with_hydra("hparams_search=optuna_rates")
    assert cfg.hydra.sweeper._target_.endswith("OptunaSweeper")
    assert cfg.hydra.sweeper.storage is None and list(cfg.hydra.sweeper.direction) == ["maximize", "minimize"]
    assert set(cfg.hydra.sweeper.params) == {"rates.fast", "rates.medium", "rates.slow"}
    assert list(cfg.objective) == ["acc", "forgetting"]


def test_rate_sweep_is_a_27_point_grid_of_ordered_rates_with_seeds(caplog):
    import itertools

    from nested_learning.models.seed_hope import validate_rates

    params = compose_with_hydra("experiment=rate_sweep").hydra.sweeper.params
    grid = [[float(v) for v in str(params[f"rates.{k}"]).split(",")] for k in ("fast", "medium", "slow")]
    assert [len(axis) for axis in grid] + [len(str(params.seed).split(","))] == [3, 3, 3, 3]
    for fast, medium, slow in itertools.product(*grid):
        validate_rates({"fast": fast, "medium": medium, "slow": slow})
    assert "not ordered" not in caplog.text  # the sweep's own grid gives no warning
    validate_rates({"fast": 0.3, "medium": 0.5, "slow": 0.01})
    assert "not ordered" in caplog.text


def _results(run_dir):
    return json.loads((run_dir / "results.json").read_text())


@pytest.mark.slow
def test_no_state_leaks_between_jobs_with_either_launcher_and_a_joblib_job_reruns(basic_sweep, tmp_path, run_in_process):
    alone = run_in_process(*SWEEP_JOB, "seed=1", run_dir=tmp_path / "alone")  # in this process, to save a start-up
    assert alone["status"] == "complete"
    joblib = tmp_path / "joblib"
    sweeps = {"basic": basic_sweep, "joblib": (joblib, run_cli("-m", *SWEEP_JOB, "seed=0,1", "hydra/launcher=joblib",
                                                                f"hydra.sweep.dir={joblib}"))}
    for launcher, (sweep, out) in sweeps.items():
        assert out.returncode == 0, out.stderr
        (second,) = sweep.glob("1_*")
        for key in ("accuracy_matrix", "loss_matrix"):
            assert _results(second)[key] == alone[key], (launcher, key)
    rerun = run_script("rerun.py", second)
    assert rerun.returncode == 0 and "identical: the accuracy and loss matrices" in rerun.stdout, rerun.stderr  # a joblib job


def _printed_once(out: subprocess.CompletedProcess, line: str) -> bool:
    """`line` printed exactly once, and no progress line printed again as a log record ("[time][logger][INFO] - ...")."""
    return out.stdout.count(line) == 1 and "][INFO] - " not in out.stdout + out.stderr


@pytest.mark.slow
def test_rerun_and_resume_reproduce_both_matrices_and_print_each_line_once(tmp_path, killed_sweep):
    run_dir = tmp_path / "run"
    job = ["model=hope", "epochs_per_task=2", "logger=none"]
    assert run_cli(*job, f"hydra.run.dir={run_dir}").returncode == 0
    whole = _results(run_dir)
    out = run_script("rerun.py", run_dir)
    assert out.returncode == 0, out.stderr
    assert "identical: the accuracy and loss matrices" in out.stdout
    assert _printed_once(out, "hope finished Task_0 (1/2, step 4)") and _printed_once(out, "hope finished Task_1 (2/2")
    (new,) = (run_dir / "reruns").iterdir()
    for key in ("accuracy_matrix", "loss_matrix"):
        assert _results(new)[key] == whole[key], key

    # A loss that differs in its last digits, with every accuracy equal, is a failed reproduction.
    tampered = json.loads(json.dumps(whole))
    tampered["loss_matrix"][1][0] += 1e-12
    (run_dir / "results.json").write_text(json.dumps(tampered))
    out = run_script("rerun.py", run_dir)
    assert out.returncode == 1 and "DIFFERENT loss matrix:" in out.stdout and "DIFFERENT accuracy" not in out.stdout

    # Killed after a checkpoint inside Task_1 (the killed sweep's second job): resumed, it prints Task_1's line once.
    out, killed = killed_sweep.resumed, killed_sweep.killed / killed_sweep.jobs[1]
    assert out.returncode == 0, out.stderr
    assert "transformer finished Task_0" not in out.stdout and _printed_once(out, "transformer finished Task_1 (2/2, step 40)")
    resumed = _results(killed)
    assert resumed["resumed"] == 1 and resumed["status"] == "complete"
    for key in ("accuracy_matrix", "loss_matrix"):
        assert resumed[key] == _results(killed_sweep.whole / killed_sweep.jobs[1])[key], key


def test_rerun_rejects_a_path_that_is_not_a_run(tmp_path):
    out = run_script("rerun.py", tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip() == f"error: {tmp_path}: not a run directory (no results.json); give a directory written by nested_learning.train"


def _tensorboard_scalars(run_dir):
    """{(tag, step): [values]} as TensorBoard shows them: event files in order, and a run restarted at
    step s (a SessionLog START, written by SummaryWriter(purge_step=s)) hides what came before from s on."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.compat.proto.event_pb2 import SessionLog
    from tensorboard.util.tensor_util import make_ndarray

    seen = {}
    for path in sorted((run_dir / "tb").glob("events.out.tfevents.*")):
        for event in EventFileLoader(str(path)).Load():
            if event.HasField("session_log") and event.session_log.status == SessionLog.START:
                seen = {key: values for key, values in seen.items() if key[1] < event.step}
            for value in event.summary.value:  # the loader stores scalars as tensors of the scalars plugin
                if value.metadata.plugin_data.plugin_name == "scalars":
                    seen.setdefault((value.tag, event.step), []).append(float(make_ndarray(value.tensor)))
    return seen


@pytest.mark.slow
def test_sigkill_in_second_task_then_resume_gives_the_same_matrix_and_tensorboard(killed_sweep):
    # The killed sweep's second job: killed after epoch 3 and its checkpoint, two epochs into task 2 (of 4), resumed.
    killed, whole = (sweep / killed_sweep.jobs[1] for sweep in (killed_sweep.killed, killed_sweep.whole))
    assert killed_sweep.whole_out.returncode == 0, killed_sweep.whole_out.stderr
    interrupted = killed_sweep.cut
    assert interrupted["status"] == "running" and len(interrupted["accuracy_matrix"]) == 1
    assert_resume_matches(killed, whole, killed_sweep.resumed)
    # TensorBoard: every step once, as in the uninterrupted run, though the killed run had logged past its checkpoint.
    shown, straight = _tensorboard_scalars(killed), _tensorboard_scalars(whole)
    assert len(list((killed / "tb").glob("events.out.tfevents.*"))) == 2
    assert [key for key, values in shown.items() if len(values) > 1] == []
    assert shown.keys() == straight.keys()
    last = max(step for tag, step in shown if tag == "train/loss")
    assert shown[("train/loss", last)] == straight[("train/loss", last)]


@pytest.mark.slow
def test_tensorboard_has_curves_per_task_heatmap_and_hparams(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    # An `srun` on PATH (a Slurm client, as on a cluster's login node) must not make Lightning warn.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "srun").chmod(0o755)
    out = run_cli("-m", "model=hope", "seed=0,1", "epochs_per_task=2", f"hydra.sweep.dir={tmp_path}",
                  env_extra={"PATH": f"{bin_dir}:{os.environ['PATH']}"})
    assert out.returncode == 0, out.stderr
    assert "srun" not in out.stderr
    assert "job 1/2: 0_epochs_per_task=2,model=hope,seed=0" in out.stdout  # which job of how many
    assert "job 2/2: 1_epochs_per_task=2,model=hope,seed=1" in out.stdout
    (job,) = tmp_path.glob("0_*")
    assert job.name == "0_epochs_per_task=2,model=hope,seed=0"  # readable run names in TensorBoard
    events = EventAccumulator(str(job / "tb")).Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"train/loss/Task_0", "train/loss/Task_1", "eval/acc/Task_0", "eval/acc/Task_1", "hp/forgetting"} <= scalars
    assert len(events.Scalars("eval/acc/Task_0")) == 1 + 4  # before training + every epoch
    # every training step's loss once, in order: held back until the epoch's end, none lost or repeated
    assert [e.step for e in events.Scalars("train/loss")] == list(range(8))
    # the final metrics, once at the last step: no placeholder 0 at step 0 drawing a ramp
    assert [(e.step, round(e.value, 6)) for e in events.Scalars("hp/acc")] == [(8, round(_results(job)["metrics"]["acc"], 6))]
    assert "retention/accuracy_matrix" in events.Tags()["images"]
    plugins = {tag for tag, content in events.summary_metadata.items() if content.plugin_data.plugin_name == "hparams"}
    assert plugins, "no HParams summary"
    assert (tmp_path / "summary.md").is_file()


@pytest.mark.slow
def test_optuna_search_reports_the_pareto_front_of_acc_and_forgetting(optuna_search):
    from omegaconf import OmegaConf

    tmp_path, out = optuna_search
    assert out.returncode == 0, out.stderr
    assert "\x1b[" not in out.stderr and "setup plugin" not in out.stdout  # no coloured Optuna line, no alembic lines
    assert "job 3/3: 2_" in out.stdout
    runs = [_results(job) for job in sorted(tmp_path.glob("[0-9]_*"))]
    points = [(r["metrics"]["acc"], r["metrics"]["forgetting"]) for r in runs]
    front = [p for p in points if not any(q[0] >= p[0] and q[1] <= p[1] and q != p for q in points)]
    saved = OmegaConf.to_container(OmegaConf.load(tmp_path / "optimization_results.yaml"))
    assert sorted(tuple(s["values"]) for s in saved["solutions"]) == sorted(front)
    assert f"Number of Pareto solutions: {len(front)}" in out.stdout
    # each trial's retention table is labelled with its rates; the summary marks the front
    assert len(re.findall(r"HOPE RETENTION  \(seed 7\) *\n *model=hope rates\.fast=0\.", out.stdout)) == 3
    assert "Pareto" in out.stdout and (tmp_path / "summary_scatter.png").is_file()


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _running(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
def test_a_joblib_sweep_killed_by_sigterm_stops_its_workers_and_resumes(tmp_path):
    """`kill` on a joblib sweep reaches its launching process only: the loky workers must not go on training as
    orphans (beside a resume of the same sweep); they stop, and scripts/resume.py finishes both jobs."""
    sweep = tmp_path / "sweep"
    launcher = subprocess.Popen(
        [sys.executable, "-m", "nested_learning.train", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
         "model=transformer", "seed=0,1", "epochs_per_task=[1,40]", "task.repeats=32", "logger=none",
         f"hydra.sweep.dir={sweep}"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    checkpoints = lambda: list(sweep.glob("*/checkpoints/last.ckpt"))  # noqa: E731
    deadline = time.monotonic() + 240
    while len(checkpoints()) < 2 and time.monotonic() < deadline and launcher.poll() is None:
        time.sleep(0.2)
    assert len(checkpoints()) == 2, "both jobs should have finished their first task"
    workers = [pid for pid in _children(launcher.pid) if "popen_loky" in Path(f"/proc/{pid}/cmdline").read_text()]
    assert len(workers) == 2
    launcher.send_signal(signal.SIGTERM)
    launcher.wait(timeout=30)
    deadline = time.monotonic() + 10
    while any(map(_running, workers)) and time.monotonic() < deadline:
        time.sleep(0.2)
    orphans = [pid for pid in workers if _running(pid)]
    for pid in orphans:  # a failed check leaves no process behind
        os.kill(pid, signal.SIGKILL)
    assert not orphans, "the workers went on as orphans"
    states = [json.loads(p.read_text())["status"] for p in sorted(sweep.glob("*/results.json"))]
    assert states and "complete" not in states
    resumed = run_script("resume.py", sweep)
    assert resumed.returncode == 0, resumed.stderr
    assert "from its checkpoint" in resumed.stdout
    assert [json.loads(p.read_text())["status"] for p in sorted(sweep.glob("*/results.json"))] == ["complete"] * 2
