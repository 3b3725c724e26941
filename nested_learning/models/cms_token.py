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
    dual form delta = start + (sum_t u_t k_t^T, sum_t u_t, sum_t s_t a_t^T, sum_t s_t) over the error
    terms applied so far, with u_t = -eta g_t and s_t = -eta e_t (the scaled gradients)."""

    out: torch.Tensor  # (B, T, D): MLP_l(x_t) read with the state in force at t
    updates: int  # updates made per sequence (chunk boundaries with at least one term)
    start: FastWeights  # shared by all sequences
    keys: torch.Tensor  # (B, P, D): k_t of the P error terms applied, in order
    steps1: torch.Tensor  # (B, P, F): u_t = -eta dL_t / d(pre-activation)
    hidden: torch.Tensor  # (B, P, F): a_t = relu(pre-activation) of k_t
    steps2: torch.Tensor  # (B, P, D): s_t = -eta dL_t / dM(k_t)
    applied: list[int]  # per token 1..T: how many error terms its read saw

    def state(self, terms: int | None = None) -> FastWeights:
        """delta per sequence after the first `terms` error terms (default: all), materialised (B, ...)."""
        n = self.steps2.shape[1] if terms is None else terms
        k, u, a, e = (t[:, :n] for t in (self.keys, self.steps1, self.hidden, self.steps2))
        change = (u.mT @ k, u.sum(1), e.mT @ a, e.sum(1))
        return FastWeights(*(s + c for s, c in zip(self.start.tensors(), change)))

    def mean_end(self) -> FastWeights:
        """The batch mean of the sequences' end states, computed without materialising them."""
        B, P, _ = self.steps2.shape
        k, u, a, e = (t.reshape(B * P, -1) for t in (self.keys, self.steps1, self.hidden, self.steps2))
        change = (u.T @ k, u.sum(0), e.T @ a, e.sum(0))
        return FastWeights(*(s + c / B for s, c in zip(self.start.tensors(), change)))

    def change_norms(self) -> torch.Tensor:
        """(B,) norm of each sequence's own change end - start, from Gram matrices:
        ||U^T K||_F^2 = sum((U U^T) * (K K^T))."""
        gram = lambda t: t @ t.mT  # noqa: E731  (B, P, P)
        squares = (
            (gram(self.steps1) * gram(self.keys)).sum((1, 2)) + self.steps1.sum(1).pow(2).sum(-1)
            + (gram(self.steps2) * gram(self.hidden)).sum((1, 2)) + self.steps2.sum(1).pow(2).sum(-1)
        )
        return squares.clamp_min(0).sqrt()


def run_level(
    level: nn.Module, x: torch.Tensor, valid: torch.Tensor | None, period: int, inner_lr: float, start: FastWeights
) -> LevelRun:
    """Read x (B, T, D) through one level chunk by chunk, updating its fast state after each full chunk.

    `level` is an MLPLevel (its parameters are theta_0); `valid` (B, T) marks real tokens (None: all);
    `start` is the delta every sequence starts from (shared). The per-sequence delta is never
    materialised: with W1 = W1_s + sum_t u_t k_t^T and b1 = b1_s + sum_t u_t, a read is
    x W1^T + b1 = (x W1_s^T + b1_s) + (1 + x K^T) U, an attention over the error terms applied so
    far whose cost grows with T instead of with F x D; likewise for the second layer.
    """
    B, T, D = x.shape
    l1, l2 = level.linear1, level.linear2
    w2, b2 = l2.weight + start.w2, l2.bias + start.b2  # theta_0 + start: reads stay differentiable in theta_0
    width = l1.weight.shape[0]
    base = F.linear(x, l1.weight + start.w1, l1.bias + start.b1)  # (B, T, F): the start state's reads, at once
    masks = None
    if level.training and level.dropout.p > 0:  # MLPLevel's two dropouts, drawn once for the sequence
        masks = [level.dropout(x.new_ones(B, T, n)) for n in (width, D)]
    differentiable = torch.is_grad_enabled()
    xd, based, w2d, b2d = x.detach(), base.detach(), w2.detach(), b2.detach()
    weight = None if valid is None else valid.unsqueeze(-1).to(x.dtype)  # (B, T, 1): padding has no term
    one = x.new_ones(1, 1, 1)
    # Term t (t = 1..T-1, 0-based) has key x_{t-1} and value x_t: its keys are x[:, :P] in order.
    shift = xd[:, :-1] - xd[:, 1:]  # (B, T-1, D): k_t - v_t, so e_t = shift_t + MLP(k_t)
    gram = torch.baddbmm(one, xd, xd.mT)  # (B, T, T): 1 + x_s . x_p, every first-layer score at once
    keys, steps1 = xd[:, :0], x.new_zeros(B, 0, width)
    hidden, steps2 = x.new_zeros(B, 0, width), x.new_zeros(B, 0, D)

    def second_layer(h: torch.Tensor) -> torch.Tensor:  # (B, m, F) -> (B, m, D): h W2^T + b2, current state
        return torch.baddbmm(F.linear(h, w2d, b2d), torch.baddbmm(one, h, hidden.mT), steps2)

    # The chunk loop runs without autograd: it fixes which error terms each token reads and builds them.
    outs, applied, updates = [], [], 0
    with torch.no_grad():
        for a in range(0, T, period):
            b = min(a + period, T)
            lo = max(a - 1, 0)  # one token before the chunk: the key of its first error term
            pre = torch.baddbmm(based[:, lo:b], gram[:, lo:b, : keys.shape[1]], steps1)  # (B, m, F)
            act = F.relu(pre)
            clean = None
            if not differentiable:  # evaluation: these are the outputs (no parallel pass follows)
                clean = second_layer(act)
                read = clean if masks is None else second_layer(act * masks[0][:, lo:b]) * masks[1][:, lo:b]
                outs.append(read[:, a - lo :])
            applied += [keys.shape[1]] * (b - a)
            if b - a < period:
                break  # partial chunk at the sequence's end: read, never applied
            if b < 2:
                continue  # period 1, token 1: no error term yet (its key would precede the sequence), no update
            act_k = act[:, :-1]  # the chunk's terms t = lo+1..b-1 (0-based): keys x_lo..x_{b-2}
            err = (second_layer(act_k) if clean is None else clean[:, :-1]) + shift[:, lo : b - 1]  # dL_t / dM(k_t)
            if weight is not None:
                err.mul_(weight[:, lo + 1 : b])
            back = torch.baddbmm(err @ w2d, err @ steps2.mT, hidden)  # (B, n, F): e_t W2, current W2
            step1 = (back * (pre[:, :-1] > 0)).mul_(-inner_lr)
            keys, steps1 = xd[:, : b - 1], torch.cat([steps1, step1], 1)
            hidden, steps2 = torch.cat([hidden, act_k], 1), torch.cat([steps2, err.mul_(-inner_lr)], 1)
            updates += 1
    if differentiable:
        # The same reads in one parallel pass that autograd records: token t attends to the error
        # terms it read in the loop (a causal mask over the terms), the terms being constants.
        seen = (torch.arange(keys.shape[1], device=x.device) < x.new_tensor(applied).unsqueeze(1)).to(x.dtype)  # (T, P)
        act = F.relu(base + ((x @ keys.mT + 1) * seen) @ steps1)  # (B, T, F)
        h = act if masks is None else act * masks[0]
        read = F.linear(h, w2, b2) + ((h @ hidden.mT + 1) * seen) @ steps2
        outs = [read if masks is None else read * masks[1]]
    return LevelRun(torch.cat(outs, dim=1), updates, start, keys, steps1, hidden, steps2, applied)
