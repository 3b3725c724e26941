"""One LightningModule for per-position training and evaluation of any network in `models/`.

Targets are next tokens for sentences and explicit per-position targets otherwise (data/vocab.py);
<pad> targets never count in the loss.
"""
from __future__ import annotations

import math
import time
from typing import Callable, Iterable

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from nested_learning.errors import NonFiniteLossError

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
# Training values wait at most this long before they go to the logger (and at every epoch end).
# TensorBoard's writer thread wakes for each value it is handed while it waits; one wake per step
# cost about as much as a tiny model's step on a busy machine, a burst of values wakes it once.
# Its own flush to disk (every 120 s) bounds how live the curves are anyway.
LOG_EVERY_S = 1.0


def token_accuracy(logits: torch.Tensor, targets: torch.Tensor, pad_id: int, count_padding: bool) -> tuple[int, int]:
    """(correct, counted) next-token predictions; padding targets are skipped unless count_padding.

    count_padding=True reproduces the seed demo, whose accuracy also rewards predicting <pad> after
    the end of a sentence.
    """
    correct = logits.argmax(-1) == targets  # (B, T)
    if count_padding:
        return int(correct.sum()), correct.numel()
    real = targets != pad_id
    return int((correct & real).sum()), int(real.sum())


def sequence_accuracy(logits: torch.Tensor, targets: torch.Tensor, pad_id: int, count_padding: bool) -> tuple[int, int]:
    """(correct, counted) sequences: a sequence is right when every position `token_accuracy` counts is right.

    The formal-language protocol's measure (Bhattamishra et al. 2020); a row with no counted position is not counted.
    """
    counted = torch.ones_like(targets, dtype=torch.bool) if count_padding else targets != pad_id  # (B, T)
    wrong = (logits.argmax(-1) != targets) & counted
    rows = counted.any(-1)
    return int((rows & ~wrong.any(-1)).sum()), int(rows.sum())


ACCURACIES = {"token": token_accuracy, "sequence": sequence_accuracy}  # results.json keys -> measure


def restrict(logits: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Logits with every token outside `allowed` (vocabulary ids) at -inf, so the argmax is among
    them; with none allowed the argmax is <pad> (id 0), which no counted target is."""
    out = torch.full_like(logits, float("-inf"))  # (B, T, V)
    out[..., allowed] = logits[..., allowed]
    return out


class ContinualLM(pl.LightningModule):
    def __init__(self, net: nn.Module, optimizer: OptimizerFactory, pad_id: int):
        super().__init__()
        self.net = net
        self.optimizer_factory = optimizer
        self.pad_id = pad_id
        self.last_loss: float | None = None  # the latest training loss, for the progress bar
        self.unlogged: list[tuple[int, dict[str, float]]] = []  # (step, training values) not yet given to the logger
        self.last_flush = time.monotonic()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.net(tokens)  # (B, T, V)

    def next_token_loss(self, logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=self.pad_id, reduction=reduction)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        inputs, targets = batch  # this rank's share of the global batch (distributed.py; one process: all of it)
        logits = self(inputs)  # (B, T, V)
        loss_sum = self.next_token_loss(logits, targets, reduction="sum")
        counted = (targets != self.pad_id).sum()
        # DDP averages the ranks' gradients. Dividing each share's summed loss by the global batch's
        # non-padding targets per rank makes that average the gradient of the global batch's mean
        # loss, however the targets fall between the ranks (one process: the batch mean).
        totals = self.trainer.strategy.reduce(torch.stack([loss_sum.detach(), counted.to(loss_sum.dtype)]), reduce_op="sum")
        global_sum, global_count = totals.tolist()
        per_rank = global_count / self.trainer.world_size
        loss = loss_sum / per_rank
        data = self.trainer.datamodule
        task = data.task_names[data.current_task()]
        # The continual-learning strategy may add a term (EWC's penalty, LwF's distillation).
        extra = data.strategy.loss_term(self, inputs, targets, logits, per_rank)
        total = loss if extra is None else loss + extra
        value = self.last_loss = global_sum / global_count  # the global batch's mean loss
        # The summed loss is the same on every rank, so they all stop here together.
        if not (math.isfinite(value) and (extra is None or torch.isfinite(extra))):
            lr = self.trainer.optimizers[0].param_groups[0]["lr"]
            raise NonFiniteLossError(
                f"training loss is {value if extra is None else value + extra.item()} at step {self.global_step} ({task}); "
                f"lower optimizer.lr (now {lr}) or check the data"
            )
        if self.logger is not None:
            # Straight to the logger: Lightning's self.log bookkeeping cost more than a tiny model's step.
            values = {"train/loss": value, f"train/loss/{task}": value}
            if extra is not None:
                values["train/strategy_term"] = extra.item()
            self.unlogged.append((self.global_step, values))
            if time.monotonic() - self.last_flush >= LOG_EVERY_S:
                self.flush_logs()
        return total

    def flush_logs(self) -> None:
        """Give the logger the training values held back since the last call (see LOG_EVERY_S)."""
        for step, values in self.unlogged:
            self.logger.log_metrics(values, step=step)
        self.unlogged.clear()
        self.last_flush = time.monotonic()

    @torch.no_grad()
    def evaluate(self, loader: Iterable, count_padding: bool = False,
                 allowed: torch.Tensor | None = None) -> tuple[dict[str, float], float]:
        """({accuracy name: accuracy} for every entry of ACCURACIES, mean loss per non-padding token) over a loader, in eval mode.

        `allowed`: the vocabulary ids predictions are chosen among (a classification task's labels
        seen so far, data/text.py); the loss stays the full softmax's.
        """
        was_training = self.training
        self.eval()
        tallies = {name: [0, 0] for name in ACCURACIES}  # name -> [correct, counted]
        loss_sum, loss_count = 0.0, 0
        for inputs, targets in loader:
            logits = self(inputs.to(self.device))
            targets = targets.to(self.device)
            scored = logits if allowed is None else restrict(logits, allowed.to(self.device))
            for name, measure in ACCURACIES.items():
                c, n = measure(scored, targets, self.pad_id, count_padding)
                tallies[name][0] += c
                tallies[name][1] += n
            loss_sum += float(self.next_token_loss(logits, targets, reduction="sum"))
            loss_count += int((targets != self.pad_id).sum())
        self.train(was_training)
        return {name: c / max(n, 1) for name, (c, n) in tallies.items()}, loss_sum / max(loss_count, 1)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        # A net with its own update rule (e.g. CMS levels stepping at their own periods) builds its
        # optimizer from the same factory; every other net gets one optimizer over all parameters.
        configure = getattr(self.net, "configure_optimizer", None)
        if callable(configure):
            return configure(self.optimizer_factory)
        return self.optimizer_factory(self.parameters())
