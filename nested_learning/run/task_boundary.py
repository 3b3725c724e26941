"""What happens to the optimizer when a new task starts."""
from __future__ import annotations

import pytorch_lightning as pl


class ResetOptimizerAtTaskStart(pl.Callback):
    """Clear every optimizer's state (e.g. Adam's moments and step count) on the first epoch of each
    task after the first, as if a fresh optimizer met the new task. Without this callback the state
    carries over, as one optimizer running through the whole sequence would."""

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch
        starts = {last + 1 for last in trainer.datamodule.last_epoch_of_task}
        if epoch in starts:
            for optimizer in trainer.optimizers:
                optimizer.state.clear()
