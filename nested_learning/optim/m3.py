"""M3, Multi-scale Momentum Muon: NL §7.2, Algorithm 1 (CMS applied to the optimizer's own memory).

Per matrix parameter Theta, with gradient g_t at its t-th update (t = 1, 2, ...) and frequency f:

    M1_t = M1_{t-1} + beta1 g_t                        fast memory, every step        (Alg. 1 line 7)
    V_t  = V_{t-1}  + beta2 g_t^2                      second moment, every step      (line 8)
    O1_t = NewtonSchulz_T(M1_t)                                                       (line 9)
    M2   = M2 + beta3 sum_{i=(k-1)f+1}^{kf} g_i        slow memory, at t = kf only    (line 3)
    O2   = NewtonSchulz_T(M2)                          refreshed with M2 only         (line 4)
    Theta_t = Theta_{t-1} - lr (O1_t + alpha O2) / (sqrt(V_t) + eps)                 (line 10)

The steps t = kf+1 .. (k+1)f read the O2 built from the chunks before k, so the slow memory changes
only every f updates (Eq. 75's chunked rule, the independent CMS variant of Eq. 74 with a weighted
sum as Agg). As Algorithm 1 writes them, M1, M2 and V are running sums, not moving averages
(Appendix B, Eq. 102, builds Adam's memories the same way). Two consequences, stated in
docs/optimizers.md: Newton-Schulz is scale invariant, so beta1 and beta3 cancel out of O1 and O2;
and beta2 only rescales lr and eps (lr / sqrt(beta2), eps / sqrt(beta2)). We therefore keep
beta1 = beta2 = beta3 = 1 and expose lr, alpha, f, T and eps, which span the same family of updates.

The clock t is per parameter (`state["step"]`): inside the CMS multi-frequency optimizer a level
that updates every C steps sees its own gradient stream, so its slow memory refreshes every f of
its own updates (f C optimizer steps). Parameters that get no gradient in a step are skipped.

Parameters that are not matrices (biases, LayerNorm gains: ndim < 2) cannot be orthogonalised; as in
Muon and in the public reference implementation of the paper (kmccleary3301/nested_learning: Muon
for matrices, AdamW for 1-D parameters) they are updated by Adam, with their own rate `aux_lr`.
Embeddings and the output head are matrices and follow M3 (the paper names no exception); tensors
with ndim > 2 are viewed as (shape[0], -1), as Muon does for convolutions.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

import torch

from nested_learning.optim.checks import is_rate, require
from nested_learning.optim.newton_schulz import as_matrix, newton_schulz
from nested_learning.optim.parameterwise import ParameterwiseOptimizer


class M3(ParameterwiseOptimizer):
    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-4,
        alpha: float = 1.0,
        frequency: int = 10,
        ns_steps: int = 5,
        eps: float = 1e-8,
        aux_lr: float = 1e-3,
        aux_betas: Sequence[float] = (0.9, 0.999),
    ):
        require("lr", lr, lambda v: v >= 0, "a number >= 0")
        require("alpha", alpha, lambda v: v >= 0, "a number >= 0 (weight of the slow memory)")
        require("frequency", frequency, lambda v: isinstance(v, int) and v >= 1, "an integer >= 1 (steps between slow-memory updates)")
        require("ns_steps", ns_steps, lambda v: isinstance(v, int) and v >= 1, "an integer >= 1")
        require("eps", eps, lambda v: v > 0, "a number > 0")
        require("aux_lr", aux_lr, lambda v: v >= 0, "a number >= 0 (Adam's rate for non-matrix parameters)")
        require("aux_betas", aux_betas, lambda v: len(v) == 2 and all(is_rate(b) for b in v), "two numbers in [0, 1)")
        defaults = dict(lr=lr, alpha=alpha, frequency=frequency, ns_steps=ns_steps, eps=eps,
                        aux_lr=aux_lr, aux_betas=tuple(aux_betas))
        super().__init__(params, defaults)

    def update(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        if p.ndim < 2:
            self._adam_step(p, group)
        else:
            self._m3_step(p, group)

    def _m3_step(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        g = as_matrix(p.grad)  # (r, c)
        state = self.state[p]
        if not state:
            state["step"] = 0
            for name in ("fast", "second_moment", "slow", "slow_orthogonal", "chunk_sum"):
                state[name] = torch.zeros_like(g)
        state["step"] += 1
        state["fast"].add_(g)  # M1 (beta1 = 1, see the module docstring)
        state["second_moment"].addcmul_(g, g)  # V
        state["chunk_sum"].add_(g)
        fast_orthogonal = newton_schulz(state["fast"], group["ns_steps"])  # O1
        direction = fast_orthogonal.add(state["slow_orthogonal"], alpha=group["alpha"])  # O1 + alpha O2
        update = direction.div_(state["second_moment"].sqrt().add_(group["eps"]))
        p.add_(update.view_as(p), alpha=-group["lr"])
        if state["step"] % group["frequency"] == 0:  # end of chunk k: Alg. 1 lines 3-4 for chunk k+1
            state["slow"].add_(state["chunk_sum"])
            state["chunk_sum"].zero_()
            state["slow_orthogonal"] = newton_schulz(state["slow"], group["ns_steps"])

    def _adam_step(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        """Adam (Kingma & Ba 2014, bias-corrected) for parameters that are not matrices."""
        beta1, beta2 = group["aux_betas"]
        state = self.state[p]
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_sq"] = torch.zeros_like(p)
        state["step"] += 1
        state["exp_avg"].lerp_(p.grad, 1 - beta1)
        state["exp_avg_sq"].mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
        m_hat = state["exp_avg"] / (1 - beta1 ** state["step"])
        v_hat = state["exp_avg_sq"] / (1 - beta2 ** state["step"])
        p.addcdiv_(m_hat, v_hat.sqrt().add_(group["eps"]), value=-group["aux_lr"])
