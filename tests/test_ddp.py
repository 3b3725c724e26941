"""Training on several devices with Lightning's DDP (nested_learning/run/distributed.py, docs/ddp.md).

The end-to-end tests launch the real command in a subprocess, as a user does: Lightning starts
rank 1 by running that command again, which inside pytest would be pytest. Two CPU ranks
(trainer=ddp_cpu) must compute what one process computes, and leave no process behind.
"""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from nested_learning.data.datamodule import TaskSequenceDataModule
from nested_learning.data.tasks import from_sentences
from nested_learning.run.distributed import RankShares, rank_share, refuse_unsupported
from nested_learning.errors import SweepError, UserError
from nested_learning.strategies.base import Naive
from nested_learning.strategies.joint import Joint
from nested_learning.strategies.replay import Replay

from .conftest import assert_resume_matches, compose_config, kill_env, run_cli

# 2 tasks x 36 sentences, global batches of 5: the ranks' shares differ in size (3 and 2), and each
# epoch's last batch holds 1 example, so rank 1 gets a copy that counts in no loss. No dropout (GRU).
JOB = ["model=rnn", "strategy=lwf", "task.repeats=9", "batch_size=5", "epochs_per_task=[1,2]", "checkpoint_every_s=0",
       "logger=none"]
TIMEOUT = 400


def _results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


def living_processes(marker: str) -> list[str]:
    """Command lines of the processes (zombies aside) whose command line contains `marker`."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if not proc.name.isdigit() or int(proc.name) == os.getpid():
                continue
            if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # it exited meanwhile
            continue
        if marker in cmdline:
            found.append(cmdline)
    return found


def three_tasks(strategy) -> TaskSequenceDataModule:
    sequence = from_sentences("abc", {f"T{i}": [f"w{i} x{j} y z" for j in range(7)] for i in range(3)}, repeats=2)
    return TaskSequenceDataModule(sequence, 2, batch_size=5, seed=3, strategy=strategy)


def served(dm: TaskSequenceDataModule, epoch: int, rank: int, world_size: int) -> list[tuple[list, list]]:
    dm.trainer = SimpleNamespace(current_epoch=epoch, datamodule=dm, global_rank=rank, world_size=world_size)
    return [(x.tolist(), y.tolist()) for x, y in dm.train_dataloader()]


@pytest.mark.parametrize("strategy", [Naive, Joint, lambda: Replay(buffer_size=6, fraction=0.5)])
def test_the_ranks_shares_make_up_one_process_batches(strategy):
    dm = three_tasks(strategy())
    for epoch in range(dm.total_epochs):
        whole = served(dm, epoch, 0, 1)
        ranks = [served(dm, epoch, rank, 3) for rank in range(3)]
        assert all(len(r) == len(whole) for r in ranks)  # every rank takes every step
        for step, (inputs, targets) in enumerate(whole):
            shares = [ranks[rank][step] for rank in range(3)]
            counted = [(x, y) for x, y in shares if any(t != dm.vocab.pad_id for row in y for t in row)]  # silent copies aside
            assert [row for x, _ in counted for row in x] == inputs and [row for _, y in counted for row in y] == targets
            assert max(len(x) for x, _ in shares) - min(len(x) for x, _ in shares) <= 1
        dm.strategy.on_train_epoch_end(dm.trainer, None)  # e.g. replay commits the epoch's buffer


def test_a_rank_with_no_share_gets_a_copy_that_counts_in_no_loss():
    dataset = torch.utils.data.TensorDataset(torch.arange(12).view(6, 2), torch.arange(12).view(6, 2) + 1)
    loader = torch.utils.data.DataLoader(dataset, batch_size=4)  # batches of 4 and 2
    # contiguous shares of [0, 1, 2, 3] and of [4, 5]; -5 stands for example 4 with its targets silenced
    assert [list(RankShares(loader.batch_sampler, r, 3)) for r in range(3)] == [[[0], [-5]], [[1], [4]], [[2, 3], [5]]]
    (_, (inputs, targets)) = list(rank_share(loader, 0, 3, pad_id=0))
    assert inputs.tolist() == [[8, 9]] and targets.tolist() == [[0, 0]]


def test_what_ddp_cannot_compute_as_one_process_is_refused_in_one_line():
    import pytorch_lightning as pl

    cfg = compose_config("trainer=ddp_cpu")
    ddp = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp", logger=False)
    refuse_unsupported(cfg, ddp, multirun=False)  # a single run: Lightning starts rank 1
    with pytest.raises(SweepError, match="in a multirun: .* hydra/launcher=slurm_ddp"):
        refuse_unsupported(cfg, ddp, multirun=True)
    spawn = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp_spawn", logger=False)
    with pytest.raises(UserError, match="trainer.strategy=ddp_spawn: processes started by spawn or fork are not supported"):
        refuse_unsupported(compose_config("trainer=ddp_cpu", "trainer.strategy=ddp_spawn"), spawn, multirun=False)
    with pytest.raises(UserError, match="model.cms_state=carry with 2 devices"):
        refuse_unsupported(compose_config("trainer=ddp_cpu", "model=cms", "model.cms_clock=token", "model.cms_state=carry"),
                           ddp, multirun=False)
    refuse_unsupported(cfg, pl.Trainer(accelerator="cpu", devices=1, logger=False), multirun=True)  # one device: no DDP


@pytest.fixture(scope="module")
def whole_runs(tmp_path_factory):
    """The job run uninterrupted with trainer=ddp_cpu and in one process: (ddp dir, its output, one-process dir)."""
    root = tmp_path_factory.mktemp("whole")
    ddp = run_cli(*JOB, "trainer=ddp_cpu", f"hydra.run.dir={root / 'ddp'}", timeout=TIMEOUT)
    assert ddp.returncode == 0, ddp.stderr
    one = run_cli(*JOB, f"hydra.run.dir={root / 'one'}", timeout=TIMEOUT)
    assert one.returncode == 0, one.stderr
    return root / "ddp", ddp, root / "one"


@pytest.mark.slow
def test_ddp_cpu_trains_and_evaluates_as_one_process(whole_runs):
    ddp_dir, out, one_dir = whole_runs
    ddp, one = _results(ddp_dir), _results(one_dir)
    # The same weights (the untrained network) give the identical accuracies: each example counted once.
    assert ddp["initial_accuracies"] == one["initial_accuracies"] and ddp["initial_losses"] == one["initial_losses"]
    # Trained on the same global batches, the ranks' averaged gradients match one process's to float
    # precision (LwF's distillation term included), so every evaluation agrees.
    assert ddp["accuracy_matrices"] == one["accuracy_matrices"]
    for ddp_curve, one_curve in zip(ddp["curves"], one["curves"], strict=True):
        assert ddp_curve["step"] == one_curve["step"]
        assert ddp_curve["loss"] == pytest.approx(one_curve["loss"], rel=1e-5)
    assert ddp["status"] == "complete" and ddp["metrics"] == pytest.approx(one["metrics"])
    # One run directory, written by rank 0; rank 1 kept only its (empty) log; progress printed once.
    assert sorted(p.name for p in ddp_dir.iterdir()) == [".hydra", "checkpoints", "results.json", "train.log",
                                                          "train_ddp_process_1.log"]
    assert [p.name for p in (ddp_dir / "checkpoints").iterdir()] == ["final.ckpt"]
    from nested_learning.run.trained import load_run

    accs, _ = load_run(ddp_dir).evaluate()  # the weights the ranks ended with, read back in this process
    assert accs[ddp["eval_split"]][ddp["eval_metric"]] == ddp["accuracy_matrix"][-1]
    assert out.stdout.count("rnn finished Task_0") == 1 and out.stdout.count("RETENTION") == 1
    assert out.stdout.strip().splitlines()[-1].startswith("wrote ")
    assert living_processes(str(ddp_dir)) == []


@pytest.mark.slow
def test_a_sigkilled_ddp_run_resumes_to_the_uninterrupted_matrices(whole_runs, tmp_path):
    killed = tmp_path / "killed"
    # Every rank SIGKILLs itself after epoch 2 and its checkpoint, one epoch into task 2 (kill_env), as a kill of
    # the job's process group would: rank 0 is the command, rank 1 the copy of it that Lightning started.
    out = run_cli(*JOB, "trainer=ddp_cpu", f"hydra.run.dir={killed}", env_extra=kill_env(2, "after"), timeout=TIMEOUT)
    assert out.returncode == -signal.SIGKILL, out.stderr
    deadline = time.time() + 60  # rank 1 dies at the same point as rank 0, a moment apart
    while living_processes(str(killed)) and time.time() < deadline:
        time.sleep(0.1)
    assert living_processes(str(killed)) == []
    cut = _results(killed)
    assert cut["status"] == "running" and len(cut["curves"]) == 1 + 2, "the kill missed epoch 2"
    assert_resume_matches(killed, whole_runs[0])
    assert living_processes(str(killed)) == []


@pytest.mark.slow
def test_a_failing_ddp_run_stops_every_rank_with_one_line_and_keeps_its_rows(tmp_path):
    run_dir = tmp_path / "run"
    out = run_cli("model=rnn", "trainer=ddp_cpu", "epochs_per_task=[1,1]", "optimizer.lr=1e30", "logger=none",
                  f"hydra.run.dir={run_dir}", timeout=TIMEOUT)
    assert out.returncode == 2, out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith("error: training loss is nan"), out.stderr
    saved = _results(run_dir)
    assert saved["status"] == "failed" and "NonFiniteLossError" in saved["error"] and len(saved["initial_accuracy"]) == 2
    assert living_processes(str(run_dir)) == []


@pytest.mark.slow
def test_a_multirun_with_ddp_stops_with_one_line(tmp_path):
    out = run_cli("-m", "model=rnn", "trainer=ddp_cpu", "seed=0,1", "epochs_per_task=1", "logger=none",
                  f"hydra.sweep.dir={tmp_path}", timeout=TIMEOUT)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "error: trainer.strategy=ddp_find_unused_parameters_true with 2 devices in a multirun: Lightning re-launches the whole command for each rank, so "
        "every rank would start the sweep again (Lightning issue 11300, Hydra issue 2070); sweep with hydra/launcher=slurm_ddp "
        "(Slurm starts the ranks), or launch each run on its own"]
    assert not list(tmp_path.glob("*/results.json")) and living_processes(str(tmp_path)) == []


def test_the_slurm_ddp_launcher_gives_each_job_one_task_per_device_on_each_node():
    from hydra import compose, initialize_config_dir

    from .conftest import CONF

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", return_hydra_config=True,
                      overrides=["hydra/launcher=slurm_ddp", "trainer=ddp", "trainer.devices=4", "trainer.num_nodes=3"])
    launcher = cfg.hydra.launcher
    assert (launcher.tasks_per_node, launcher.nodes, launcher.gpus_per_node) == (4, 3, 4)
    assert launcher._target_.endswith("SlurmLauncher") and launcher.setup == ["export OMP_NUM_THREADS=1"]
