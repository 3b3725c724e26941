"""Checks of optimizer settings, so a bad `optimizer.*` value stops a run in one line, before training."""
from __future__ import annotations

from typing import Any, Callable

import torch

from nested_learning.errors import UserError


def require(name: str, value: Any, ok: Callable[[Any], bool], allowed: str) -> None:
    """Raise ValueError("name=value: must be allowed") unless ok(value) (torch.optim's convention)."""
    try:
        good = not isinstance(value, bool) and ok(value)
    except TypeError:
        good = False
    if not good:
        raise ValueError(f"{name}={value!r}: must be {allowed}")


def is_rate(value: Any) -> bool:
    """A number in [0, 1)."""
    return isinstance(value, (int, float)) and 0 <= value < 1


def check_factory(factory: Callable[..., torch.optim.Optimizer]) -> None:
    """Build the configured optimizer once on a throwaway parameter: its own checks run now, not mid-fit.

    Optimizers are configured as partials (`_partial_: true`) and built inside Lightning's fit, where
    a ValueError would surface as a deep traceback; here it becomes a UserError naming the key.
    """
    try:
        factory([torch.nn.Parameter(torch.zeros(2, 2))])
    except (TypeError, ValueError) as err:
        message = str(err)
        if "=" in message.split(":", 1)[0]:  # our own "key=value: must be ..." messages
            raise UserError(f"optimizer.{message}") from None
        raise UserError(f"optimizer: {type(err).__name__}: {message}; check the optimizer.* values") from None
