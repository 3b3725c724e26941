"""One optimizer whose parameter levels update at different frequencies: CMS, Eq. 71.

    theta^(l)_{i+1} = theta^(l)_i - sum_{t=i-C^(l)+1}^{i} eta^(l) f(theta^(l)_t; x_t)   if i = 0 mod C^(l)
                    = theta^(l)_i                                                      otherwise

The clock i counts calls to `step()` (optimizer steps), starting at 1: level l's first update is at
step C^(l), after it has summed the gradients of steps 1..C^(l); afterwards at 2 C^(l), 3 C^(l), ...
so after N steps it has made N // C^(l) updates, and the gradients of an unfinished last chunk are
never applied. Between its updates a level's parameters do not change: the inner optimizer skips
parameters whose `.grad` is None (torch.optim's documented behaviour), so neither its rule nor
its weight decay nor its state touches them.

The summed gradients live in accumulators owned by this wrapper, not in `.grad`: Lightning (or any
loop) zeroes `.grad` before every backward, and the accumulators are not reachable from there. At a
level's update step the accumulated sum of the previous steps is added to the current `.grad`, so
the inner optimizer (one instance, one parameter group per level with the level's own lr) sees one
gradient: the chunk's sum. For plain SGD the update is then exactly -lr * sum; Adam normalises the
sum like any other gradient. Levels with period 1 and the other parameters step every call.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

import torch
from torch import nn

OptimizerFactory = Callable[[Iterable[Any]], torch.optim.Optimizer]


@dataclass
class Level:
    """Parameters that share one update period and one learning rate (one CMS level)."""

    params: list[nn.Parameter]
    period: int  # C^(l), in optimizer steps
    lr: float | None = None  # None: the factory's learning rate


class MultiFrequencyOptimizer:
    """Wraps `factory(param_groups)`: group 0 holds the parameters stepped every call, group l+1 level l.

    It implements the optimizer interface Lightning needs (step with a closure, zero_grad,
    param_groups, state, state_dict); `state` is the inner optimizer's, so clearing it (as
    reset_optimizer=true does at a task boundary) clears e.g. Adam's moments, while the clock and the
    partial sums carry on: the clock counts steps of the whole run, not of a task. The clock, the
    update counts and the partial sums are part of state_dict, so a resumed run continues a
    half-summed chunk. It is not a torch.optim.Optimizer subclass, so torch's LR schedulers (which
    check that type) refuse it; the framework uses none.
    """

    def __init__(self, factory: OptimizerFactory, every_step: Iterable[nn.Parameter], levels: list[Level]):
        every_step = list(every_step)
        groups = [{"params": every_step}] if every_step else []
        for level in levels:
            groups.append({"params": level.params} if level.lr is None else {"params": level.params, "lr": level.lr})
        self.inner = factory(groups)
        self.levels = levels
        self.clock = 0
        self.updates = [0] * len(levels)
        # Periods of 1 need no sums: their gradient of this step is the whole chunk.
        self.accumulators = [[torch.zeros_like(p) for p in lv.params] if lv.period > 1 else [] for lv in levels]
        # Each level's parameters when training began, for the norm of its total change (report).
        self.initial = [[p.detach().clone() for p in lv.params] for lv in levels]

    # The attributes Lightning reads on an optimizer.
    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.inner.param_groups

    @property
    def state(self):
        return self.inner.state

    @property
    def defaults(self) -> dict[str, Any]:
        return self.inner.defaults

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.inner.zero_grad(set_to_none=set_to_none)  # the accumulators are not gradients: they survive

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.clock += 1
        for i, (level, sums) in enumerate(zip(self.levels, self.accumulators)):
            due = self.clock % level.period == 0
            for p, total in zip(level.params, sums):
                if due:
                    p.grad = total.clone() if p.grad is None else p.grad.add_(total)
                    total.zero_()
                elif p.grad is not None:
                    total.add_(p.grad)
                    p.grad = None  # the inner optimizer skips it: no change between update steps
            self.updates[i] += due
        self.inner.step()
        return loss

    def report(self) -> list[dict[str, Any]]:
        """Per level: its period, the learning rate it used, how many updates it made, and the norm of
        its total change since training began (all its parameters as one vector)."""
        # Read the groups now, not at construction: inner.load_state_dict replaces the group dicts.
        groups = self.inner.param_groups[len(self.inner.param_groups) - len(self.levels):]
        return [
            {"level": i + 1, "period": lv.period, "lr": group["lr"], "updates": n, "change_norm": change_norm(lv.params, start)}
            for i, (lv, group, n, start) in enumerate(zip(self.levels, groups, self.updates, self.initial))
        ]

    def state_dict(self) -> dict[str, Any]:
        return {"inner": self.inner.state_dict(), "clock": self.clock, "updates": list(self.updates),
                "periods": [lv.period for lv in self.levels],
                "accumulators": [[t.clone() for t in sums] for sums in self.accumulators],
                "initial": [[t.clone() for t in start] for start in self.initial]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        periods = [lv.period for lv in self.levels]
        saved = state_dict.get("periods")
        if saved is not None and list(saved) != periods:
            raise ValueError(
                f"MultiFrequencyOptimizer: the saved state has level periods {list(saved)} but this optimizer "
                f"has {periods}; resume with the same model.periods"
            )
        self.inner.load_state_dict(state_dict["inner"])
        self.clock = state_dict["clock"]
        self.updates = list(state_dict["updates"])
        for sums, saved in zip(self.accumulators, state_dict["accumulators"]):
            for total, value in zip(sums, saved):
                total.copy_(value)
        for start, saved in zip(self.initial, state_dict.get("initial", self.initial)):  # older checkpoints lack it
            for value, old in zip(start, saved):
                value.copy_(old)


def change_norm(params: list[nn.Parameter], start: list[torch.Tensor]) -> float:
    return float(torch.sqrt(sum(((p.detach() - s) ** 2).sum() for p, s in zip(params, start))))
