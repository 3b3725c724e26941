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
    """delta of one level: shared by all sequences (no batch dim), or one per sequence (leading dim B)."""

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

    def norm(self) -> torch.Tensor:
        """Norm of a shared delta, all four tensors as one vector."""
        return torch.sqrt(sum(t.pow(2).sum() for t in self.tensors()))


@dataclass
class LevelRun:
    """What one level did over a batch of sequences: its reads, and its in-context change kept in the
    dual form delta = start - eta * (sum_t g_t k_t^T for the first layer, sum_t e_t a_t^T for the
    second, and the sums of g_t and e_t for the biases) over the error terms applied so far."""

    out: torch.Tensor  # (B, T, D): MLP_l(x_t) read with the state in force at t
    updates: int  # complete chunks, i.e. updates made per sequence
    start: FastWeights  # shared by all sequences
    inner_lr: float
    keys: torch.Tensor  # (B, P, D): k_t of the P error terms applied, in order
    hidden_grads: torch.Tensor  # (B, P, F): g_t = dL_t / d(pre-activation)
    hidden: torch.Tensor  # (B, P, F): a_t = relu(pre-activation) of k_t
    errors: torch.Tensor  # (B, P, D): e_t = dL_t / dM(k_t)
    applied: list[int]  # per token 1..T: how many error terms its read saw

    def state(self, terms: int | None = None) -> FastWeights:
        """delta per sequence after the first `terms` error terms (default: all), materialised (B, ...)."""
        n = self.errors.shape[1] if terms is None else terms
        k, g, a, e = (t[:, :n] for t in (self.keys, self.hidden_grads, self.hidden, self.errors))
        change = (g.transpose(1, 2) @ k, g.sum(1), e.transpose(1, 2) @ a, e.sum(1))
        return FastWeights(*(s - self.inner_lr * c for s, c in zip(self.start.tensors(), change)))

    def mean_end(self) -> FastWeights:
        """The batch mean of the sequences' end states, computed without materialising them."""
        B, P, _ = self.errors.shape
        k, g, a, e = (t.reshape(B * P, -1) for t in (self.keys, self.hidden_grads, self.hidden, self.errors))
        change = (g.T @ k, g.sum(0), e.T @ a, e.sum(0))
        return FastWeights(*(s - self.inner_lr * c / B for s, c in zip(self.start.tensors(), change)))

    def change_norms(self) -> torch.Tensor:
        """(B,) norm of each sequence's own change end - start, from Gram matrices:
        ||G^T K||_F^2 = sum((G G^T) * (K K^T))."""
        gram = lambda t: t @ t.transpose(1, 2)  # noqa: E731  (B, P, P)
        squares = (
            (gram(self.hidden_grads) * gram(self.keys)).sum((1, 2)) + self.hidden_grads.sum(1).pow(2).sum(-1)
            + (gram(self.errors) * gram(self.hidden)).sum((1, 2)) + self.errors.sum(1).pow(2).sum(-1)
        )
        return self.inner_lr * squares.clamp_min(0).sqrt()


def run_level(
    level: nn.Module, x: torch.Tensor, valid: torch.Tensor | None, period: int, inner_lr: float, start: FastWeights
) -> LevelRun:
    """Read x (B, T, D) through one level chunk by chunk, updating its fast state after each full chunk.

    `level` is an MLPLevel (its parameters are theta_0); `valid` (B, T) marks real tokens (None: all);
    `start` is the delta every sequence starts from (shared). The per-sequence delta is never
    materialised: a read x W^T with W = W_s - eta sum_t g_t k_t^T is x W_s^T - eta (x K^T) G, an
    attention over the error terms applied so far, whose cost grows with T instead of with F x D.
    """
    B, T, D = x.shape
    l1, l2 = level.linear1, level.linear2
    w1, b1 = l1.weight + start.w1, l1.bias + start.b1  # theta_0 + start: reads stay differentiable in theta_0
    w2t, b2 = (l2.weight + start.w2).T, l2.bias + start.b2
    lr, width = inner_lr, w1.shape[0]
    base = x @ w1.T + b1  # (B, T, F): the start state's part of every first-layer read, in one matmul
    masks = None
    if level.training and level.dropout.p > 0:  # MLPLevel's two dropouts, drawn once for the sequence
        masks = [level.dropout(x.new_ones(B, T, n)) for n in (width, D)]
    xd, w2d = x.detach(), w2t.detach().T
    weight = None if valid is None else valid.unsqueeze(-1).to(x.dtype)  # (B, T, 1): padding has no term
    keys, hidden_grads = x.new_zeros(B, 0, D), x.new_zeros(B, 0, width)
    hidden, errors = x.new_zeros(B, 0, width), x.new_zeros(B, 0, D)
    db1, db2 = x.new_zeros(B, 1, width), x.new_zeros(B, 1, D)  # -eta sum g_t, -eta sum e_t

    def second_layer(h: torch.Tensor) -> torch.Tensor:  # h (B, m, F) through W2 = W2_s - eta sum e a^T
        out = h @ w2t + b2 + db2
        return out - lr * ((h @ hidden.transpose(1, 2)) @ errors) if updates else out

    outs, applied, updates = [], [], 0
    for a in range(0, T, period):
        b = min(a + period, T)
        lo = max(a - 1, 0)  # one token before the chunk: the key of its first error term
        pre = base[:, lo:b] + db1  # (B, m, F)
        if updates:
            pre = pre - lr * ((x[:, lo:b] @ keys.transpose(1, 2)) @ hidden_grads)
        act = F.relu(pre)
        if masks is None:
            read = second_layer(act)
        else:  # dropout as in MLPLevel, on the read only
            read = second_layer(act * masks[0][:, lo:b]) * masks[1][:, lo:b]
        outs.append(read[:, a - lo :])
        applied += [keys.shape[1]] * (b - a)
        if b - a < period:
            break  # partial chunk at the sequence's end: read, never applied
        if b < 2:
            continue  # period 1, token 1: no error term yet (its key would precede the sequence), no update
        with torch.no_grad():
            act_k = act[:, :-1]
            clean = read[:, :-1] if masks is None else second_layer(act_k)
            k = xd[:, lo : b - 1]  # keys x_{t-1}, values x_t, for the chunk's terms t = lo+1..b-1 (0-based)
            err = k + clean - xd[:, lo + 1 : b]  # (B, n, D): dL_t / dM(k_t)
            if weight is not None:
                err = err * weight[:, lo + 1 : b]
            back = err @ w2d  # (B, n, F): e_t W2 with W2 = W2_s - eta sum e a^T
            if updates:
                back = back - lr * ((err @ errors.transpose(1, 2)) @ hidden)
            g = back * (pre[:, :-1] > 0)
            keys, hidden_grads = torch.cat([keys, k], 1), torch.cat([hidden_grads, g], 1)
            hidden, errors = torch.cat([hidden, act_k], 1), torch.cat([errors, err], 1)
            db1, db2 = db1 - lr * g.sum(1, keepdim=True), db2 - lr * err.sum(1, keepdim=True)
        updates += 1
    return LevelRun(torch.cat(outs, dim=1), updates, start, inner_lr, keys, hidden_grads, hidden, errors, applied)
