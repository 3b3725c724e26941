"""Elastic weight consolidation (Kirkpatrick et al. 2017), with an optional online variant.

At the end of each task the diagonal empirical Fisher of the next-token loss is estimated from that
task's training sentences, at the parameters theta* the task ended with:

    F_i = mean over sentences s of (d loss(s) / d theta_i)^2

where loss(s) is the mean next-token loss of sentence s, computed in eval mode (no dropout). Training
on later tasks then adds, for every finished task (its own anchor theta* and Fisher F),

    lam / 2 * sum_i F_i (theta_i - theta*_i)^2

With `online` (Schwarz et al. 2018) there is one anchor, the latest, and one running Fisher
F <- decay * F + F_new, so the penalty's cost does not grow with the number of tasks.
"""
from __future__ import annotations

from typing import Any, Iterable

import pytorch_lightning as pl
import torch
from torch import nn

from nested_learning.errors import UserError
from nested_learning.run.lit_module import ContinualLM
from nested_learning.strategies.base import Strategy

Tensors = dict[str, torch.Tensor]  # by parameter name


def ewc_penalty(params: Iterable[tuple[str, nn.Parameter]], anchor: Tensors, fisher: Tensors, lam: float) -> torch.Tensor:
    """lam / 2 * sum_i F_i (theta_i - theta*_i)^2 over the named parameters that have a Fisher."""
    terms = [(fisher[name] * (p - anchor[name]) ** 2).sum() for name, p in params if name in fisher]
    return lam / 2 * torch.stack(terms).sum()


def empirical_fisher(module: ContinualLM, inputs: torch.Tensor, targets: torch.Tensor) -> Tensors:
    """Mean squared gradient of each sentence's loss; inputs and targets (N, T), one sentence per row."""
    params = {name: p for name, p in module.net.named_parameters() if p.requires_grad}
    fisher = {name: torch.zeros_like(p) for name, p in params.items()}
    was_training = module.training
    module.eval()
    # The hook may run where Lightning disabled gradients; the Fisher needs them.
    with torch.enable_grad():
        for x, y in zip(inputs.to(module.device), targets.to(module.device)):
            loss = module.next_token_loss(module(x[None]), y[None])  # one sentence: (1, T) -> scalar
            grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
            for name, grad in zip(params, grads):
                if grad is not None:
                    fisher[name] += grad**2
    module.train(was_training)
    return {name: f / len(inputs) for name, f in fisher.items()}


class EWC(Strategy):
    def __init__(self, lam: float, online: bool = False, decay: float = 1.0, fisher_samples: int = 256):
        if lam < 0:
            raise UserError(f"strategy.lam={lam}: the penalty strength must be >= 0")
        if not 0.0 < decay <= 1.0:
            raise UserError(f"strategy.decay={decay}: the online Fisher's decay must lie in (0, 1]")
        if not isinstance(fisher_samples, int) or fisher_samples < 1:
            raise UserError(f"strategy.fisher_samples={fisher_samples}: must be an integer >= 1")
        self.lam, self.online, self.decay, self.fisher_samples = float(lam), bool(online), float(decay), fisher_samples
        self.anchors: list[tuple[Tensors, Tensors]] = []  # (theta*, F) per finished task; one when online

    def loss_term(
        self, module: ContinualLM, inputs: torch.Tensor, targets: torch.Tensor, logits: torch.Tensor, per_rank: float
    ) -> torch.Tensor | None:
        if not self.anchors:
            return None
        params = list(module.net.named_parameters())
        return torch.stack([ewc_penalty(params, anchor, fisher, self.lam) for anchor, fisher in self.anchors]).sum()

    def on_task_end(self, trainer: pl.Trainer, module: ContinualLM, task: int) -> None:
        data = trainer.datamodule
        # The task's unique training sentences (the training set repeats each of them `repeats` times).
        inputs, targets = data.vocab.encode(data.sequence.tasks[task].train[: self.fisher_samples])
        fisher = empirical_fisher(module, inputs, targets)
        anchor = {name: p.detach().clone() for name, p in module.net.named_parameters() if name in fisher}
        if self.online and self.anchors:
            (_, previous), = self.anchors
            self.anchors = [(anchor, {name: self.decay * previous[name] + f for name, f in fisher.items()})]
        else:
            self.anchors.append((anchor, fisher))

    def state_dict(self) -> dict[str, Any]:
        return {"anchors": self.anchors}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.anchors = state_dict["anchors"]
