"""Joint training: each task's epochs run over the union of every task seen so far.

The upper bound of the comparison (Avalanche calls it "cumulative"): nothing can be forgotten that
is still trained on. An epoch on task i therefore has i + 1 times as many batches as a naive one.
"""
from __future__ import annotations

from torch.utils.data import ConcatDataset, DataLoader

from nested_learning.data.datamodule import TaskSequenceDataModule
from nested_learning.strategies.base import Strategy


class Joint(Strategy):
    def train_loader(self, data: TaskSequenceDataModule, task: int, epoch: int) -> DataLoader:
        return data.shuffled_loader(ConcatDataset(data.train_sets[: task + 1]), epoch)
