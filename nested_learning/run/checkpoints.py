"""Checkpoints: resuming a killed run exactly where its last finished epoch left it, and the trained model.

While a run goes, `checkpoints/last.ckpt` is rewritten atomically at the end of every task but the
last and of any epoch that ends at least `every_seconds` after the previous save, after the
retention callback's evaluation (callbacks run in list order). It holds the model, the optimizer,
the epoch counter, the accuracy-matrix rows measured so far and the torch RNG state that dropout
draws from. The data order depends only on (seed, epoch), so a resumed run repeats the epochs after
its checkpoint exactly. Saving costs about as much as one epoch of a tiny model, hence the interval
rather than every epoch.

At the end of its last task every run writes `checkpoints/final.ckpt` (the same contents, at the
state it ends with; `load_run` reads it), before results.json says "complete"; `last.ckpt` is then
removed, since a complete run is never resumed. A run killed between the two resumes from
`last.ckpt` and writes `final.ckpt` again.

`resume=true` continues a run from its checkpoint; `resume=auto` (how a sweep is finished) leaves a
complete run alone, continues an interrupted one from its checkpoint, and runs one that has none
from the beginning.
"""
from __future__ import annotations

import fnmatch
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from nested_learning.data.datamodule import TaskSequenceDataModule
from nested_learning.errors import UserError
from nested_learning.analysis.results import RESULTS_FILE, load_results

CHECKPOINT = Path("checkpoints") / "last.ckpt"
FINAL_CHECKPOINT = Path("checkpoints") / "final.ckpt"
# Test-only: "EPOCH:WHEN[:GLOB]" makes a run SIGKILL itself after its EPOCH-th epoch (counted from 1 over
# the whole sequence), WHEN "before" or "after" that epoch's checkpoint (if it writes one), in a run
# directory matching GLOB (default: any). Tests kill runs at an exact point with it instead of racing a clock.
TEST_SIGKILL_ENV = "NESTED_LEARNING_TEST_SIGKILL"


@dataclass
class ResumePlan:
    """What a run directory asks for, given the resume mode."""

    complete: dict[str, Any] | None = None  # the saved record of a finished run: nothing to do
    previous: dict[str, Any] | None = None  # the interrupted run's record, when there is one
    checkpoint: Path | None = None  # continue from here
    epoch: int = -1  # last epoch (0-based) the checkpoint finished
    step: int = 0  # its global step
    schedule: dict[str, Any] | None = None  # the data module's state there: which epochs each task took

    @property
    def tensorboard_purge_step(self) -> int | None:
        """Hide the events the killed run logged after its checkpoint (or all of them, when starting over)."""
        if self.checkpoint is not None:
            # The resumed run's first training step logs at the checkpoint's step, as the killed run did
            # after saving; the evaluation logged there before saving is logged again (RetentionCallback).
            return self.step
        return 0 if self.previous is not None else None


def finished_epochs(record: dict[str, Any]) -> int:
    """Epochs a (possibly killed) run finished, from its progress record."""
    return max((c["epoch"] + 1 for c in record.get("curves", [])), default=0)


def plan_resume(run_dir: Path, mode: bool | str, checkpoint_every_s: float | None) -> ResumePlan:
    if not mode:
        return ResumePlan()
    run_dir = Path(run_dir)
    if mode == "auto" and not (run_dir / RESULTS_FILE).is_file():
        return ResumePlan()  # never started (or killed before its first evaluation): run it
    saved = load_results(run_dir)
    if saved.get("status") == "complete":
        if mode == "auto":
            return ResumePlan(complete=saved)
        raise UserError(f"resume=true: the run in {run_dir} is complete; use scripts/rerun.py to run it again")
    plan = ResumePlan(previous=saved)
    path = run_dir / CHECKPOINT
    if path.is_file():
        state = torch.load(path, map_location="cpu", weights_only=False)  # our own file
        plan.checkpoint, plan.epoch, plan.step = path, int(state["epoch"]), int(state["global_step"])
        plan.schedule = state.get(TaskSequenceDataModule.__qualname__)
    elif mode is True:
        raise UserError(no_checkpoint_message(run_dir, saved, checkpoint_every_s))
    return plan


def no_checkpoint_message(run_dir: Path, saved: dict[str, Any], checkpoint_every_s: float | None) -> str:
    done = finished_epochs(saved)
    if checkpoint_every_s is None:
        when = "checkpoints are off for it (checkpoint_every_s=null)"
    else:
        when = (f"it was stopped before its first checkpoint, which is written at the end of each task and, "
                f"within a task, {checkpoint_every_s:g} s after the previous one (checkpoint_every_s)")
    return (f"resume=true: {run_dir} has no checkpoint: {done} epoch(s) finished (results.json), but {when}; "
            f"to run it again from the beginning in the same directory: python scripts/resume.py --restart {run_dir}")


def describe_position(plan: ResumePlan, task_of_epoch: list[int], task_names: list[str]) -> str:
    """E.g. 'after epoch 4 of 8 (Task_1: epoch 2 of 6), step 40'."""
    task = task_of_epoch[plan.epoch]
    first = task_of_epoch.index(task)
    in_task = plan.epoch - first + 1
    return (f"after epoch {plan.epoch + 1} of {len(task_of_epoch)} ({task_names[task]}: epoch {in_task} "
            f"of {task_of_epoch.count(task)}), step {plan.step}")


def kill_point_for_tests(run_dir: Path) -> tuple[int, str] | None:
    """(epoch counted from 1, "before" or "after") where this run kills itself, from TEST_SIGKILL_ENV."""
    spec = os.environ.get(TEST_SIGKILL_ENV)
    if not spec:
        return None
    epoch, when, *pattern = spec.split(":", 2)
    if when not in ("before", "after"):
        raise ValueError(f"{TEST_SIGKILL_ENV}={spec!r}: give EPOCH:before or EPOCH:after, then optionally :GLOB")
    if pattern and not fnmatch.fnmatch(str(run_dir), pattern[0]):
        return None
    return int(epoch), when


class EpochCheckpoint(pl.Callback):
    """`every_seconds` None: no resume checkpoints (`checkpoint_every_s=null`); the final one is always written."""

    def __init__(self, run_dir: str | Path, every_seconds: float | None):
        self.path = Path(run_dir) / CHECKPOINT
        self.final_path = Path(run_dir) / FINAL_CHECKPOINT
        self.every_seconds = every_seconds
        self.last_save = time.monotonic()
        self.kill_at = kill_point_for_tests(Path(run_dir))
        self.finished = False  # this process wrote the final checkpoint

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch, dm = trainer.current_epoch, trainer.datamodule
        if not trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            return  # cut short (max_steps, max_time): resuming from here would skip the rest of the epoch
        self._test_kill(epoch, "before")
        if epoch == dm.last_epoch_of_task[-1]:
            # The last task ended (at its cap, or sooner under a stopping rule): the state the run ends with.
            self._save(trainer, self.final_path)
            self.finished = True
        elif self.every_seconds is not None and trainer.strategy.broadcast(
            epoch in dm.last_epoch_of_task or time.monotonic() - self.last_save >= self.every_seconds
        ):  # saving is collective under DDP: every rank follows rank 0's clock
            self._save(trainer, self.path)
        self._test_kill(epoch, "after")

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.finished and trainer.is_global_zero:
            self.path.unlink(missing_ok=True)  # results.json says "complete" now (the retention callback ran first)

    def _save(self, trainer: pl.Trainer, path: Path) -> None:
        self.last_save = time.monotonic()
        partial = path.with_suffix(".partial")
        if trainer.is_global_zero:
            path.parent.mkdir(parents=True, exist_ok=True)
        trainer.save_checkpoint(partial)  # written by rank 0 only (under DDP); every rank returns once it is
        if trainer.is_global_zero:
            os.replace(partial, path)  # a kill mid-save leaves the previous checkpoint intact

    def _test_kill(self, epoch: int, when: str) -> None:
        if self.kill_at == (epoch + 1, when):
            os.kill(os.getpid(), signal.SIGKILL)

    def state_dict(self) -> dict[str, Any]:
        return {"torch_rng": torch.get_rng_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        torch.set_rng_state(state_dict["torch_rng"])
