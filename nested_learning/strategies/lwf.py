"""Learning without Forgetting (Li & Hoiem 2016) for a single-head language model.

At the end of each task the network is kept, frozen, as a teacher. Training on later tasks adds

    alpha * temperature^2 * KL(teacher || student)

of the next-token distributions softened by the temperature, averaged over the batch's non-padding
positions. With one vocabulary and one head there are no task-specific outputs: the distillation
keeps the whole next-token distribution close to the teacher's on the new task's inputs. The
teacher is the model after the previous task, which was itself distilled from the one before.
"""
from __future__ import annotations

import copy
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from nested_learning.errors import UserError
from nested_learning.run.lit_module import ContinualLM
from nested_learning.strategies.base import Strategy


class LwF(Strategy):
    def __init__(self, alpha: float, temperature: float):
        if alpha < 0:
            raise UserError(f"strategy.alpha={alpha}: the distillation weight must be >= 0")
        if temperature <= 0:
            raise UserError(f"strategy.temperature={temperature}: must be > 0")
        self.alpha, self.temperature = float(alpha), float(temperature)
        self.teacher_state: dict[str, torch.Tensor] | None = None  # what the checkpoint keeps
        self.teacher: nn.Module | None = None  # built from teacher_state on first use

    def loss_term(
        self, module: ContinualLM, inputs: torch.Tensor, targets: torch.Tensor, logits: torch.Tensor, per_rank: float
    ) -> torch.Tensor | None:
        if self.teacher_state is None:
            return None
        if self.teacher is None:
            self.teacher = copy.deepcopy(module.net).eval().requires_grad_(False)
            self.teacher.load_state_dict(self.teacher_state)
        t = self.temperature
        with torch.no_grad():
            old = F.log_softmax(self.teacher(inputs) / t, dim=-1)  # (B, T, V)
        new = F.log_softmax(logits / t, dim=-1)  # (B, T, V)
        kl = (old.exp() * (old - new)).sum(-1)  # (B, T)
        return self.alpha * t * t * kl[targets != module.pad_id].sum() / per_rank  # the mean over the global batch's tokens

    def on_task_end(self, trainer: pl.Trainer, module: ContinualLM, task: int) -> None:
        self.teacher_state = {k: v.detach().clone() for k, v in module.net.state_dict().items()}
        self.teacher = None

    def state_dict(self) -> dict[str, Any]:
        return {"teacher": self.teacher_state}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.teacher_state, self.teacher = state_dict["teacher"], None
