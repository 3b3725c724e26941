"""Seeded choice of distinct items from a large combinatorial space, and the held-out split.

Generated tasks (stories, synthetic) number their possible sentences 0..capacity-1 as mixed-radix
numbers, so distinct sentences come from distinct numbers drawn without enumerating the space.
"""
from __future__ import annotations

import random
from typing import Callable, Sequence, TypeVar

from nested_learning.errors import UserError

Item = TypeVar("Item")


def draw_distinct(capacity: int, count: int, rng: random.Random, field: str, what: str) -> list[int]:
    """`count` distinct numbers from range(capacity), in random order."""
    if count > capacity:
        raise UserError(f"{field}={count}: {what} give only {capacity} distinct sentences; ask for at most {capacity}")
    if 2 * count > capacity:  # a dense draw: capacity is small, so the population can be listed
        return rng.sample(range(capacity), count)
    drawn: dict[int, None] = {}  # by rejection, since range(capacity) may be too long for len()
    while len(drawn) < count:
        drawn.setdefault(rng.randrange(capacity))
    return list(drawn)


def draw_distinct_items(draw: Callable[[], Item], count: int, field: str, what: str) -> list[Item]:
    """`count` distinct results of `draw()`, in order of first appearance, for spaces that cannot be numbered.

    Gives up, with an error naming `field`, after 50 draws per item asked for (the space is then too small).
    """
    drawn: dict[Item, None] = {}
    for _ in range(50 * count):
        if len(drawn) == count:
            break
        drawn.setdefault(draw())
    if len(drawn) < count:
        raise UserError(f"{field}={count}: could not draw that many distinct {what}; ask for fewer")
    return list(drawn)


def unflatten(number: int, sizes: Sequence[int]) -> list[int]:
    """The digits of `number` in the mixed radix `sizes`, first digit least significant."""
    digits = []
    for size in sizes:
        number, digit = divmod(number, size)
        digits.append(digit)
    return digits


def split_heldout(items: Sequence[Item], heldout_fraction: float, field: str) -> tuple[list[Item], list[Item]]:
    """(train, held-out): the first round(fraction * n) items are held out (items arrive shuffled)."""
    if not 0.0 <= heldout_fraction < 1.0:
        raise UserError(f"{field}={heldout_fraction}: must lie in [0, 1)")
    held = round(heldout_fraction * len(items))
    if heldout_fraction > 0 and not 0 < held < len(items):
        raise UserError(
            f"{field}={heldout_fraction} of {len(items)} sentences holds out {held} and trains on "
            f"{len(items) - held}; each side needs at least one: ask for more sentences"
        )
    return list(items[held:]), list(items[:held])
