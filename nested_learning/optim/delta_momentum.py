"""Delta Momentum: momentum as an associative memory trained by the delta rule (NL §4.4, Eq. 48-49).

Plain momentum (Eq. 33) is a value-less memory trained on the dot-product objective
<m g^T, P> (Eq. 46-47): a Hebbian update, m <- alpha m - lr P g, independent of what m holds.
Replacing the objective by the L2 regression ||m g^T - P||^2 gives the delta rule:

    m_{i+1} = m_i (alpha I - g_i^T g_i) - lr P g_i                                    (Eq. 49)
    W_{i+1} = W_i + m_{i+1}                                                            (Eq. 48)

with g_i = grad L(W_i; x_i) as a (r, c) matrix and m of the same shape: the term - m g^T g removes
from the memory what it already holds along the new gradient's directions before writing it, so the
momentum can forget old gradients selectively instead of only decaying them all by alpha. We take
the value map P = I (the paper leaves P open: "any reasonable choice"), so with the delta term
removed this is exactly heavy-ball momentum (W <- W + m, m <- alpha m - lr g; torch's SGD with
momentum=alpha and dampening 0 scales the same update by its lr instead).

The delta term has no step size in Eq. 49; it is stable while the gradient's squared spectral norm
stays below 1 + alpha, as it does for the small models here (a diverging run stops with the
framework's one-line non-finite-loss error). Every parameter follows the rule: a vector (bias,
LayerNorm gain) is one row, for which m g^T g = (m . g) g; tensors with ndim > 2 are (shape[0], -1).
"""
from __future__ import annotations

from typing import Any, Iterable

import torch

from nested_learning.optim.checks import is_rate, require
from nested_learning.optim.newton_schulz import as_matrix
from nested_learning.optim.parameterwise import ParameterwiseOptimizer


def delta_term(memory: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """m g^T g for (r, c) matrices, multiplied in the cheaper order ((r, r) or (c, c) intermediate)."""
    if grad.shape[0] <= grad.shape[1]:
        return (memory @ grad.T) @ grad
    return memory @ (grad.T @ grad)


class DeltaMomentum(ParameterwiseOptimizer):
    def __init__(self, params: Iterable[Any], lr: float = 3e-2, alpha: float = 0.9):
        require("lr", lr, lambda v: v >= 0, "a number >= 0")
        require("alpha", alpha, is_rate, "a number in [0, 1) (the momentum's decay)")
        super().__init__(params, dict(lr=lr, alpha=alpha))

    def update(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        g = as_matrix(p.grad)  # (r, c)
        state = self.state[p]
        if not state:
            state["momentum"] = torch.zeros_like(g)
        m = state["momentum"]
        m.copy_(m.mul(group["alpha"]).sub_(delta_term(m, g)).add_(g, alpha=-group["lr"]))  # Eq. 49
        p.add_(m.view_as(p))  # Eq. 48
