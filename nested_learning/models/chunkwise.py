"""Chunk-parallel forms of the recurrent memories: titans, hope_nl and deltanet.

Inside a chunk of C tokens, a memory that decays by a gate a_t per token keeps, at token t, the
fraction prod_{i<s<=t} a_s of what was written at token i. Collected for all pairs (t, i) of a chunk
this is a (C x C) lower-triangular matrix, and the token recurrence becomes matrix products with it
(Titans §3.2, Eq. 16-18; DeltaNet's chunk-wise form, Yang et al. 2024). The products are taken as
differences of cumulative sums of log-gates (as Mamba-2 and GLA do): a ratio of cumulative products
would underflow to 0/0 over long chunks.

hope_nl's DGD update (NL Eq. 93 and 96) and the delta rule (Schlag et al. 2021) are one recurrence,

    W_t = W_{t-1} (alpha_t I - eta_t k_t k_t^T) + X_t,    X_t = g_t k_t^T   (or, with momentum beta,
                                                          X_t = S_t = beta S_{t-1} + g_t k_t^T)

(the delta rule: alpha = 1, eta = beta_t, g_t = beta_t v_t), read as W_t q_t. `delta_tokens` runs it
token by token, the reference; `delta_chunk` gives the same numbers with one triangular solve and
matrix products per chunk (the UT/WY form of Yang et al. 2024).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def per_sample(value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(N,) -> (N, 1, ..., 1), to scale each sample's weights."""
    return value.view(-1, *([1] * (like.dim() - 1)))


def decay_matrix(log_gate: torch.Tensor) -> torch.Tensor:
    """(..., C) log-gates -> (..., C, C) with entry [t, i] = prod_{i<s<=t} a_s for i <= t, else 0."""
    C = log_gate.shape[-1]
    total = log_gate.cumsum(-1)
    keep = torch.ones(C, C, dtype=torch.bool, device=log_gate.device).tril()
    # Mask before exp: above the diagonal the differences are positive and may overflow.
    return (total[..., :, None] - total[..., None, :]).masked_fill(~keep, float("-inf")).exp()


def dgd_step(
    memory: torch.Tensor, key: torch.Tensor, eta: torch.Tensor, alpha: torch.Tensor, step: torch.Tensor | None = None
) -> torch.Tensor:
    """One token of the recurrence: W (alpha I - eta k k^T) + g k^T (NL Eq. 93 in closed form).

    memory (N, R, d): the weights W; key (N, d); eta and alpha (N,); step (N, R): g (None: the decay
    term alone, when the write goes through momentum instead). Both rank-1 terms share k^T and are
    applied in one product.
    """
    rows = -eta[:, None] * torch.bmm(memory, key.unsqueeze(-1)).squeeze(-1)  # -eta W k, (N, R)
    if step is not None:
        rows = rows + step
    return torch.baddbmm(per_sample(alpha, memory) * memory, rows.unsqueeze(-1), key.unsqueeze(1))


def delta_tokens(memory, surprise, momentum, q, k, eta, log_alpha, step, rows=slice(None), last=False):
    """One chunk token by token, the recurrence as written (the reference form).

    memory (N, R, d): W_0; surprise (N, R, d): S_0, or None without momentum; q, k (N, C, d);
    eta, log_alpha (N, C): eta_t and log alpha_t; step (N, C, R): g_t. Returns W_t q_t for every token,
    restricted to the memory's `rows`, (N, C, R'), and the state after the chunk (W_C, S_C).
    """
    del last  # the loop has the end state anyway
    alpha = log_alpha.exp()
    out = []
    for t in range(k.shape[1]):
        if surprise is None:
            memory = dgd_step(memory, k[:, t], eta[:, t], alpha[:, t], step[:, t])
        else:  # S_t = beta S_{t-1} + g_t k_t^T
            surprise = torch.baddbmm(surprise, step[:, t].unsqueeze(-1), k[:, t].unsqueeze(1), beta=momentum)
            memory = dgd_step(memory, k[:, t], eta[:, t], alpha[:, t]) + surprise
        out.append(torch.bmm(memory[:, rows], q[:, t].unsqueeze(-1)).squeeze(-1))  # W_t q_t, (N, R')
    return torch.stack(out, dim=1), memory, surprise


def delta_chunk(memory, surprise, momentum, q, k, eta, log_alpha, step, rows=slice(None), last=False):
    """`delta_tokens` by matrix products and one triangular solve (DeltaNet's UT form, Yang et al. 2024).

    Tokens t = 1..C from W_0, S_0, with gamma_t = prod_{s<=t} alpha_s and X_t what is written at t
    (g_t k_t^T; with momentum S_t = beta^t S_0 + sum_{j<=t} beta^(t-j) g_j k_j^T):

        W_t = alpha_t W_{t-1} - eta_t w_t k_t^T + X_t,    w_t = W_{t-1} k_t
            = gamma_t W_0 + sum_{i<=t} (gamma_t / gamma_i)(X_i - eta_i w_i k_i^T)

    so w_t = W_{t-1} k_t solves the unit lower-triangular system
        w_t + sum_{i<t} (gamma_{t-1} / gamma_i) eta_i (k_i . k_t) w_i = gamma_{t-1} W_0 k_t + sum_{i<t} (gamma_{t-1} / gamma_i) X_i k_t,
    and every read W_t q_t (the same sum with q_t for k_t and i <= t) and the end state W_C are
    products over the chunk. last: skip the end state, which nothing reads after the last chunk.
    """
    C = k.shape[1]
    total = log_alpha.cumsum(-1)  # log gamma_t, (N, C)
    gamma = total.exp()  # gamma_t, (N, C)
    upto = decay_matrix(log_alpha)  # [t, i] = gamma_t / gamma_i for i <= t, (N, C, C)
    before = F.pad(upto[:, :-1], (0, 0, 1, 0))  # its rows moved down one: [t, i] = gamma_{t-1} / gamma_i for i < t
    # Keys and queries stacked, (N, 2C, d): each product with k or with the state is taken once for both.
    kq = torch.cat([k, q], dim=1)
    keys, queries = (kq @ k.transpose(1, 2)).split(C, dim=1)  # k_t . k_i and q_t . k_i, (N, C, C)
    decayed_keys, decayed_queries = before * keys, upto * queries  # times gamma_{t-1} / gamma_i and gamma_t / gamma_i
    # The gates gamma_{t-1} (keys) and gamma_t (queries) scale the (N, 2C, d) stack rather than the wider products.
    gates = F.pad(torch.cat([gamma[:, :-1], gamma], dim=1), (1, 0), value=1.0)  # (N, 2C)
    rhs, out = ((gates.unsqueeze(-1) * kq) @ memory.transpose(1, 2)).split(C, dim=1)  # gamma_{t-1} W_0 k_t, gamma_t W_0 q_t
    out = out[..., rows]  # (N, C, R')
    to_end = upto[:, -1]  # gamma_C / gamma_i, (N, C)
    if surprise is None:
        rhs = torch.baddbmm(rhs, decayed_keys, step)
    else:
        log_beta = log_alpha.new_full(log_alpha.shape[-1:], math.log(momentum))
        lag = decay_matrix(log_beta)  # [i, j] = beta^(i - j), (C, C)
        powers = log_beta.cumsum(-1).exp()  # beta^t, (C,)
        k_surprise, q_surprise = (kq @ surprise.transpose(1, 2)).split(C, dim=1)  # S_0 k_t, S_0 q_t, (N, C, R)
        rhs = rhs + (before @ powers).unsqueeze(-1) * k_surprise + ((before @ lag) * keys) @ step
        out = out + (upto @ powers).unsqueeze(-1) * q_surprise[..., rows]
    w = torch.linalg.solve_triangular(decayed_keys * eta.unsqueeze(1), rhs, upper=False, unitriangular=True)  # (N, C, R)
    if surprise is None:  # W_t = gamma_t W_0 + sum_{i<=t} (gamma_t / gamma_i) u_i k_i^T with u_i = g_i - eta_i w_i
        u = torch.addcmul(step, eta.unsqueeze(-1), w, value=-1.0)  # (N, C, R)
        out = out + decayed_queries @ u[..., rows]
        if last:  # nothing reads the state after the last token
            return out, memory, surprise
        return out, torch.baddbmm(per_sample(gamma[:, -1], memory) * memory, u.transpose(1, 2), to_end.unsqueeze(-1) * k), None
    written = upto @ lag  # weight of g_j k_j^T in W_t, (N, C, C)
    out = out + (written * queries) @ step[..., rows] - (decayed_queries * eta.unsqueeze(1)) @ w[..., rows]
    if last:
        return out, memory, surprise
    added = (written[:, -1].unsqueeze(-1) * step - (eta * to_end).unsqueeze(-1) * w).transpose(1, 2) @ k  # (N, R, d)
    new_memory = per_sample(gamma[:, -1], memory) * memory + added + per_sample(to_end @ powers, surprise) * surprise
    surprise = powers[-1] * surprise + (lag[-1].unsqueeze(-1) * step).transpose(1, 2) @ k
    return out, new_memory, surprise
