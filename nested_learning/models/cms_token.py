"""One CMS level on the token clock: Eq. 71 with the steps read as tokens of the context.

Level l's weights are a fast state theta = theta_0 + delta: theta_0 are the learned parameters (the
outer optimizer trains them as the initial state), delta the in-context change, which starts at 0
(`cms_state=reset`) or at a carried value (`cms_state=carry`) and is never written into theta_0.
Tokens are numbered 1..T. After token i with i = 0 mod C^(l), the level takes one plain gradient
step with its own inner rate eta^(l) on the SUM of the chunk's error terms (Eq. 71):

    delta <- delta - eta^(l) sum_{t=i-C+1}^{i} grad_theta L_t(theta),   theta frozen inside the chunk

so every read of tokens i-C+1..i uses the state reached after token i-C, and the chunk's reads and
error terms are computed in parallel: one batched MLP pass per chunk, then one update. A partial
chunk at the end of a sequence (T not a multiple of C) is read with the frozen state but never
applied, as the step clock never applies an unfinished chunk.

Inner objective: the level as the associative memory of Eq. 89/93, M(k) = k + MLP(k), storing the
transition between consecutive positions of its own input x (B, T, D):

    L_t = 1/2 || x_{t-1} + MLP(x_{t-1}) - x_t ||^2        (key x_{t-1}, value x_t; no term for t = 1)

a local next-step prediction in the level's input space. It needs nothing beyond tokens <= t (the
update after token i reads x_i, which depends on tokens <= i only), no backward pass through later
layers, and no targets, so it runs identically in training and evaluation (under no_grad). A term
whose token t is padding is dropped. The writes are stop-grad (delta is computed from detached
activations): the outer loss reaches theta_0 through every read theta_0 + delta, not through the
updates themselves. The gradients are written by hand (ReLU MLP, Linear(D, F) -> ReLU -> Linear(F, D)).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class FastWeights:
    """delta of one level: shared (no batch dim) or one per sequence (leading batch dim B)."""

    w1: torch.Tensor  # (F, D) or (B, F, D)
    b1: torch.Tensor  # (F,) or (B, F)
    w2: torch.Tensor  # (D, F) or (B, D, F)
    b2: torch.Tensor  # (D,) or (B, D)

    @classmethod
    def zeros_like(cls, level: nn.Module) -> "FastWeights":
        l1, l2 = level.linear1, level.linear2
        return cls(*(torch.zeros_like(p) for p in (l1.weight, l1.bias, l2.weight, l2.bias)))

    def tensors(self) -> tuple[torch.Tensor, ...]:
        return self.w1, self.b1, self.w2, self.b2

    def per_sequence(self) -> bool:
        return self.b2.dim() == 2

    def norms(self) -> torch.Tensor:
        """Norm of the whole change, per sequence (B,) if per sequence, else a scalar."""
        batch_dims = 1 if self.per_sequence() else 0
        return torch.sqrt(sum(t.flatten(batch_dims).pow(2).sum(-1) for t in self.tensors()))


@dataclass
class LevelRun:
    out: torch.Tensor  # (B, T, D): MLP_l(x_t) read with the state in force at t
    end: FastWeights  # delta after the last complete chunk
    updates: int  # complete chunks, i.e. updates made per sequence
    states: list[FastWeights]  # the delta each token 1..T was read with (references, no copies)


def run_level(
    level: nn.Module, x: torch.Tensor, valid: torch.Tensor | None, period: int, inner_lr: float, start: FastWeights
) -> LevelRun:
    """Read x (B, T, D) through one level chunk by chunk, updating its fast state after each full chunk.

    `level` is an MLPLevel (its parameters are theta_0); `valid` (B, T) marks real tokens (None: all).
    """
    B, T, _ = x.shape
    l1, l2 = level.linear1, level.linear2
    delta = start
    outs, states, updates = [], [], 0
    for a in range(0, T, period):
        b = min(a + period, T)
        lo = max(a - 1, 0)  # one token before the chunk: the key of its first error term
        w1, b1 = l1.weight + delta.w1, l1.bias + delta.b1  # reads go through theta_0: differentiable
        w2, b2 = l2.weight + delta.w2, l2.bias + delta.b2
        seg = x[:, lo:b]  # (B, m, D)
        pre = seg @ w1.transpose(-1, -2) + b1.unsqueeze(-2)  # (B, m, F)
        act = F.relu(pre)
        clean = act @ w2.transpose(-1, -2) + b2.unsqueeze(-2)  # (B, m, D)
        if level.training and level.dropout.p > 0:  # dropout as in MLPLevel, on the read only
            read = level.dropout(level.dropout(act) @ w2.transpose(-1, -2) + b2.unsqueeze(-2))
        else:
            read = clean
        outs.append(read[:, a - lo :])
        states += [delta] * (b - a)
        if b - a < period:
            break  # partial chunk at the sequence's end: read, never applied
        with torch.no_grad():
            keys, values = seg[:, :-1], seg[:, 1:]  # (B, n, D): x_{t-1} and x_t for t in lo+2..b (1-based)
            err = keys + clean[:, :-1] - values  # dL_t / dM(k_t)
            if valid is not None:
                err = err * valid[:, lo + 1 : b].unsqueeze(-1).to(err.dtype)
            act_k = act[:, :-1]
            g_w2 = err.transpose(1, 2) @ act_k  # (B, D, F): sum_t e_t a_t^T
            g_b2 = err.sum(1)
            g_pre = (err @ w2.detach()) * (pre[:, :-1] > 0)  # (B, n, F)
            g_w1 = g_pre.transpose(1, 2) @ keys  # (B, F, D)
            g_b1 = g_pre.sum(1)
            delta = FastWeights(*(d - inner_lr * g for d, g in zip(delta.tensors(), (g_w1, g_b1, g_w2, g_b2))))
        updates += 1
    return LevelRun(torch.cat(outs, dim=1), delta, updates, states)
