"""model=titans: layers of the Titans neural long-term memory (Titans, Behrouz et al. 2025, §3.1-3.2).

Per head, with q_t, k_t (L2-normalised), v_t linear projections of the (convolved) input and
data-dependent gates eta_t, theta_t, alpha_t in (0, 1), each a sigmoid of a linear map of x_t:

    S_t = eta_t S_{t-1} - theta_t grad l(M_{c(t)}; x_t)      (Titans Eq. 13, momentum "surprise")
    M_t = (1 - alpha_t) M_{t-1} + S_t                         (Titans Eq. 13-14, forget gate)
    l(M; x_t) = 1/2 ||M(k_t) - v_t||^2,   y_t = M_t(q_t)      (Titans §3.1: the associative loss, retrieval)

M_{c(t)} is the memory state before t's chunk: with tokens numbered from 1, c(t) = s - 1 for s the
first token of t's chunk, so the first chunk uses M_0 (Titans §3.2: gradients of a chunk are all taken
at the state the chunk starts from, so they can be computed in parallel). With chunk_size=1,
c(t) = t - 1, the gradient is taken at M_{t-1}, and this is the token-by-token recurrence. Each chunk
is computed with matrix products (NeuralMemory.chunk_parallel, Titans §3.2 Eq. 16-18), or token by
token as written above (parallel=False, the reference). The update runs inside forward(), so the
memory learns in context in eval mode exactly as in training; the outer optimizer learns the
projections, the gates and the memory's initial state M_0. Gradients of l are written out by hand
(no autograd inside forward), which keeps the inner loop working under torch.no_grad() and
differentiable for the outer loop.
"""
from __future__ import annotations

import math
from functools import partial
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nested_learning.errors import UserError
from nested_learning.models.chunkwise import decay_matrix, per_sample
from nested_learning.models.cms import CMS
from nested_learning.models.mixer_stack import CausalConv1d, MixerCMSLM, check_chunk, check_heads, warn_if_one_chunk

State = list[torch.Tensor]  # a memory's weights, each (N, ...) with N = batch x heads


def split_heads(x: torch.Tensor, n_heads: int, head_major: bool = False) -> torch.Tensor:
    """(B, T, H d) -> (B H, T, d): heads become independent memories in the batch dimension.
    head_major: (H B, T, d) instead, so that one head's samples are contiguous and a per-head matrix
    multiplies all of them in one product (hope_nl)."""
    B, T, _ = x.shape
    x = x.view(B, T, n_heads, -1)
    return (x.permute(2, 0, 1, 3) if head_major else x.transpose(1, 2)).reshape(B * n_heads, T, -1)


def merge_heads(x: torch.Tensor, batch: int, head_major: bool = False) -> torch.Tensor:
    """(B H, T, d) -> (B, T, H d); head_major: from (H B, T, d)."""
    N, T, d = x.shape
    if head_major:
        return x.view(N // batch, batch, T, d).permute(1, 2, 0, 3).reshape(batch, T, -1)
    return x.view(batch, N // batch, T, d).transpose(1, 2).reshape(batch, T, -1)


Layer = Callable[[int, torch.Tensor], torch.Tensor]  # (weight index, inputs (N, C, in)) -> W_t p_t, (N, C, out)
Factors = list[tuple[torch.Tensor, torch.Tensor]]  # per weight (u, x), each (N, C, .): token t's gradient is u_t x_t^T


def fixed(state: State) -> Layer:
    """Every token reads the same weights."""
    return lambda index, p: p @ state[index].transpose(1, 2)


class LinearMemory(nn.Module):
    """M(x) = W x with W (d, d) per head; `weight` is the learned initial state W_0."""

    def __init__(self, n_heads: int, d: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_heads, d, d) / math.sqrt(d))

    def initial_state(self, batch: int) -> State:
        H, d, _ = self.weight.shape
        return [self.weight.expand(batch, H, d, d).reshape(batch * H, d, d)]

    @staticmethod
    def read(layer: Layer, x: torch.Tensor) -> torch.Tensor:  # x (N, C, d) -> (N, C, d)
        return layer(0, x)

    @staticmethod
    def grad_factors(state: State, k: torch.Tensor, v: torch.Tensor) -> Factors:
        """Per-token gradients of 1/2 ||W k - v||^2: (W k - v) k^T."""
        return [(k @ state[0].transpose(1, 2) - v, k)]


class MLPMemory(nn.Module):
    """M(x) = x + W1 silu(W2 x), W1 (d, h), W2 (h, d) per head: Nested Learning's 2-layer residual memory
    (Eq. 89); Titans' MLP memory has no residual."""

    def __init__(self, n_heads: int, d: int, d_hidden: int):
        super().__init__()
        self.w1 = nn.Parameter(torch.randn(n_heads, d, d_hidden) / math.sqrt(d_hidden))
        self.w2 = nn.Parameter(torch.randn(n_heads, d_hidden, d) / math.sqrt(d))

    def initial_state(self, batch: int) -> State:
        return [w.expand(batch, *w.shape).reshape(batch * w.shape[0], *w.shape[1:]) for w in (self.w1, self.w2)]

    @staticmethod
    def read(layer: Layer, x: torch.Tensor) -> torch.Tensor:  # x (N, C, d) -> (N, C, d)
        return x + layer(0, F.silu(layer(1, x)))

    @staticmethod
    def grad_factors(state: State, k: torch.Tensor, v: torch.Tensor) -> Factors:
        """Per-token gradients of 1/2 ||M(k) - v||^2: W1 gets e a^T (d, h), W2 gets b k^T (h, d)."""
        w1, w2 = state
        z = k @ w2.transpose(1, 2)  # (N, C, h)
        s = torch.sigmoid(z)
        a = z * s  # silu(z)
        error = k + a @ w1.transpose(1, 2) - v  # e, (N, C, d)
        back = (error @ w1) * s * (1 + z * (1 - s))  # b = dl/dz: W1^T e times silu'(z), (N, C, h)
        return [(error, a), (back, k)]


MEMORIES = ("linear", "mlp")


class NeuralMemory(nn.Module):
    """Titans Eq. 13-14 with the loss and retrieval of Titans §3.1, as a token mixer: (B, T, D) -> (B, T, D).

    parallel=True computes each chunk with matrix products (chunk_parallel); False runs the tokens
    of a chunk one by one (token_steps), the reference form. Both give the same numbers.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        memory: str,
        d_hidden: int,
        chunk_size: int,
        conv_width: int,
        parallel: bool = True,
        theta_init: float = 1 / 32,
    ):
        super().__init__()
        d = check_heads(d_model, n_heads)
        check_chunk(chunk_size)
        if memory not in MEMORIES:
            raise UserError(f"model.memory={memory}: choose one of {', '.join(MEMORIES)}")
        if not 0.0 < theta_init < 1.0:
            raise UserError(f"model.theta_init={theta_init}: the initial inner learning rate must lie in (0, 1)")
        if memory == "mlp" and d_hidden < 1:
            raise UserError(f"model.d_hidden={d_hidden}: the mlp memory's hidden width must be an integer >= 1")
        self.n_heads, self.chunk_size, self.parallel = n_heads, chunk_size, parallel
        self.conv = CausalConv1d(d_model, conv_width)
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.gates = nn.Linear(d_model, 3 * n_heads)  # per head: eta (surprise decay), theta (inner lr), alpha (forget)
        with torch.no_grad():
            # Start by remembering: alpha near 0.02 (forget little), eta near 0.5, theta near theta_init. The
            # default 1/32 keeps the summed step of a 16-token chunk (16 gradients taken at one state, each
            # weighted up to 1 / (1 - eta) = 2 through the momentum) <= 1 for unit keys, where the linear
            # memory's update stays a contraction (with theta near 0.5 and C = 16 the memory overflowed within
            # 512 tokens). It does not depend on the chunk size, so chunk sizes compare at one initial theta.
            theta_bias = math.log(theta_init / (1 - theta_init))  # sigmoid(theta_bias) = theta_init
            self.gates.bias.view(3, n_heads).copy_(torch.tensor([[0.0], [theta_bias], [-4.0]]))
        self.memory = LinearMemory(n_heads, d) if memory == "linear" else MLPMemory(n_heads, d, d_hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        x = self.conv(x)
        q, k, v = (split_heads(t, self.n_heads) for t in self.qkv(x).chunk(3, dim=-1))  # (N, T, d)
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        logits = self.gates(x).view(B, T, 3, self.n_heads).permute(2, 0, 3, 1).reshape(3, -1, T)  # eta, theta, alpha
        state = self.memory.initial_state(B)
        surprise = [torch.zeros_like(w) for w in state]
        step = self.chunk_parallel if self.parallel else self.token_steps
        chunks = list(zip(*(t.split(self.chunk_size, dim=-2) for t in (q, k, v, logits.unsqueeze(-1)))))  # one backward op
        out = []
        for i, (q_c, k_c, v_c, logits_c) in enumerate(chunks):
            factors = self.memory.grad_factors(state, k_c, v_c)  # at the state before the chunk
            y, state, surprise = step(state, surprise, factors, q_c, *logits_c.squeeze(-1), last=i == len(chunks) - 1)
            out.append(y)
        return merge_heads(torch.cat(out, dim=1), B)

    def token_steps(self, state, surprise, factors, q, eta_logit, theta_logit, alpha_logit, last):
        """One chunk token by token: Titans Eq. 13-14 as written; y_t = M_t(q_t), (N, C, d)."""
        del last
        eta, theta, alpha = torch.sigmoid(eta_logit), torch.sigmoid(theta_logit), torch.sigmoid(alpha_logit)  # (N, C)
        out = []
        for t in range(q.shape[1]):
            grad_t = [u[:, t, :, None] * x[:, t, None, :] for u, x in factors]
            surprise = [
                torch.addcmul(per_sample(eta[:, t], s) * s, per_sample(-theta[:, t], g), g) for s, g in zip(surprise, grad_t)
            ]
            state = [torch.addcmul(s, per_sample(1 - alpha[:, t], w), w) for w, s in zip(state, surprise)]
            out.append(self.memory.read(fixed(state), q[:, t : t + 1]))
        return torch.cat(out, dim=1), state, surprise

    def chunk_parallel(self, state, surprise, factors, q, eta_logit, theta_logit, alpha_logit, last):
        """One chunk with matrix products (Titans §3.2). Tokens t = 1..C of the chunk, started from M_0, S_0:

            S_t = E_t S_0 - sum_{i<=t} (E_t / E_i) theta_i g_i,             E_t = prod_{s<=t} eta_s
            M_t = A_t M_0 + sum_{j<=t} (A_t / A_j) S_j,                      A_t = prod_{s<=t} (1 - alpha_s)
                = A_t M_0 + b_t S_0 - sum_{i<=t} c_{t,i} theta_i g_i,       b_t = sum_{j<=t} (A_t / A_j) E_j,
                                                                             c_{t,i} = sum_{i<=j<=t} (A_t / A_j)(E_j / E_i)

        Every g_i = u_i x_i^T is rank-1 (its factors were taken at M_0), so a layer of M_t applied to
        p_t is A_t W_0 p_t + b_t S_0 p_t - sum_i c_{t,i} theta_i (x_i . p_t) u_i: attention-like (C x C)
        products. An MLP memory reads layer by layer, each layer in this form.
        """
        log_eta, log_keep = F.logsigmoid(eta_logit), F.logsigmoid(-alpha_logit)  # log eta_t, log (1 - alpha_t), (N, C)
        keep = decay_matrix(log_keep)  # [t, j] = A_t / A_j
        carry = decay_matrix(log_eta)  # [j, i] = E_j / E_i
        from_m0 = log_keep.cumsum(-1).exp()  # A_t, (N, C)
        from_s0 = (keep @ log_eta.cumsum(-1).exp().unsqueeze(-1)).squeeze(-1)  # b_t, (N, C)
        mix = (keep @ carry) * torch.sigmoid(theta_logit).unsqueeze(1)  # c_{t,i} theta_i, (N, C, C)

        def layer(index: int, p: torch.Tensor) -> torch.Tensor:  # W_t p_t for each token t of the chunk
            u, x = factors[index]
            written = (mix * (p @ x.transpose(1, 2))) @ u
            return from_m0.unsqueeze(-1) * fixed(state)(index, p) + from_s0.unsqueeze(-1) * fixed(surprise)(index, p) - written

        out = self.memory.read(layer, q)
        if last:
            return out, state, surprise  # nothing reads the state after the last token
        end_mix, end_carry = mix[:, -1], carry[:, -1] * torch.sigmoid(theta_logit)  # c_{C,i} theta_i, (E_C / E_i) theta_i
        sums = [(u * end_mix.unsqueeze(-1)).transpose(1, 2) @ x for u, x in factors]
        state = [
            per_sample(from_m0[:, -1], w) * w + per_sample(from_s0[:, -1], s) * s - g for w, s, g in zip(state, surprise, sums)
        ]
        surprise = [
            per_sample(log_eta.sum(-1).exp(), s) * s - (u * end_carry.unsqueeze(-1)).transpose(1, 2) @ x
            for s, (u, x) in zip(surprise, factors)
        ]
        return out, state, surprise


class TitansLM(MixerCMSLM):
    """embedding -> n_layers x [neural memory, MLP] -> head. The MLP is a CMS chain, by default one
    level of period 1, i.e. an ordinary feed-forward trained every step (periods=[1,3,6] gives Titans+CMS)."""

    def __init__(
        self,
        vocab_size: int,
        max_len: int,
        d_model: int = 64,
        n_heads: int = 2,
        memory: str = "linear",
        d_hidden: int = 64,
        chunk_size: int = 16,
        conv_width: int = 4,
        parallel: bool = True,
        theta_init: float = 1 / 32,
        d_ff: int = 128,
        n_layers: int = 2,
        periods: Sequence[int] = (1,),
        level_lrs: Sequence[float | None] | None = None,
        cms_variant: str = "sequential",
        cms_clock: str = "step",
        cms_state: str = "reset",
        cms_inner_lr: float | Sequence[float] = 1e-3,
        dropout: float = 0.1,
    ):
        warn_if_one_chunk(chunk_size, max_len)  # a recurrence needs no position table: max_len serves this check only
        super().__init__(
            vocab_size,
            d_model,
            n_layers,
            make_mixer=partial(NeuralMemory, d_model, n_heads, memory, d_hidden, chunk_size, conv_width, parallel, theta_init),
            make_cms=partial(CMS, d_model, d_ff, periods, level_lrs, cms_variant, dropout, cms_clock, cms_state, cms_inner_lr),
            dropout=dropout,
        )
