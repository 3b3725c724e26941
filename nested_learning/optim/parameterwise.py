"""The step loop shared by optimizers whose rule updates each parameter on its own."""
from __future__ import annotations

from typing import Any, Callable

import torch


class ParameterwiseOptimizer(torch.optim.Optimizer):
    """Subclasses implement `update(p, group)`; a parameter without a gradient is skipped entirely.

    Skipping (rather than treating a missing gradient as zero) is what the CMS multi-frequency
    optimizer relies on: between a level's update steps its parameters, decays and memories stay as
    they are.
    """

    def update(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self.update(p, group)
        return loss
