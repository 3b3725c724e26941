"""Base rates of the seed cell's tracks, checked without importing torch (so bad input fails fast)."""
from __future__ import annotations

from typing import Mapping

from nested_learning.errors import UserError


def check_rates(rates: Mapping[str, float]) -> list[float]:
    """Base rates in track order (fastest first); each must lie in (0, 1]."""
    if not rates:
        raise UserError("rates: no tracks; give at least one rate, e.g. rates=seed")
    values = []
    for name, value in rates.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 < float(value) <= 1.0:
            raise UserError(f"rates.{name}={value}: a rate must lie in (0, 1]")
        values.append(float(value))
    return values
