"""The seed's HOPE-inspired recurrent cell (the seed demo's model; README "Models").

k memory tracks s_1..s_k of width U, each an exponential moving average over the time steps of one
sentence with its own base rate r_i (fast, medium, slow). At every step t:

    c_t    = concat(x_t, s_1, ..., s_k)                       # (B, D + k U)
    h      = tanh(W_c c_t + b_c)                              # controller, (B, U)
    a      = sigmoid(W_a c_t + b_a)                           # rate adapter, (B, k)
    rate_i = clip(r_i + (1 - r_i) a_i, 0, r_i + margin)       # i < k; the slowest keeps rate r_k
    s_i   <- (1 - rate_i) s_i + rate_i h
    y_t    = mean_i s_i                                       # (B, U)

Since r_i + (1 - r_i) a_i >= r_i, the adapter can only speed a track up, by at most `margin`.
Note the "slow" memory is slow in sequence time: it is reset for every sentence, so it does not
by itself carry knowledge across tasks (the paper's CMS, Eq. 71, changes parameters instead).

Two implementations of the same cell:
- `SeedHopeCell.forward_reference`: the definition above as written, one `step` per token under
  autograd. Kept as the ground truth for tests and for scripts/bench_cell.py.
- `SeedHopeCell.forward` (the default): the same numbers, computed faster. The x_t columns of the
  controller and rate adapter are applied to the whole sentence in one matrix product before the
  loop; their state columns are stacked into one (U + k, k U) matrix, so each step does a single
  matrix product; the loop runs without autograd and a hand-written backward pass
  (`_TrackRecurrence`) replays it in reverse with one matrix product per step. Two exact
  identities remove ops: the lower clip at 0 never binds (sigmoid >= 0 and r_i > 0), and
  protecting the slowest track is the same as capping its rate at r_k.

Option `controller_input` (model.controller_input):
- "tracks" (default): the seed's model, c_t as above.
- "token": controller and rate adapter read x_t only, so W_c is (U, D) and W_a is (k, D). This is
  a different model, with fewer parameters: the candidate h_t and the rates no longer see the
  memory, so a track cannot decide to keep or overwrite its content from what it holds, and
  checkpoints of one option do not load into the other. In exchange h_t and rate_t are known for
  every t before the recurrence runs, so the tracks are a linear recurrence
  s_t = (1 - rate_t) s_{t-1} + rate_t h_t, computed by a chunked parallel scan (`ema_mean_scan`);
  `ema_mean_loop` is the same recurrence step by step, for comparison.
"""
from __future__ import annotations

import logging
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from nested_learning.errors import UserError
from nested_learning.models.rates import check_rates

log = logging.getLogger(__name__)

CONTROLLER_INPUTS = ("tracks", "token")
# Scan chunk length: the chunk matrices grow with its square, the sequential pass over chunks with
# T / chunk; on 2 CPU cores 16 was fastest at length 512 (8: 10% slower, 32: 28% slower).
SCAN_CHUNK = 16


def validate_rates(rates: Mapping[str, float]) -> list[float]:
    """Base rates in track order (fastest first); each must lie in (0, 1]. Out of order is allowed, with a warning."""
    values = check_rates(rates)
    if any(a < b for a, b in zip(values, values[1:])):
        order = " >= ".join(rates)
        log.warning("rates %s are not ordered %s; the last track is still the protected one", dict(rates), order)
    return values


def validate_controller_input(value: str) -> str:
    if value not in CONTROLLER_INPUTS:
        raise UserError(f"model.controller_input={value}: must be one of {', '.join(CONTROLLER_INPUTS)}")
    return value


class _TrackRecurrence(torch.autograd.Function):
    """The "tracks" cell given the x_t part of the controller and adapter pre-activations.

    proj (T, B, U + k): W_x x_t + b for every step, controller rows first, adapter rows last.
    w_state (U + k, k U): the state columns of the stacked controller and adapter weights.
    base, cap (k,): base rates and their upper clip (r_k for a protected slowest track).
    Returns the mean of the tracks after every step, (T, B, U).
    The loops run without autograd: recording ~10 small ops per step cost more than the ops.
    Once differentiable: no second derivatives.
    """

    @staticmethod
    def forward(ctx, proj, w_state, base, cap):
        T, B, N = proj.shape
        k = base.numel()
        U = N - k
        w_fwd = w_state.t().contiguous()  # (k U, U + k); MKL was faster with this layout than with a transposed view
        slope = 1 - base
        states = proj.new_empty(T + 1, B, k, U)  # states[t + 1] = tracks after step t
        states[0].zero_()
        act = proj.new_empty(T, B, N)  # tanh of the controller and sigmoid of the adapter pre-activations
        rate = proj.new_empty(T, B, k)
        z = proj.new_empty(B, N)  # this step's pre-activations, controller then adapter
        z_gate = z[:, U:]  # (B, k)
        # per-step views made once: indexing inside the loop cost ~8% of the cell's time at T=128
        steps = zip(
            proj.unbind(0), states.view(T + 1, B, k * U).unbind(0), states[:-1].unbind(0), states[1:].unbind(0),
            act.unbind(0), act[:, :, U:].unbind(0), act[:, :, None, :U].unbind(0),
            rate.unbind(0), rate.unsqueeze(3).unbind(0),
        )
        for proj_t, flat_prev, prev, new, act_t, gate, cand, rate_t, rate_col in steps:
            torch.addmm(proj_t, flat_prev, w_fwd, out=z)
            # tanh over all columns, the adapter's then overwritten: a contiguous tanh beat a strided one
            torch.tanh(z, out=act_t)
            torch.sigmoid(z_gate, out=gate)
            torch.minimum(torch.addcmul(base, slope, gate), cap, out=rate_t)
            torch.lerp(prev, cand, rate_col, out=new)  # s + rate (h - s): the definition's (1 - rate) s + rate h
        ctx.save_for_backward(w_state, base, cap, states, act, rate)
        return states[1:].mean(dim=2)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        w_state, base, cap, states, act, rate = ctx.saved_tensors
        T, B, N = act.shape
        k = rate.shape[2]
        U = N - k
        grad_mean = grad_out.unsqueeze(2) / k  # (T, B, 1, U): what each track gets from the mean
        tanh_slope = 1 - act[..., :U].square()  # (T, B, U)
        rate_slope = _rate_slope(base, cap, act[..., U:])  # (T, B, k)
        keep = (1 - rate).unsqueeze(3)  # (T, B, k, 1)
        grad_z = grad_out.new_empty(T, B, N)
        steps_backwards = reversed(list(zip(
            grad_z.unbind(0), grad_z[:, :, :U].unbind(0), grad_z[:, :, U:].unbind(0),
            act[:, :, None, :U].unbind(0), states[:-1].unbind(0), rate.unsqueeze(3).unbind(0), keep.unbind(0),
            tanh_slope.unbind(0), rate_slope.unbind(0), grad_mean.unbind(0),
        )))
        g = later = None  # g (B, k, U): total gradient reaching the tracks after step t
        for grad_z_t, grad_h, grad_gate, cand, prev, rate_col, keep_t, dtanh_t, drate_t, grad_y_t in steps_backwards:
            if later is None:
                g = grad_y_t.expand(B, k, U)
            else:  # back through step t + 1: its keep term and its controller and adapter inputs
                g = torch.addcmul(torch.mm(later[0], w_state).view(B, k, U), g, later[1]).add_(grad_y_t)
            torch.mul((g * rate_col).sum(dim=1), dtanh_t, out=grad_h)
            # h - s_{t-1} is recomputed: storing it in forward (one more op per step and a
            # (T, B, k, U) buffer) measured slower
            torch.mul((g * (cand - prev)).sum(dim=2), drate_t, out=grad_gate)
            later = grad_z_t, keep_t
        grad_w_state = grad_z.view(T * B, N).t() @ states[:-1].reshape(T * B, k * U)  # (U + k, k U)
        return grad_z, grad_w_state, None, None


def _rate_slope(base, cap, a):
    """d rate / d (adapter pre-activation), a (..., k) -> (..., k)."""
    value = torch.addcmul(base, 1 - base, a)  # the rate before the upper clip
    # torch.minimum, used by the reference, sends half the gradient to each side on a tie
    passes = (value < cap).to(a.dtype) + 0.5 * (value == cap).to(a.dtype)
    return passes * (1 - base) * a * (1 - a)


def ema_mean_loop(h: torch.Tensor, rate: torch.Tensor) -> torch.Tensor:
    """Mean over k tracks of s_t = (1 - rate_t) s_{t-1} + rate_t h_t from s_0 = 0, one step at a time.

    h (B, T, U), rate (B, T, k) -> (B, T, U). The sequential baseline of `ema_mean_scan`.
    """
    B, _, U = h.shape
    state = h.new_zeros(B, rate.shape[2], U)  # (B, k, U)
    outputs = []
    # unbind, not h[:, t]: the backward of T slices would build T full-size zero tensors
    for h_t, rate_t in zip(h.unbind(1), rate.unbind(1)):
        rate_t = rate_t.unsqueeze(2)  # (B, k, 1)
        state = (1 - rate_t) * state + rate_t * h_t.unsqueeze(1)
        outputs.append(state.mean(dim=1))
    return torch.stack(outputs, dim=1)


def ema_mean_scan(h: torch.Tensor, rate: torch.Tensor, chunk: int = SCAN_CHUNK) -> torch.Tensor:
    """`ema_mean_loop` as a chunked scan: parallel inside chunks of `chunk` steps, sequential across them.

    Inside a chunk, s_t = sum_{j <= t} D[t, j] rate_j h_j + carry_t s_start with
    D[t, j] = prod_{j < i <= t} (1 - rate_i) and carry_t = prod_{i <= t} (1 - rate_i), so one
    (C + k, C + k) matrix per sentence maps the chunk's candidates and starting tracks to its
    outputs and ending tracks (`_chunk_operator`): one batched matrix product per chunk. h is shared
    by the tracks, so the mean over tracks is taken on the matrix, before it meets h.
    """
    B, T, U = h.shape
    state = h.new_zeros(B, rate.shape[2], U)  # (B, k, U): the tracks where the chunk starts
    outputs = []
    for h_c, rate_c in zip(h.split(chunk, dim=1), rate.split(chunk, dim=1)):
        C = h_c.shape[1]
        out = _chunk_operator(rate_c.transpose(1, 2)) @ torch.cat([h_c, state], dim=1)  # (B, C + k, U)
        outputs.append(out[:, :C])
        state = out[:, C:]
    return torch.cat(outputs, dim=1)


def _chunk_operator(rate: torch.Tensor) -> torch.Tensor:
    """rate (B, k, C) -> M (B, C + k, C + k) with M @ [h_1 .. h_C; s_start] = [y_1 .. y_C; s_end].

    M is a product of (1 - rate) factors taken by a cumulative product, never exp of a difference
    of cumulative log sums: long products underflow harmlessly to 0 (they are that small), nothing
    overflows or cancels, and a rate of exactly 1 needs no special case.
    """
    k = rate.shape[1]
    keep = 1 - rate
    weights = _chunk_decay(keep) * rate.unsqueeze(2)  # (B, k, C, C): weight of h_j in track k at step t
    carry = torch.cumprod(keep, dim=2)  # (B, k, C): weight of the starting track at step t
    outputs = torch.cat([weights.mean(dim=1), carry.transpose(1, 2) / k], dim=2)  # (B, C, C + k)
    ends = torch.cat([weights[:, :, -1], torch.diag_embed(carry[:, :, -1])], dim=2)  # (B, k, C + k)
    return torch.cat([outputs, ends], dim=1)


def _chunk_decay(keep: torch.Tensor) -> torch.Tensor:
    """keep (B, k, C) -> D (B, k, C, C), D[t, j] = prod_{j < i <= t} keep_i for j <= t, else 0."""
    C = keep.shape[2]
    later = torch.ones(C, C, dtype=torch.bool, device=keep.device).tril(-1)  # (C, C): row i > column j
    factors = torch.where(later, keep.unsqueeze(3), 1.0)  # (B, k, C, C): keep_i where i > j, else 1
    return torch.cumprod(factors, dim=2).tril()


class SeedHopeCell(nn.Module):
    def __init__(
        self,
        input_size: int,
        units: int,
        rates: Mapping[str, float],
        clamp_margin: float = 0.05,
        protect_slowest: bool = True,
        controller_input: str = "tracks",
    ):
        super().__init__()
        if clamp_margin < 0:
            raise UserError(f"model.clamp_margin={clamp_margin}: must be >= 0")
        base = validate_rates(rates)
        self.controller_input = validate_controller_input(controller_input)
        self.input_size, self.units, self.num_tracks = input_size, units, len(base)
        self.register_buffer("base_rates", torch.tensor(base))  # (k,)
        self.clamp_margin = clamp_margin
        self.protect_slowest = protect_slowest
        controller_in = input_size + (self.num_tracks * units if controller_input == "tracks" else 0)
        self.controller = nn.Linear(controller_in, units)
        self.rate_adapter = nn.Linear(controller_in, self.num_tracks)

    def step(self, x_t: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        """One time step: x_t (B, D), states (B, k, U) -> new states (B, k, U)."""
        c = x_t if self.controller_input == "token" else torch.cat([x_t, states.flatten(1)], dim=1)  # (B, D [+ k U])
        h = torch.tanh(self.controller(c))  # (B, U)
        a = torch.sigmoid(self.rate_adapter(c))  # (B, k)
        r = self.base_rates
        rate = torch.minimum((r + (1 - r) * a).clamp_min(0.0), r + self.clamp_margin)  # (B, k)
        if self.protect_slowest:
            rate = torch.cat([rate[:, :-1], r[-1:].expand(rate.shape[0], 1)], dim=1)
        rate = rate.unsqueeze(-1)  # (B, k, 1)
        return (1 - rate) * states + rate * h.unsqueeze(1)

    def forward_reference(self, x: torch.Tensor) -> torch.Tensor:
        """The definition as written, one `step` per token: x (B, T, D) -> (B, T, U)."""
        B, T, _ = x.shape
        states = x.new_zeros(B, self.num_tracks, self.units)
        outputs = []
        for t in range(T):
            states = self.step(x[:, t], states)
            outputs.append(states.mean(dim=1))
        return torch.stack(outputs, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, D) -> mean of the tracks after each step, (B, T, U); same values as `forward_reference`.

        In the parameters' dtype, autocast (trainer.precision=bf16-mixed) off: the fused recurrence writes into
        float32 buffers and fails on bfloat16 projections, and in bfloat16's 8-bit mantissa a slow track's
        step (rate 0.02 times h - s) rounds away near |s| = 1 whenever |h - s| < 0.1 (docs/hardware.md).
        """
        with torch.autocast(x.device.type, enabled=False):
            x = x.to(self.controller.weight.dtype)  # the parameters' dtype: float32, or float64 in tests
            if self.controller_input == "token":
                return ema_mean_scan(*self.token_gates(x))
            D = self.input_size
            weight = torch.cat([self.controller.weight, self.rate_adapter.weight])  # (U + k, D + k U)
            bias = torch.cat([self.controller.bias, self.rate_adapter.bias])  # (U + k,)
            proj = F.linear(x.transpose(0, 1), weight[:, :D], bias)  # (T, B, U + k)
            return _TrackRecurrence.apply(proj, weight[:, D:], self.base_rates, self.rate_cap()).transpose(0, 1)

    def rate_cap(self) -> torch.Tensor:
        """Upper clip of each track's rate, (k,). A protected slowest track gets cap r_k: its rate
        r_k + (1 - r_k) a_k is never below r_k, so the clip pins it to r_k, as the definition says."""
        cap = self.base_rates + self.clamp_margin
        if self.protect_slowest:
            cap = torch.cat([cap[:-1], self.base_rates[-1:]])
        return cap

    def token_gates(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """For controller_input="token": candidates h (B, T, U) and rates (B, T, k) of every step at once."""
        h = torch.tanh(self.controller(x))
        a = torch.sigmoid(self.rate_adapter(x))
        rate = torch.minimum(torch.addcmul(self.base_rates, 1 - self.base_rates, a), self.rate_cap())
        return h, rate


class SeedHopeLM(nn.Module):
    """embedding -> SeedHopeCell over the sentence -> LayerNorm(eps 1e-6) -> linear head."""

    def __init__(
        self,
        vocab_size: int,
        max_len: int,
        rates: Mapping[str, float],
        d_model: int = 96,
        clamp_margin: float = 0.05,
        protect_slowest: bool = True,
        controller_input: str = "tracks",
    ):
        super().__init__()
        del max_len  # a recurrence needs no position table
        self.embed = nn.Embedding(vocab_size, d_model)
        self.cell = SeedHopeCell(d_model, d_model, rates, clamp_margin, protect_slowest, controller_input)
        self.norm = nn.LayerNorm(d_model, eps=1e-6)
        self.head = nn.Linear(d_model, vocab_size)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.cell(self.embed(tokens))  # (B, T, D)
        return self.head(self.norm(h))  # (B, T, V)
