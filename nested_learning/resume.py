"""Checkpoints for resuming a killed run exactly where its last finished epoch left it.

`last.ckpt` is rewritten atomically at the end of every task and of any epoch that ends at least
`every_seconds` after the previous save, after the retention callback's evaluation (callbacks run
in list order). It holds the model, the optimizer, the epoch counter, the accuracy-matrix rows
measured so far and the torch RNG state that dropout draws from. The data order depends only on
(seed, epoch), so a resumed run repeats the epochs after its checkpoint exactly. Saving costs about
as much as one epoch of a tiny model, hence the interval rather than every epoch.

    python -m nested_learning.train --config-path $RUN/.hydra --config-name config hydra.run.dir=$RUN resume=true
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from nested_learning.errors import UserError

CHECKPOINT = Path("checkpoints") / "last.ckpt"


def interrupted_run(run_dir: Path) -> dict[str, Any]:
    """The results record of the run to resume; a finished run has nothing to resume."""
    from nested_learning.results import load_results

    saved = load_results(run_dir)
    if saved.get("status") == "complete":
        raise UserError(f"resume=true: the run in {run_dir} is complete; use scripts/rerun.py to run it again")
    return saved


def checkpoint_to_resume(run_dir: Path) -> Path:
    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        raise UserError(f"resume=true: no checkpoint at {path}; resume needs a run directory whose run finished at least one epoch")
    return path


class EpochCheckpoint(pl.Callback):
    def __init__(self, run_dir: str | Path, every_seconds: float):
        self.path = Path(run_dir) / CHECKPOINT
        self.every_seconds = every_seconds
        self.last_save = time.monotonic()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch, dm = trainer.current_epoch, trainer.datamodule
        if not trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            return  # cut short (max_steps, max_time): resuming from here would skip the rest of the epoch
        if epoch == dm.total_epochs - 1:
            return  # the run is complete: nothing left to resume
        task_end = epoch in dm.last_epoch_of_task
        if not task_end and time.monotonic() - self.last_save < self.every_seconds:
            return
        self.last_save = time.monotonic()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".partial")
        trainer.save_checkpoint(partial)
        os.replace(partial, self.path)  # a kill mid-save leaves the previous checkpoint intact

    def state_dict(self) -> dict[str, Any]:
        return {"torch_rng": torch.get_rng_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        torch.set_rng_state(state_dict["torch_rng"])
