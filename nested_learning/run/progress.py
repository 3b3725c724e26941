"""Live progress of one long run on a terminal: Lightning's rich progress bar, told about tasks."""
from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import RichProgressBar


class TaskProgressBar(RichProgressBar):
    """Lightning's bar over the batches of an epoch, described by task and epoch within the task, with step and loss.

    Lightning counts epochs over the whole task sequence; a reader thinks in tasks.
    """

    def _get_train_description(self, current_epoch: int) -> str:
        # Lightning's own hook for the description (pytorch-lightning 2.6.6, pinned): "Epoch 7/1499" otherwise.
        data = self.trainer.datamodule
        task = data.task_of_epoch[min(current_epoch, data.total_epochs - 1)]
        first_epoch = data.last_epoch_of_task[task] - data.epochs[task] + 1
        return (f"{data.task_names[task]} ({task + 1}/{len(data.task_names)}) "
                f"epoch {current_epoch - first_epoch + 1}/{data.epochs[task]}")

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        shown: dict[str, Any] = {"step": str(trainer.global_step)}
        if pl_module.last_loss is not None:
            shown["loss"] = f"{pl_module.last_loss:.3f}"
        return shown
