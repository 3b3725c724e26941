"""A LightningDataModule that walks a task sequence inside ONE Trainer.fit.

The current task is chosen from the epoch number, so a single Trainer covers the whole sequence and
`global_step` grows monotonically across tasks (TensorBoard curves of successive tasks line up). The
Trainer must reload dataloaders every epoch (`reload_dataloaders_every_n_epochs=1`).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from nested_learning.cli.config_checks import epoch_schedule
from nested_learning.data.tasks import TaskSequence
from nested_learning.data.vocab import Vocabulary
from nested_learning.run.distributed import rank_share
from nested_learning.errors import UserError


class ChoosesTrainingData(Protocol):
    """What the data module asks of a strategy (strategies/base.py), which in turn knows this module."""

    def train_loader(self, data: TaskSequenceDataModule, task: int, epoch: int) -> DataLoader: ...


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's random choices: a function of (run seed, epoch) only."""
    return seed * 100_003 + epoch


@dataclass(frozen=True)
class StoppingRule:
    """When a task's training stops before its cap (`epochs_per_task`): its validation accuracy reached
    `target`, or `patience` epochs passed without a new best (one that beats the best so far by more
    than `min_delta`, as in Lightning's EarlyStopping). Both None: every task runs to its cap.
    `metric` is the accuracy it reads (None: eval.metric). Token accuracy is 1 exactly when sequence
    accuracy is, and it rises smoothly where sequence accuracy sits at 0 for epochs before it jumps,
    which patience would take for a plateau. (train.py checks the values: target in (0, 1], patience >= 1.)"""

    target: float | None = None
    patience: int | None = None
    metric: str | None = None
    min_delta: float = 0.0

    @property
    def active(self) -> bool:
        return self.target is not None or self.patience is not None

    def reason(self, history: Sequence[float]) -> str | None:
        """Why the rule stops the task after `history`, its validation accuracy after each of its epochs
        so far ('reached 0.962 (stopping.target=0.95)'); None while it goes on."""
        if self.target is not None and history[-1] >= self.target:
            return f"reached {history[-1]:.3f} (stopping.target={self.target:g})"
        if self.patience is not None:
            best = 0  # the epoch of the best value so far; a tie or a gain of at most min_delta is no new best
            for epoch, value in enumerate(history):
                if value > history[best] + self.min_delta:
                    best = epoch
            if len(history) - 1 - best >= self.patience:
                return (f"has not beaten its best, {history[best]:.3f} after epoch {best + 1}, for {self.patience} "
                        f"epochs (stopping.patience={self.patience}, min_delta={self.min_delta:g})")
        return None


class TaskSchedule:
    """Which task each epoch trains: every task up to its cap, ended sooner by a stopping rule.

    `epochs` holds, per task, the epochs it took once finished and its cap before: so the epoch ->
    task map is exact for every epoch trained so far and the next one, and later tasks are placed as
    if they run to their caps. Its state travels in checkpoints (the data module's), so a resumed run
    makes the same decisions.
    """

    def __init__(self, caps: list[int], rule: StoppingRule):
        self.caps, self.rule = caps, rule
        self.taken: list[int] = []  # epochs each finished task took
        self.history: list[float | None] = []  # the current task's validation accuracy after each of its epochs
        self.stopped_early: str | None = None  # the rule's reason, when the task that just ended stopped before its cap

    @property
    def epochs(self) -> list[int]:
        return self.taken + self.caps[len(self.taken):]

    def end_epoch(self, accuracy: float | None) -> bool:
        """Record an epoch of the current task and its validation accuracy (None: not measured, no
        rule); True when the task ends with it."""
        self.history.append(accuracy)
        at_cap = len(self.history) == self.caps[len(self.taken)]
        self.stopped_early = None if at_cap or not self.rule.active else self.rule.reason(self.history)
        done = at_cap or self.stopped_early is not None
        if done:
            self.taken.append(len(self.history))
            self.history = []
        return done

    def state_dict(self) -> dict[str, Any]:
        return {"taken": list(self.taken), "history": list(self.history)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.taken, self.history = list(state["taken"]), list(state["history"])


class EpochShuffle(torch.utils.data.Sampler[int]):
    """A permutation that depends only on (seed, epoch), recomputed on every iter().

    Lightning may iterate a loader more than once (e.g. when it restarts from a checkpoint); a
    shared generator would then advance and give a resumed run other batches than an uninterrupted one.
    """

    def __init__(self, size: int, seed: int, epoch: int):
        self.size, self.seed = size, epoch_seed(seed, epoch)

    def __len__(self) -> int:
        return self.size

    def __iter__(self):
        return iter(torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed)).tolist())


class TaskSequenceDataModule(pl.LightningDataModule):
    def __init__(
        self,
        sequence: TaskSequence,
        epochs_per_task: int | Sequence[int],
        batch_size: int,
        seed: int,
        strategy: ChoosesTrainingData,
        stopping: StoppingRule = StoppingRule(),
    ):
        """`strategy` chooses each epoch's training data (see strategies/base.py; `Naive()`: the current task's).

        `epochs_per_task` is every task's epoch count, or its cap under an active `stopping` rule.
        """
        super().__init__()
        if batch_size < 1:
            raise UserError(f"batch_size={batch_size}: must be an integer >= 1")
        self.sequence = sequence
        self.vocab = Vocabulary(sequence)
        self.schedule = TaskSchedule(epoch_schedule(epochs_per_task, len(sequence.tasks)), stopping)
        self.batch_size = batch_size
        self.seed = seed
        self.strategy = strategy
        self.train_sets = [
            TensorDataset(*self.vocab.encode(task.train * sequence.repeats)) for task in sequence.tasks
        ]
        self.eval_sets = {  # split -> one dataset per task
            split: [TensorDataset(*self.vocab.encode(task.splits[split])) for task in sequence.tasks]
            for split in sequence.split_names
        }

    @property
    def task_names(self) -> list[str]:
        return self.sequence.names

    @property
    def epochs(self) -> list[int]:
        """Epochs per task: taken by the finished tasks, the cap for the rest (see TaskSchedule)."""
        return self.schedule.epochs

    @property
    def task_of_epoch(self) -> list[int]:
        """epoch -> task index, e.g. [0, 0, 0, 1, 1, 1] for 3 epochs on each of two tasks."""
        return [t for t, n in enumerate(self.epochs) for _ in range(n)]

    @property
    def last_epoch_of_task(self) -> list[int]:
        return [e - 1 for e in itertools.accumulate(self.epochs)]

    @property
    def total_epochs(self) -> int:
        return sum(self.epochs)

    def state_dict(self) -> dict[str, Any]:
        return self.schedule.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.schedule.load_state_dict(state_dict)

    def current_task(self) -> int:
        return self.task_of_epoch[min(self.trainer.current_epoch, self.total_epochs - 1)]

    def train_dataloader(self) -> DataLoader:
        """This rank's share of each of the epoch's global batches (distributed.py; one process: all of it)."""
        loader = self.strategy.train_loader(self, self.current_task(), self.trainer.current_epoch)
        return rank_share(loader, self.trainer.global_rank, self.trainer.world_size, self.vocab.pad_id)

    def shuffled_loader(self, dataset: Dataset, epoch: int) -> DataLoader:
        """Batches of `dataset` in an order that depends on (seed, epoch) only."""
        # Never on RNG state left by earlier work, so a job gives the same batches alone, inside a
        # sweep, or resumed from a checkpoint. The loader's own generator only seeds workers; giving
        # it one keeps iter() from drawing on the global RNG that dropout uses.
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=EpochShuffle(len(dataset), self.seed, epoch),
            generator=torch.Generator().manual_seed(self.seed),
        )

    def allowed_targets(self, task: int, trained: int) -> torch.Tensor | None:
        """The vocabulary ids an evaluation of `task` may predict after training tasks 0..trained
        (-1: none), or None for any token (TaskSequence.allowed_labels)."""
        labels = self.sequence.allowed_labels(task, trained)
        return None if labels is None else torch.tensor([self.vocab.index[w] for w in labels], dtype=torch.long)

    def eval_dataloaders(self) -> dict[str, list[DataLoader]]:
        """For each evaluation split, one loader per task, in sequence order."""
        # One batch per task where it fits (evaluation is every epoch), bounded for large user tasks.
        return {
            split: [DataLoader(ds, batch_size=max(self.batch_size, min(len(ds), 1024))) for ds in sets]
            for split, sets in self.eval_sets.items()
        }
