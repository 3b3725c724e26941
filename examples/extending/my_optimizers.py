"""An optimizer outside the package: signSGD with momentum (Signum; Bernstein et al. 2018).

    m <- beta m + (1 - beta) g,    W <- W - lr sign(m)

Built on the framework's `ParameterwiseOptimizer`, which skips a parameter without a gradient, so
it keeps the CMS levels' cadence (`model=cms`): between a level's updates nothing touches it.
"""
from __future__ import annotations

from typing import Any, Iterable

import torch

from nested_learning.optim.checks import is_rate, require
from nested_learning.optim.parameterwise import ParameterwiseOptimizer


class Signum(ParameterwiseOptimizer):
    def __init__(self, params: Iterable[Any], lr: float = 1e-3, beta: float = 0.9):
        require("lr", lr, lambda v: v > 0, "a number > 0")
        require("beta", beta, is_rate, "a number in [0, 1) (the momentum's decay)")
        super().__init__(params, dict(lr=lr, beta=beta))

    def update(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        state = self.state[p]
        if not state:
            state["momentum"] = torch.zeros_like(p)
        m = state["momentum"]
        m.mul_(group["beta"]).add_(p.grad, alpha=1 - group["beta"])
        p.add_(m.sign(), alpha=-group["lr"])
