"""The Continuum Memory System (CMS): MLP levels whose parameters update at their own frequency.

A chain of k MLP levels (Eq. 70, the "sequential" variant of Eq. 73), or k parallel levels combined
by a learned weighted sum (the "independent" variant, Eq. 74). What makes it CMS is not the forward
pass, which is an ordinary residual MLP stack, but the update rule (Eq. 71): level l sums its
gradients over C^(l) optimizer steps and applies them once, with its own learning rate. Nets that
contain CMS chains inherit `CMSNet`, whose `configure_optimizer` builds that rule
(optim/multi_frequency.py) and whose `extra_results` reports how often each level updated.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from nested_learning.errors import UserError
from nested_learning.optim.multi_frequency import Level, MultiFrequencyOptimizer, OptimizerFactory

VARIANTS = ("sequential", "independent")


def validate_levels(
    periods: Sequence[int], level_lrs: Sequence[float | None] | None, variant: str
) -> list[float | None]:
    """Check the CMS options; returns one learning rate per level (None: the optimizer's lr)."""
    if not periods:
        raise UserError("model.periods=[]: give at least one level period, e.g. model.periods=[1,3,6]")
    for period in periods:
        if isinstance(period, bool) or not isinstance(period, int) or period < 1:
            raise UserError(f"model.periods={list(periods)}: each period must be an integer >= 1 (optimizer steps)")
    if level_lrs is None:
        level_lrs = [None] * len(periods)
    if len(level_lrs) != len(periods):
        raise UserError(
            f"model.level_lrs has {len(level_lrs)} entries but model.periods has {len(periods)}; "
            "give one rate per level, or null to use optimizer.lr for all"
        )
    for lr in level_lrs:
        if lr is not None and (not isinstance(lr, (int, float)) or lr < 0):
            raise UserError(
                f"model.level_lrs={list(level_lrs)}: each rate must be a number >= 0 or null (optimizer.lr)"
            )
    if variant not in VARIANTS:
        raise UserError(f"model.cms_variant={variant}: choose one of {', '.join(VARIANTS)}")
    return [None if lr is None else float(lr) for lr in level_lrs]


class MLPLevel(nn.Module):
    """One level's MLP, dropout placed as in nn.TransformerEncoderLayer's feed-forward: (.., D) -> (.., D)."""

    def __init__(self, d_model: int, d_ff: int, dropout: float):
        super().__init__()
        self.linear1 = nn.Linear(d_model, d_ff)
        self.linear2 = nn.Linear(d_ff, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.linear2(self.dropout(torch.relu(self.linear1(h)))))


class CMS(nn.Module):
    """Eq. 70 (sequential): h_l = h_{l-1} + MLP_l(h_{l-1}); Eq. 74 (independent): x + sum_l w_l MLP_l(x).

    The residual around each level is the paper's memory form M(x) = x + W1 s(W2 x) (Eq. 89); with
    one level this is exactly a Transformer feed-forward plus its residual ("the case k = 1").
    Independent levels are mixed by softmax(w): a learned convex combination, uniform at start; w is
    not a level parameter, so it is updated every step. Level l is levels[l-1]: the first in the
    list sees the input first.
    """

    def __init__(
        self,
        d_model: int,
        d_ff: int,
        periods: Sequence[int],
        level_lrs: Sequence[float | None] | None = None,
        variant: str = "sequential",
        dropout: float = 0.0,
    ):
        super().__init__()
        self.level_lrs = validate_levels(periods, level_lrs, variant)
        self.periods = list(periods)
        self.levels = nn.ModuleList(MLPLevel(d_model, d_ff, dropout) for _ in self.periods)
        self.mix_logits = nn.Parameter(torch.zeros(len(self.periods))) if variant == "independent" else None

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # (B, T, D) -> (B, T, D)
        if self.mix_logits is None:
            for level in self.levels:
                h = h + level(h)
            return h
        weights = torch.softmax(self.mix_logits, dim=0)  # (k,)
        return h + sum(w * level(h) for w, level in zip(weights, self.levels))


class CMSNet:
    """Mixin for a net (an nn.Module) holding one or more CMS chains built from the same options.

    Level l of every chain in the net (e.g. one chain per layer) forms one level of the optimizer,
    with that level's period and rate; all other parameters update every step.
    """

    def configure_optimizer(self, factory: OptimizerFactory) -> MultiFrequencyOptimizer:
        chains = [m for m in self.modules() if isinstance(m, CMS)]
        spec = chains[0]
        if any(c.periods != spec.periods or c.level_lrs != spec.level_lrs for c in chains):
            raise ValueError("CMSNet: every CMS chain in one net must share periods and level_lrs")
        levels = [
            Level([p for c in chains for p in c.levels[i].parameters()], period, lr)
            for i, (period, lr) in enumerate(zip(spec.periods, spec.level_lrs))
        ]
        in_levels = {id(p) for level in levels for p in level.params}
        every_step = [p for p in self.parameters() if id(p) not in in_levels]
        self.cms_optimizer = MultiFrequencyOptimizer(factory, every_step, levels)
        return self.cms_optimizer

    def extra_results(self) -> dict[str, Any]:
        return {"cms_levels": self.cms_optimizer.report(), "optimizer_steps": self.cms_optimizer.clock}
