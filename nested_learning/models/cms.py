"""The Continuum Memory System (CMS): MLP levels whose parameters update at their own frequency.

A chain of k MLP levels (Eq. 70, the "sequential" variant of Eq. 73), or k parallel levels combined
by a learned weighted sum (the "independent" variant, Eq. 74). What makes it CMS is the update rule
(Eq. 71): level l sums its error terms over C^(l) steps and applies them once, with its own rate.
Two clocks read "steps" differently:

- `step`: optimizer steps. The forward pass is an ordinary residual MLP stack; the net's
  `configure_optimizer` (CMSNet) sums each level's gradients over C^(l) optimizer steps
  (optim/multi_frequency.py).
- `token`: tokens of the context. Each level is a fast state updated inside forward after every
  C^(l) tokens (cms_token.py); the parameters are its learned initial state, trained every step.
  `state=reset` starts every sequence from them; `state=carry` carries the change along the stream
  of training sequences (buffers `carried.<l>.*`, in the state_dict, so resume is exact), and
  `state=carry_all` along every sequence the net reads, evaluation included: test-time learning
  across the stream, only when asked, since a retention evaluation then learns from evaluation data.

Nets that contain CMS chains inherit `CMSNet`, whose `extra_results` reports per level its updates
and its total change, and the cosine similarity of the levels' outputs on the evaluation data.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import torch
from torch import nn

from nested_learning.errors import UserError
from nested_learning.models.cms_token import FastWeights, run_level
from nested_learning.optim.multi_frequency import Level, MultiFrequencyOptimizer, OptimizerFactory

VARIANTS = ("sequential", "independent")
CLOCKS = ("step", "token")
STATES = ("reset", "carry", "carry_all")
# What an evaluation pass (eval mode) may change, recorded in results.json.
EVALUATION_MAY_CHANGE = {
    "step": "nothing: levels change only at optimizer steps",
    "reset": "each evaluated sequence's own fast state, from the learned initial weights, discarded after it",
    "carry": "each evaluated sequence's own copy of the carried state, discarded after it; "
             "the carried state and the parameters stay unchanged",
    "carry_all": "the carried state, as in training: each evaluated batch's mean end state is carried on "
                 "(asked for with cms_state=carry_all); the parameters stay unchanged",
}


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


def validate_clock(clock: str, state: str, inner_lr: float | Sequence[float], n_levels: int) -> list[float]:
    """Check the clock options; returns one inner learning rate per level."""
    if clock not in CLOCKS:
        raise UserError(f"model.cms_clock={clock}: choose one of {', '.join(CLOCKS)}")
    if state not in STATES:
        raise UserError(f"model.cms_state={state}: choose one of {', '.join(STATES)}")
    if clock == "step" and state != "reset":
        raise UserError(f"model.cms_state={state} needs model.cms_clock=token (the step clock has no fast state)")
    rates = list(inner_lr) if isinstance(inner_lr, (list, tuple)) else [inner_lr] * n_levels
    if len(rates) != n_levels or any(isinstance(r, bool) or not isinstance(r, (int, float)) or r < 0 for r in rates):
        raise UserError(
            f"model.cms_inner_lr={inner_lr}: give one number >= 0, or a list of {n_levels} (one per level)"
        )
    return [float(r) for r in rates]


class CarriedState(nn.Module):
    """A level's in-context change carried along the training stream (cms_state=carry): buffers, so
    they travel in the state_dict and in checkpoints; never parameters, so no optimizer touches them."""

    def __init__(self, level: "MLPLevel"):
        super().__init__()
        for name, value in zip(("w1", "b1", "w2", "b2"), FastWeights.zeros_like(level).tensors()):
            self.register_buffer(name, value)

    def fast_weights(self) -> FastWeights:
        return FastWeights(self.w1, self.b1, self.w2, self.b2)

    def assign(self, fast: FastWeights) -> None:
        # New tensors, not in-place writes: a read of this forward may still hold the old ones.
        for name, value in zip(("w1", "b1", "w2", "b2"), fast.tensors()):
            setattr(self, name, value.detach().clone())


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
        clock: str = "step",
        state: str = "reset",
        inner_lr: float | Sequence[float] = 1e-3,
    ):
        super().__init__()
        self.level_lrs = validate_levels(periods, level_lrs, variant)
        self.inner_lrs = validate_clock(clock, state, inner_lr, len(periods))
        self.periods, self.clock, self.state = list(periods), clock, state
        self.levels = nn.ModuleList(MLPLevel(d_model, d_ff, dropout) for _ in self.periods)
        self.mix_logits = nn.Parameter(torch.zeros(len(self.periods))) if variant == "independent" else None
        self.carried = nn.ModuleList(CarriedState(lv) for lv in self.levels) if state != "reset" else None
        if clock == "token":
            # Diagnostics in buffers, so a resumed run continues them: updates made by training
            # forwards (one per chunk boundary of a forward), and the norm of the latest change.
            self.register_buffer("inner_updates", torch.zeros(len(self.periods), dtype=torch.long))
            self.register_buffer("fast_change_norm", torch.zeros(len(self.periods)))
        self.record_outputs = False  # set by level_output_cosines: keep each level's output of a forward
        self.level_outputs: list[torch.Tensor] = []

    def forward(self, h: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, D) -> (B, T, D); `valid` (B, T) marks real tokens, for the token clock's error terms."""
        outputs = []

        def read(i: int, x: torch.Tensor) -> torch.Tensor:
            out = self.levels[i](x) if self.clock == "step" else self._token_level(i, x, valid)
            outputs.append(out)
            return out

        if self.mix_logits is None:
            for i in range(len(self.levels)):
                h = h + read(i, h)  # level l reads level l-1's output: levels run one after another
        else:
            weights = torch.softmax(self.mix_logits, dim=0)  # (k,)
            h = h + sum(w * read(i, h) for i, w in enumerate(weights))
        if self.record_outputs:
            self.level_outputs = [out.detach() for out in outputs]
        return h

    def _token_level(self, i: int, x: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
        level = self.levels[i]
        start = self.carried[i].fast_weights() if self.carried is not None else FastWeights.zeros_like(level)
        run = run_level(level, x, valid, self.periods[i], self.inner_lrs[i], start)
        if self.training or self.state == "carry_all":  # else evaluation writes neither the carried state nor the diagnostics
            self.inner_updates[i] += run.updates
            if self.carried is not None:
                # One stream, B sequences read in parallel: it keeps the batch mean of their end states.
                end = run.mean_end()
                self.carried[i].assign(end)
                self.fast_change_norm[i] = end.norm()
            else:
                self.fast_change_norm[i] = run.change_norms().mean()
        return run.out


class CMSNet:
    """Mixin for a net (an nn.Module) holding one or more CMS chains built from the same options.

    Level l of every chain in the net (e.g. one chain per layer) forms one level of the optimizer,
    with that level's rate and, on the step clock, its period (on the token clock the parameters
    are initial states, stepped every optimizer step); all other parameters update every step.
    """

    def cms_chains(self) -> list[CMS]:
        return [m for m in self.modules() if isinstance(m, CMS)]

    def configure_optimizer(self, factory: OptimizerFactory) -> MultiFrequencyOptimizer:
        chains = self.cms_chains()
        spec = chains[0]
        if any(c.periods != spec.periods or c.level_lrs != spec.level_lrs for c in chains):
            raise ValueError("CMSNet: every CMS chain in one net must share periods and level_lrs")
        levels = [
            Level([p for c in chains for p in c.levels[i].parameters()], period if spec.clock == "step" else 1, lr)
            for i, (period, lr) in enumerate(zip(spec.periods, spec.level_lrs))
        ]
        in_levels = {id(p) for level in levels for p in level.params}
        every_step = [p for p in self.parameters() if id(p) not in in_levels]
        self.cms_optimizer = MultiFrequencyOptimizer(factory, every_step, levels)
        return self.cms_optimizer

    def extra_results(self, eval_batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, Any]:
        """Per level its updates and total change; the levels' output cosines on `eval_batches`
        ((inputs, valid) pairs: token ids (B, T) and a mask of the positions to count)."""
        spec = self.cms_chains()[0]
        levels = self.cms_optimizer.report()
        if spec.clock == "token":
            for i, entry in enumerate(levels):
                entry["outer_updates"] = entry.pop("updates")  # the initial weights' optimizer steps
                entry.update(
                    period=spec.periods[i],
                    inner_lr=spec.inner_lrs[i],
                    updates=int(spec.inner_updates[i]),
                    fast_change_norm=float(torch.stack([c.fast_change_norm[i] for c in self.cms_chains()]).norm()),
                )
        return {
            "cms_clock": spec.clock,
            "cms_state": spec.state if spec.clock == "token" else None,
            "evaluation_may_change": EVALUATION_MAY_CHANGE[spec.state if spec.clock == "token" else "step"],
            "cms_levels": levels,
            "optimizer_steps": self.cms_optimizer.clock,
            "cms_level_cosine": self.level_output_cosines(eval_batches),
        }

    @torch.no_grad()
    def level_output_cosines(self, eval_batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, float]:
        """Mean cosine similarity between two levels' outputs MLP_i(.) and MLP_j(.) over the counted
        positions, per layer and pair of levels (eval mode; a redundancy check: 1 = same direction)."""
        chains = self.cms_chains()
        k = len(chains[0].levels)
        pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
        sums = [[0.0] * len(pairs) for _ in chains]
        count = 0
        was_training = self.training
        self.eval()
        for chain in chains:
            chain.record_outputs = True
        try:
            for inputs, valid in eval_batches:
                self(inputs)
                mask = valid.to(torch.bool)
                count += int(mask.sum())
                for c, chain in enumerate(chains):
                    outs = chain.level_outputs
                    for p, (i, j) in enumerate(pairs):
                        cos = nn.functional.cosine_similarity(outs[i], outs[j], dim=-1)  # (B, T)
                        sums[c][p] += float(cos[mask].sum())
        finally:
            for chain in chains:
                chain.record_outputs, chain.level_outputs = False, []
            self.train(was_training)
        return {
            f"layer{c + 1}/level{i + 1}-level{j + 1}": sums[c][p] / count if count else math.nan
            for c in range(len(chains)) for p, (i, j) in enumerate(pairs)
        }
