"""A task generator outside the package: shift ciphers, one task per shift.

Every task reads random words over the same letters; task k's target at each position is that
letter shifted k places along the alphabet (explicit targets, one per input word). The tasks share
their inputs and disagree on every target, so a model fine-tuned on one after another must forget:
a small benchmark where forgetting is certain and can be measured exactly.
"""
from __future__ import annotations

import random
from typing import Sequence

from nested_learning.data.sampling import draw_distinct_items
from nested_learning.data.tasks import EVAL_SPLIT, Task, TaskSequence
from nested_learning.errors import UserError


def shifted(word: str, shift: int, letters: str) -> str:
    return " ".join(letters[(letters.index(c) + shift) % len(letters)] for c in word.split())


def shift_tasks(
    shifts: Sequence[int] = (1, 2),
    name: str = "shift",
    letters: str = "abcdefgh",
    length: int = 6,
    train_size: int = 200,
    eval_size: int = 50,
    repeats: int = 1,
    seed: int = 0,
) -> TaskSequence:
    if not shifts or len(set(shifts)) != len(shifts):
        raise UserError(f"task.shifts={list(shifts)!r}: give a list of distinct integers")
    rng = random.Random(seed)
    # Every task draws from the same words, so only the targets tell the tasks apart.
    words = draw_distinct_items(lambda: " ".join(rng.choices(letters, k=length)), train_size + eval_size,
                                "task.train_size + task.eval_size", f"words of {length} letters from {letters!r}")
    tasks = []
    for shift in shifts:
        examples = tuple((word, shifted(word, shift, letters)) for word in words)  # (inputs, targets)
        tasks.append(Task(f"shift{shift}", examples[:train_size], {EVAL_SPLIT: examples[train_size:]}))
    return TaskSequence(name, tuple(tasks), repeats)
