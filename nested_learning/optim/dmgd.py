"""DMGD, Deep Momentum Gradient Descent: the momentum is an MLP memory (NL §4.4, Eq. 50).

    W_{i+1} = W_i + m_{i+1}(u_i),    m_{i+1} = alpha m_i - lr grad L2(m_i; u_i)          (Eq. 50)

with u_i = grad L(W_i; x_i). The paper leaves the memory's architecture and inner loss L2 open
("need to be designed carefully"); this module is one concrete instance, chosen so that it contains
plain momentum (Eq. 33) as its linear part:

- memory, per parameter (gradient viewed as a (r, c) matrix G, one key per row):
      m_phi(G) = B + tanh(K W1^T) W2^T,   K = G with rows scaled to unit norm          # (r, c)
  B (r, c) is the value-less linear memory of ordinary momentum; W1 (h, c) and W2 (c, h) a
  two-layer MLP read at the row keys (keys L2-normalised, as HOPE normalises its memory keys).
- inner loss: the dot-product similarity of Eq. 34/46 with the gradient as value,
      L2(phi; G) = <m_phi(G), G> = sum_ij m_phi(G)_ij G_ij,
  whose gradients are dB = G, dW2 = G^T A, dW1 = ((G W2) * (1 - A^2))^T K with A = tanh(K W1^T).
- one step: phi <- phi_0 + alpha (phi - phi_0) - lr dphi for phi in (B, W1, W2), then
  W <- W + m_phi(G) with the new phi. The decay pulls each memory parameter towards its initial
  value phi_0 (0 for B and W2; a fixed random draw for W1): decaying W1 towards 0 would switch the
  MLP's features off. For B this is exactly heavy-ball momentum (B <- alpha B - lr g, W <- W + B);
  the MLP adds W2 ~ -lr sum_i alpha^(t-i) G_i^T A_i, i.e. a read that mixes the rows of past
  gradients whose keys resemble the current ones.

W1 is drawn from a generator seeded by the parameter's position in the optimizer, not from torch's
global generator, so choosing DMGD does not shift the model's dropout masks, and it is stored in the
state (with its initial value) for an exact resume. Every parameter follows the rule (a vector is one
row), as in delta_momentum.py.
"""
from __future__ import annotations

from typing import Any, Iterable

import torch

from nested_learning.optim.checks import is_rate, require
from nested_learning.optim.newton_schulz import as_matrix
from nested_learning.optim.parameterwise import ParameterwiseOptimizer


def unit_rows(matrix: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit L2 norm; zero rows (e.g. embeddings of tokens absent from the batch) stay zero."""
    return matrix / matrix.norm(dim=1, keepdim=True).clamp_min(1e-12)


class DMGD(ParameterwiseOptimizer):
    def __init__(self, params: Iterable[Any], lr: float = 1e-3, alpha: float = 0.9, hidden: int = 16):
        require("lr", lr, lambda v: v >= 0, "a number >= 0")
        require("alpha", alpha, is_rate, "a number in [0, 1) (the memory's decay)")
        require("hidden", hidden, lambda v: isinstance(v, int) and v >= 1, "an integer >= 1 (the memory MLP's width)")
        super().__init__(params, dict(lr=lr, alpha=alpha, hidden=hidden))

    def _init_state(self, p: torch.Tensor, g: torch.Tensor, hidden: int) -> dict[str, torch.Tensor]:
        position = next(i for i, q in enumerate(q for group in self.param_groups for q in group["params"]) if q is p)
        generator = torch.Generator().manual_seed(position)
        w1 = torch.randn(hidden, g.shape[1], generator=generator, dtype=g.dtype).to(g.device)  # (h, c)
        return {"linear": torch.zeros_like(g), "w1": w1, "w1_init": w1.clone(),
                "w2": torch.zeros(g.shape[1], hidden, dtype=g.dtype, device=g.device)}

    def update(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        alpha, lr = group["alpha"], group["lr"]
        g = as_matrix(p.grad)  # (r, c)
        state = self.state[p]
        if not state:
            state.update(self._init_state(p, g, group["hidden"]))
        keys = unit_rows(g)  # (r, c)
        features = torch.tanh(keys @ state["w1"].T)  # A: (r, h)
        grad_w2 = g.T @ features  # (c, h)
        grad_w1 = ((g @ state["w2"]) * (1 - features * features)).T @ keys  # (h, c)
        state["linear"].mul_(alpha).add_(g, alpha=-lr)  # B
        state["w2"].mul_(alpha).add_(grad_w2, alpha=-lr)
        w1_init = state["w1_init"]
        state["w1"].sub_(w1_init).mul_(alpha).add_(w1_init).add_(grad_w1, alpha=-lr)
        read = state["linear"] + torch.tanh(keys @ state["w1"].T) @ state["w2"].T  # m_{i+1}(u_i): (r, c)
        p.add_(read.view_as(p))
