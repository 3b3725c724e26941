"""A continual-learning strategy outside the package: an L2 anchor to the previous task's weights.

After each task the weights theta* are kept; training on later tasks adds

    lam / 2 * sum_i (theta_i - theta*_i)^2

to the loss: EWC (nested_learning/strategies/ewc.py) with every Fisher weight 1, the simplest
regulariser towards what was learned. The anchor is part of `state_dict`, so a resumed run keeps it.
"""
from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch

from nested_learning.errors import UserError
from nested_learning.strategies.base import Strategy


class L2Anchor(Strategy):
    def __init__(self, lam: float):
        if lam < 0:
            raise UserError(f"strategy.lam={lam}: the penalty's strength must be >= 0")
        self.lam = float(lam)
        self.anchor: dict[str, torch.Tensor] | None = None  # parameter name -> theta* after the last task

    def loss_term(self, module, inputs, targets, logits, per_rank) -> torch.Tensor | None:
        if self.anchor is None:
            return None
        squared = sum(((p - self.anchor[n]) ** 2).sum() for n, p in module.net.named_parameters())
        return self.lam / 2 * squared

    def on_task_end(self, trainer: pl.Trainer, module, task: int) -> None:
        self.anchor = {n: p.detach().clone() for n, p in module.net.named_parameters()}

    def state_dict(self) -> dict[str, Any]:
        return {"anchor": self.anchor}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.anchor = state_dict["anchor"]
