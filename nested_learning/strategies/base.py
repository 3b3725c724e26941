"""What every strategy can change, and naive fine-tuning, which changes nothing.

The framework consults the strategy at three points, so no model code knows about it:

- `train_loader(data, task, epoch)`: the data module's training loader for one epoch
  (joint: the union of the tasks so far; replay: the current task mixed with a buffer);
- `loss_term(module, inputs, targets, logits, per_rank)`: a term `ContinualLM.training_step` adds to the
  next-token loss (EWC's quadratic penalty, LwF's distillation); a term averaged over tokens divides
  its sum by `per_rank`, as the loss does, so that it is the global batch's mean under DDP too;
- `on_task_end(trainer, module, task)`: after the last epoch of each task (EWC's Fisher, LwF's teacher).

A strategy is also a Lightning callback (registered by `train.build` before the checkpoint callback),
so what it accumulates travels in `last.ckpt` through `state_dict` and a resumed run continues with it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

if TYPE_CHECKING:
    from nested_learning.data.datamodule import TaskSequenceDataModule
    from nested_learning.run.lit_module import ContinualLM


class Strategy(pl.Callback):
    """Default behaviour at every consultation point: the current task's data, no extra loss, nothing kept."""

    def train_loader(self, data: TaskSequenceDataModule, task: int, epoch: int) -> DataLoader:
        return data.shuffled_loader(data.train_sets[task], epoch)

    def loss_term(
        self, module: ContinualLM, inputs: torch.Tensor, targets: torch.Tensor, logits: torch.Tensor, per_rank: float
    ) -> torch.Tensor | None:
        """A scalar added to the training loss, or None when there is nothing to add.

        `inputs`, `targets`, `logits` are this rank's share of the global batch; `per_rank` is the
        global batch's non-padding targets over the number of ranks (one process: the batch's count).
        DDP averages the ranks' gradients: a term that depends on the parameters only is the same on
        every rank and needs no scaling.
        """
        return None

    def on_task_end(self, trainer: pl.Trainer, module: ContinualLM, task: int) -> None:
        """Called once after the last epoch of `task`, with the model as it finished that task."""

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: ContinualLM) -> None:
        data: TaskSequenceDataModule = trainer.datamodule
        epoch = trainer.current_epoch
        # Not after the last task: what on_task_end prepares (a Fisher, a teacher) is for the next one.
        if epoch in data.last_epoch_of_task and epoch < data.total_epochs - 1:
            self.on_task_end(trainer, pl_module, data.task_of_epoch[epoch])


class Naive(Strategy):
    """Fine-tune on each task in turn, nothing else: the lower bound every strategy is compared with."""
