"""Experience replay from a reservoir buffer (the seed's "sample a little of everything").

Every batch holds `batch_size` examples of the current task, in the same order naive fine-tuning
sees them, plus replayed examples drawn from the buffer so that a share `fraction` of the batch is
replayed: k = round(b * fraction / (1 - fraction)) for b current examples (fraction 0.5 doubles
the batch). Replay thus adds examples to every step without taking any away from the current task.
After a batch is drawn, its current examples stream into the buffer by reservoir sampling, so the
buffer stays a uniform sample of everything trained on so far (Chaudhry et al. 2019, "tiny
episodic memories"). Only the very first batch has nothing to replay; within the first task the
buffer replays that task's own earlier examples, as it would for any stream.

The buffer holds example ids into the concatenation of all tasks' training sets. An epoch's batches
are planned when its loader is made, from the buffer as it stood at the start of the epoch and a
generator of its own seeded by (run seed, epoch); the advanced buffer is committed at the end of
the epoch. So the batches are the same however often Lightning asks for or iterates the loader,
and a run resumed from an epoch-end checkpoint continues exactly.
"""
from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import ConcatDataset, DataLoader

from nested_learning.data.datamodule import EpochShuffle, TaskSequenceDataModule, epoch_seed
from nested_learning.errors import UserError
from nested_learning.strategies.base import Strategy


# EpochShuffle seeds its generator with seed * 100_003 + epoch; this offset keeps replay's draws a
# different stream, not a copy of the shuffle's random numbers.
_STREAM = 50_021


class ReservoirBuffer:
    """A uniform sample of at most `capacity` items of a stream (Vitter's algorithm R)."""

    def __init__(self, capacity: int, items: list[int] | None = None, seen: int = 0):
        self.capacity = capacity
        self.items = list(items or [])
        self.seen = seen  # stream items offered so far

    def add(self, stream: list[int], generator: torch.Generator) -> None:
        """Offer items in order: the n-th item ever offered replaces a random slot with probability capacity / n."""
        free = max(0, min(self.capacity - len(self.items), len(stream)))
        self.items += stream[:free]
        self.seen += free
        rest = stream[free:]
        if not rest:
            return
        # item i of `rest` is offered as the (seen + i + 1)-th: a slot uniform in [0, seen + i]
        counts = torch.arange(self.seen + 1, self.seen + len(rest) + 1, dtype=torch.float64)
        slots = (torch.rand(len(rest), generator=generator, dtype=torch.float64) * counts).long().tolist()
        for item, slot in zip(rest, slots):
            if slot < self.capacity:
                self.items[slot] = item  # in stream order: a later item may overwrite an earlier one's slot
        self.seen += len(rest)

    def sample(self, k: int, generator: torch.Generator) -> list[int]:
        """min(k, len) distinct stored items, uniformly."""
        picked = torch.randperm(len(self.items), generator=generator)[:k].tolist()
        return [self.items[i] for i in picked]

    def copy(self) -> ReservoirBuffer:
        return ReservoirBuffer(self.capacity, self.items, self.seen)


class Replay(Strategy):
    def __init__(self, buffer_size: int, fraction: float):
        if not isinstance(buffer_size, int) or buffer_size < 1:
            raise UserError(f"strategy.buffer_size={buffer_size}: must be an integer >= 1")
        if not 0.0 <= fraction < 1.0:
            raise UserError(f"strategy.fraction={fraction}: the replayed share of a batch must lie in [0, 1)")
        self.fraction = fraction
        self.buffer = ReservoirBuffer(buffer_size)
        self._planned: ReservoirBuffer | None = None  # the buffer after the epoch whose loader was made last

    def replay_count(self, fresh: int) -> int:
        return round(fresh * self.fraction / (1.0 - self.fraction))

    def train_loader(self, data: TaskSequenceDataModule, task: int, epoch: int) -> DataLoader:
        generator = torch.Generator().manual_seed(epoch_seed(data.seed, epoch) + _STREAM)
        offset = sum(len(ds) for ds in data.train_sets[:task])
        order = [offset + i for i in EpochShuffle(len(data.train_sets[task]), data.seed, epoch)]
        buffer = self.buffer.copy()
        batches = []
        for start in range(0, len(order), data.batch_size):
            fresh = order[start : start + data.batch_size]
            batches.append(fresh + buffer.sample(self.replay_count(len(fresh)), generator))
            buffer.add(fresh, generator)
        self._planned = buffer
        # Its own generator (it only seeds workers) keeps iter() off the global RNG that dropout draws from.
        return DataLoader(ConcatDataset(data.train_sets), batch_sampler=batches, generator=torch.Generator().manual_seed(data.seed))

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._planned is not None:
            self.buffer, self._planned = self._planned, None
        super().on_train_epoch_end(trainer, pl_module)

    def state_dict(self) -> dict[str, Any]:
        return {"items": list(self.buffer.items), "seen": self.buffer.seen}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.buffer = ReservoirBuffer(self.buffer.capacity, state_dict["items"], state_dict["seen"])
