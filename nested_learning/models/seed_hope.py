"""The seed's HOPE-inspired recurrent cell (science.md section 1).

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
"""
from __future__ import annotations

import logging
from typing import Mapping

import torch
from torch import nn

from nested_learning.errors import UserError

log = logging.getLogger(__name__)


def validate_rates(rates: Mapping[str, float]) -> list[float]:
    """Base rates in track order (fastest first); each must lie in (0, 1]."""
    if not rates:
        raise UserError("rates: no tracks; give at least one rate, e.g. rates=seed")
    values = []
    for name, value in rates.items():
        if not isinstance(value, (int, float)) or not 0.0 < float(value) <= 1.0:
            raise UserError(f"rates.{name}={value}: a rate must lie in (0, 1]")
        values.append(float(value))
    if any(a < b for a, b in zip(values, values[1:])):
        order = " >= ".join(rates)
        log.warning("rates %s are not ordered %s; the last track is still the protected one", dict(rates), order)
    return values


class SeedHopeCell(nn.Module):
    def __init__(
        self,
        input_size: int,
        units: int,
        rates: Mapping[str, float],
        clamp_margin: float = 0.05,
        protect_slowest: bool = True,
    ):
        super().__init__()
        if clamp_margin < 0:
            raise UserError(f"model.clamp_margin={clamp_margin}: must be >= 0")
        base = validate_rates(rates)
        self.units, self.num_tracks = units, len(base)
        self.register_buffer("base_rates", torch.tensor(base))  # (k,)
        self.clamp_margin = clamp_margin
        self.protect_slowest = protect_slowest
        controller_in = input_size + self.num_tracks * units
        self.controller = nn.Linear(controller_in, units)
        self.rate_adapter = nn.Linear(controller_in, self.num_tracks)

    def step(self, x_t: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        """One time step: x_t (B, D), states (B, k, U) -> new states (B, k, U)."""
        c = torch.cat([x_t, states.flatten(1)], dim=1)  # (B, D + k U)
        h = torch.tanh(self.controller(c))  # (B, U)
        a = torch.sigmoid(self.rate_adapter(c))  # (B, k)
        r = self.base_rates
        rate = torch.minimum((r + (1 - r) * a).clamp_min(0.0), r + self.clamp_margin)  # (B, k)
        if self.protect_slowest:
            rate = torch.cat([rate[:, :-1], r[-1:].expand(rate.shape[0], 1)], dim=1)
        rate = rate.unsqueeze(-1)  # (B, k, 1)
        return (1 - rate) * states + rate * h.unsqueeze(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, D) -> mean of the tracks after each step, (B, T, U)."""
        B, T, _ = x.shape
        states = x.new_zeros(B, self.num_tracks, self.units)
        outputs = []
        for t in range(T):
            states = self.step(x[:, t], states)
            outputs.append(states.mean(dim=1))
        return torch.stack(outputs, dim=1)


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
    ):
        super().__init__()
        del max_len  # a recurrence needs no position table
        self.embed = nn.Embedding(vocab_size, d_model)
        self.cell = SeedHopeCell(d_model, d_model, rates, clamp_margin, protect_slowest)
        self.norm = nn.LayerNorm(d_model, eps=1e-6)
        self.head = nn.Linear(d_model, vocab_size)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.cell(self.embed(tokens))  # (B, T, D)
        return self.head(self.norm(h))  # (B, T, V)
