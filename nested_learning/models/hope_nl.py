"""model=hope_nl: HOPE (§8.3, Eq. 94-97) at tiny scale: self-modifying Titans followed by CMS.

Self-modifying Titans (Eq. 94-96, chunk-wise form Eq. 90), per head, for a token x_t:

    o_t     = M_mem,t(q_t),  q_t = normalize(x_t W_q)               the only fixed projection
    k_t     = normalize(M_k,c(x_t)),  v_t = normalize(M_v,c(x_t))
    eta_t   = eta_max sigmoid(M_eta,c(x_t) + b_eta),  alpha_t = sigmoid(M_alpha,c(x_t) + b_alpha)
    vhat_t  = M_box,c(v_t)                                           each memory makes its own values (Eq. 95)
    W_box,t = W_box,t-1 (alpha_t I - eta_t k_t k_t^T) - eta_t grad L(M_box,c; k_t, vhat_box,t)   (Eq. 96)
    L(M; k, vhat) = 1/2 ||M(k) - vhat||^2,   so   grad_W = (M_c(k_t) - M_c(v_t)) k_t^T

for box in {k, v, mem, eta, alpha}, W_box being memory box's weights (below). M_c is the memory at
the start of t's chunk (Eq. 90; the paper's index C ceil(t/C) read as "the last state of the previous
chunk", as its text says): keys, values, eta, alpha, the self-generated values and every gradient
of a chunk are taken there, so they are computed for the whole chunk at once. Only the decay term
W_{t-1}(alpha I - eta k k^T) is sequential inside a chunk.

The output reads M_mem,t, the memory after token t's own update: the dual form of Sun et al. 2024
(TTT), which §8.2 says this update accepts, in which each token reads the weights as updated by
its chunk's tokens up to itself while the gradients stay at the chunk start. Eq. 94 writes
M_memory,t-1; the read of M_t is chosen to match titans.py (y_t = M_t(q_t)) and the delta-rule
and linear-attention baselines (o_t = W_t q_t), so the models of one table differ in their update
rule, not by a one-token shift of the read. The reads come out of the same triangular system that
gives the chunk's end state (chunkwise.delta_chunk: no token loop; parallel=False runs the tokens
one by one, the reference). With chunk_size=1, M_c = M_{t-1}: the token-by-token form of Eq. 94-96.
With momentum beta > 0 the gradient term goes through S_t = beta S_{t-1} - eta_t grad,
W_t = W_{t-1}(alpha_t I - eta_t k k^T) + S_t.

The memories are residual and linear, M(x) = x + W x, where the paper uses the 2-layer residual MLP
M(x) = x + W1 s(W2 x) (Eq. 89): one matrix W per memory has the closed-form update of Eq. 93, and
the five memories then share one recurrence, run as one stacked matrix (rows k | v | mem | eta | alpha).
The chunk form runs it in fewer coordinates: every write g_t k_t^T has g_t = (W_c + E)(-eta_t (k_t - v_t)),
a combination of the rows of W_c and of E, and the decay multiplies W from the right, so
W_t = W_0 Phi_t + E Psi_t for two (d, d) matrices per sample; the recurrence acts on [Phi; Psi] (2d rows
instead of 3d + 2), and W_0 enters through one per-head product of the reads and one of the outputs.
The token loop (parallel=False), the reference, runs on W itself.
The residual matters: without it every self-generated value M(v) is proportional to M, the update
only rescales M and the memory fades to zero along the sequence. The inner update (decay and
gradient step) acts on W. The eta and alpha memories have one output row (a scalar per head, so no
residual), squashed into a rate in (0, eta_max) and a retention gate in (0, 1) with learned biases.
v is L2-normalised like q and k (the paper normalises only q and k): for a square memory the update
is W <- W (alpha I - 2 eta k k^T + eta v k^T) + eta (v - k) k^T, whose factor has the eigenvalue
alpha - 2 eta + eta k^T v along k; with v free, k^T v grows with W_v, which grows with v, and at
initialisation, on unit-variance inputs, the state overflowed within ten tokens. With |v| = 1 the
factor stays bounded.
All of this happens in forward(), in eval mode too; the outer optimizer learns the initial states
W_box,0, W_q, the biases, the convolution, the CMS levels, the embedding and the head.
"""
from __future__ import annotations

import itertools
import math
from functools import partial
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nested_learning.errors import UserError
from nested_learning.models.chunkwise import delta_chunk, delta_tokens
from nested_learning.models.cms import CMS
from nested_learning.models.mixer_stack import CausalConv1d, MixerCMSLM, check_chunk, check_heads, warn_if_one_chunk
from nested_learning.models.titans import merge_heads, split_heads

MEMORY_NAMES = ("k", "v", "mem", "eta", "alpha")
STATIC_NAMES = ("k", "v", "eta", "alpha")  # mem is the memory the output reads: never static
INNER_RULES = ("delta", "gd")  # DGD (Eq. 93) | plain gradient descent


class SelfModifyingTitans(nn.Module):
    """Eq. 94-96 (chunk-wise, Eq. 90) as a token mixer: (B, T, D) -> (B, T, D).

    The ablation switches of NL Table 6 (docs/formal_languages.md, "Table 6-style ablation"):
    inner_rule "gd" drops the DGD term -eta_t W k_t k_t^T, leaving W_t = alpha_t W_{t-1} - eta_t grad;
    weight_decay=False fixes alpha_t = 1 (no alpha memory); `static` names the memories among k, v,
    eta, alpha that are fixed learned projections, their W_box,0, never updated in context ("transfer
    the projections [...] to the lowest-frequency level", §9.6).
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        chunk_size: int,
        conv_width: int,
        momentum: float,
        eta_max: float,
        parallel: bool = True,
        inner_rule: str = "delta",
        weight_decay: bool = True,
        static: Sequence[str] = (),
    ):
        super().__init__()
        d = check_heads(d_model, n_heads)
        check_chunk(chunk_size)
        if not 0.0 <= momentum < 1.0:
            raise UserError(f"model.momentum={momentum}: must lie in [0, 1) (0 = no momentum)")
        if not 0.0 < eta_max <= 1.0:
            raise UserError(f"model.eta_max={eta_max}: must lie in (0, 1]")
        if inner_rule not in INNER_RULES:
            raise UserError(f"model.inner_rule={inner_rule!r}: must be one of {', '.join(INNER_RULES)}")
        static = list(static)
        if not set(static) <= set(STATIC_NAMES) or len(set(static)) != len(static):
            raise UserError(f"model.static={static}: must list distinct names among {', '.join(STATIC_NAMES)}")
        if not weight_decay and "alpha" in static:
            raise UserError("model.static contains alpha with model.weight_decay=false: without weight decay there is no alpha to read")
        self.n_heads, self.d_head, self.chunk_size = n_heads, d, chunk_size
        self.momentum, self.eta_max, self.parallel = momentum, eta_max, parallel
        self.inner_rule = inner_rule
        used = [n for n in MEMORY_NAMES if weight_decay or n != "alpha"]
        self.static = [n for n in used if n in static]
        self.dynamic = [n for n in used if n not in static]  # the memories updated in context, stacked by rows
        self.conv = CausalConv1d(d_model, conv_width)
        self.w_q = nn.Linear(d_model, d_model, bias=False)
        # Initial states W_box,0 (per head), learned across sequences by the outer optimizer; a static
        # memory keeps its W_box,0 along the sequence.
        self.rows = {"k": d, "v": d, "mem": d, "eta": 1, "alpha": 1}
        self.initial = nn.ParameterDict(
            {n: nn.Parameter(0.1 * torch.randn(n_heads, self.rows[n], d) / math.sqrt(d)) for n in used}
        )
        self.eta_bias = nn.Parameter(torch.zeros(n_heads))
        # start remembering: alpha ~ 0.98
        self.alpha_bias = nn.Parameter(torch.full((n_heads,), 4.0)) if weight_decay else None

    def stacked(self, names: Sequence[str]) -> torch.Tensor:
        """The named memories' initial weights W_0 stacked by rows, per head: (H, R, d)."""
        return torch.cat([self.initial[n] for n in names], dim=1)

    def initial_state(self, batch: int) -> torch.Tensor:
        """The in-context memories' weights stacked by rows (default: k | v | mem | eta | alpha) for
        every sample, head-major like the mixer's layout: (H B, R, d)."""
        return self.stacked(self.dynamic).repeat_interleave(batch, dim=0)

    def residual(self, names: Sequence[str]) -> torch.Tensor:
        """The stacked memories' residual parts as a matrix E, so that M(z) = (W + E) z: (R, d), the
        identity in the rows of k, v and mem, zeros in those of eta and alpha."""
        eye = torch.eye(self.d_head, dtype=self.eta_bias.dtype, device=self.eta_bias.device)
        return torch.cat([eye if self.rows[n] > 1 else torch.zeros_like(eye[:1]) for n in names])

    def row_indices(self, names: Sequence[str], among: Sequence[str]) -> list[int]:
        """Indices of the named memories' rows in the stack of `among`."""
        starts = dict(zip(among, [0, *itertools.accumulate(self.rows[n] for n in among)]))
        return [i for n in names for i in range(starts[n], starts[n] + self.rows[n])]

    def by_name(self, names: Sequence[str], reads: torch.Tensor) -> dict[str, torch.Tensor]:
        """(N, C, R) stacked reads -> {name: (N, C, rows)}."""
        return dict(zip(names, reads.split([self.rows[n] for n in names], dim=-1)))

    def static_reads(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The static memories M(x) = (W_0 + E) x over the whole sequence: x (N, T, d) -> {name: (N, T, rows)}."""
        if not self.static:
            return {}
        maps = self.stacked(self.static) + self.residual(self.static)  # (H, R, d)
        return self.by_name(self.static, per_head(x, maps))

    def chunk_inputs(self, maps: torch.Tensor, x: torch.Tensor, fixed_reads: dict[str, torch.Tensor], eta_bias, alpha_bias,
                     initial: torch.Tensor | None = None):
        """A chunk's keys, rates and inner steps, all at the chunk's start state (Eq. 90), whose
        memories M(z) = (W + E) z are `maps` = W + E (N, R, d): one product reads all of them. Given
        `initial`, the rows of W_0 (H, R', d) of every in-context memory but mem, `maps` are instead the
        coordinates [Phi; Psi + I] (N, 2d, d) of W + E = W_0 Phi + E (Psi + I), and those R' rows are read.

        x (N, C, d); fixed_reads: the static memories' reads of x; alpha_bias None: no weight decay.
        Returns k (N, C, d), eta and log alpha (N, C), and the step -eta_t grad of every in-context
        memory, (N, C, R) (given `initial`, its coordinates (N, C, 2d)).
        """
        coords = x @ maps.transpose(1, 2)  # (N, C, R)
        if initial is None:
            reads = self.by_name(self.dynamic, coords)
        else:  # (W_0 Phi + E (Psi + I)) z: W_0 times the first d coordinates, plus the last d in the rows E holds
            phi, psi = coords.split(self.d_head, dim=-1)  # split, not slices: no zero-filled gradients in backward
            reads = self.by_name([n for n in self.dynamic if n != "mem"], per_head(phi, initial))
            reads.update({n: r + psi for n, r in reads.items() if self.rows[n] > 1})
        reads.update(fixed_reads)
        k, v = unit(reads["k"]), unit(reads["v"])
        eta = self.eta_max * torch.sigmoid(reads["eta"][..., 0] + eta_bias[:, None])  # (N, C)
        if alpha_bias is None:
            log_alpha = torch.zeros_like(eta)  # alpha_t = 1
        else:
            log_alpha = F.logsigmoid(reads["alpha"][..., 0] + alpha_bias[:, None])  # log alpha_t, (N, C)
        # -eta_t grad = -eta_t (M_box,c(k_t) - vhat_box,t) with vhat = M_box,c(v_t): the rate scales k - v, (N, C, d)
        step = (-eta.unsqueeze(-1) * (k - v)) @ maps.transpose(1, 2)  # (N, C, R)
        return k, eta, log_alpha, step

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, d = x.shape[0], self.n_heads, self.d_head
        x = self.conv(x)
        q = unit(split_heads(self.w_q(x), H, head_major=True))  # (N, T, d)
        x = split_heads(x, H, head_major=True)  # (N, T, d)
        eta_bias = self.eta_bias.repeat_interleave(B)  # (N,), head-major like N
        alpha_bias = None if self.alpha_bias is None else self.alpha_bias.repeat_interleave(B)
        fixed = self.static_reads(x)
        residual = self.residual(self.dynamic)  # E, (R, d)
        mem = self.row_indices(["mem"], self.dynamic)
        mem_rows = slice(mem[0], mem[-1] + 1)
        if self.parallel and 2 * d < residual.shape[0]:
            # Every write is a combination of the rows of W_c and E (g_t = (W_c + E)(-eta_t (k_t - v_t))),
            # and the decay multiplies W from the right, so W_t = W_0 Phi_t + E Psi_t: the recurrence runs
            # on the 2d coordinates [Phi; Psi] (N, 2d, d) instead of the R = 3d + 2 rows, and W_0 enters
            # through per-head products only.
            initial = self.stacked(self.dynamic)  # W_0, (H, R, d)
            eye, zeros = torch.eye(d, dtype=x.dtype, device=x.device), x.new_zeros(d, d)
            memory = torch.cat([eye, zeros]).repeat(B * H, 1, 1)  # Phi_0 = I, Psi_0 = 0, (N, 2d, d)
            shift = torch.cat([zeros, eye])  # E's coordinates, (2d, d)
            readers = initial[:, self.row_indices([n for n in self.dynamic if n != "mem"], self.dynamic)]  # (H, R - d, d)
            out_rows = slice(None)
        else:
            initial, readers, memory, shift, out_rows = None, None, self.initial_state(B), residual, mem_rows
        surprise = torch.zeros_like(memory) if self.momentum else None
        update = delta_chunk if self.parallel else delta_tokens
        out = []
        chunks = list(zip(x.split(self.chunk_size, dim=1), q.split(self.chunk_size, dim=1)))  # split: one backward op
        starts = range(0, x.shape[1], self.chunk_size)
        for i, ((x_c, q_c), t) in enumerate(zip(chunks, starts)):
            fixed_c = {n: r[:, t : t + self.chunk_size] for n, r in fixed.items()}
            k, eta, log_alpha, step = self.chunk_inputs(memory + shift, x_c, fixed_c, eta_bias, alpha_bias, readers)
            # gd: the decay W (alpha I - eta k k^T) loses its eta k k^T, as if eta were 0 there
            decay_eta = eta if self.inner_rule == "delta" else torch.zeros_like(eta)
            mem_read, memory, surprise = update(
                memory, surprise, self.momentum, q_c, k, decay_eta, log_alpha, step, rows=out_rows, last=i == len(chunks) - 1
            )
            out.append(mem_read)  # W_mem,t q_t (N, C, d), or its coordinates (N, C, 2d)
        out = torch.cat(out, dim=1)
        if initial is not None:  # (W_0,mem Phi_t + Psi_t) q_t: E is the identity in mem's rows
            phi, psi = out.split(d, dim=-1)
            out = per_head(phi, initial[:, mem_rows]) + psi  # (N, T, d)
        return merge_heads(q + out, B, head_major=True)  # o_t = M_mem,t(q_t) = q_t + W_mem,t q_t, (B, T, D)


def unit(x: torch.Tensor) -> torch.Tensor:
    """F.normalize(x, dim=-1) (x / max(|x|, 1e-12)) as a product with the reciprocal norm, whose backward is
    cheaper than the division's (one thread: the mixer's forward+backward 5-9% faster)."""
    return x * x.square().sum(-1, keepdim=True).clamp_min(1e-24).rsqrt()


def per_head(x: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """Each head's map applied to all its samples in one product: x (H B, T, c), maps (H, R, c) -> (H B, T, R)."""
    H, (N, T, c) = maps.shape[0], x.shape
    return (x.reshape(H, N // H * T, c) @ maps.transpose(1, 2)).view(N, T, -1)


class HopeNLLM(MixerCMSLM):
    """embedding -> n_layers x HOPE block [self-modifying Titans, CMS] (Eq. 94-97) -> head."""

    def __init__(
        self,
        vocab_size: int,
        max_len: int,
        d_model: int = 64,
        n_heads: int = 2,
        chunk_size: int = 16,
        conv_width: int = 4,
        momentum: float = 0.0,
        eta_max: float = 0.5,
        parallel: bool = True,
        inner_rule: str = "delta",
        weight_decay: bool = True,
        static: Sequence[str] = (),
        d_ff: int = 128,
        n_layers: int = 2,
        periods: Sequence[int] = (1, 3, 6),
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
            make_mixer=partial(
                SelfModifyingTitans, d_model, n_heads, chunk_size, conv_width, momentum, eta_max, parallel,
                inner_rule=inner_rule, weight_decay=weight_decay, static=static,
            ),
            make_cms=partial(CMS, d_model, d_ff, periods, level_lrs, cms_variant, dropout, cms_clock, cms_state, cms_inner_lr),
            dropout=dropout,
        )
