"""Synthetic tasks for scale: each task a different random transition rule over one token set.

Tokens are the words t0 .. t{V-1}. Task k draws, for every token, `branching` distinct successors;
its sequences start at any token and step to one of the current token's successors, L tokens in
all. With branching 1 a task is a deterministic rule (the whole sequence follows from its first
token); with more, next-token accuracy is capped near 1 / branching. All tasks share the tokens but
not the rules, so learning one task overwrites what the previous one needs. Held-out sequences
are other walks of the same rule: they test the rule, not memorised sequences. Within a task they
never repeat a training walk; a walk valid under two rules (chance about (branching / vocab_size)
^ (length - 1) per pair) could appear in two tasks. Sizes (num_tasks, vocab_size, length,
sequences_per_task) can grow until a run takes minutes.
"""
from __future__ import annotations

import random

from nested_learning.data.sampling import draw_distinct, split_heldout, unflatten
from nested_learning.data.tasks import TaskSequence, from_sentences
from nested_learning.errors import UserError


def transition_table(vocab_size: int, branching: int, rng: random.Random) -> list[list[int]]:
    """For each token, `branching` distinct successors."""
    return [rng.sample(range(vocab_size), branching) for _ in range(vocab_size)]


def walk(number: int, table: list[list[int]], length: int) -> str:
    """The number-th sequence of a rule: first token, then which successor at each step (mixed radix)."""
    vocab_size, branching = len(table), len(table[0])
    first, *choices = unflatten(number, [vocab_size] + [branching] * (length - 1))
    tokens = [first]
    for choice in choices:
        tokens.append(table[tokens[-1]][choice])
    return " ".join(f"t{token}" for token in tokens)


def synthetic_tasks(
    name: str = "synthetic",
    num_tasks: int = 4,
    vocab_size: int = 32,
    length: int = 8,
    branching: int = 2,
    sequences_per_task: int = 64,
    heldout_fraction: float = 0.25,
    repeats: int = 4,
    seed: int = 0,
) -> TaskSequence:
    for key, value, low in (("num_tasks", num_tasks, 1), ("vocab_size", vocab_size, 2), ("length", length, 2),
                            ("sequences_per_task", sequences_per_task, 1)):
        if value < low:
            raise UserError(f"task.{key}={value}: must be an integer >= {low}")
    if not 1 <= branching <= vocab_size:
        raise UserError(f"task.branching={branching}: must lie in 1..vocab_size ({vocab_size})")
    train, held = {}, {}
    for k in range(num_tasks):
        rng = random.Random(f"{seed}:{k}")
        table = transition_table(vocab_size, branching, rng)
        numbers = draw_distinct(
            vocab_size * branching ** (length - 1), sequences_per_task, rng, "task.sequences_per_task",
            f"{vocab_size} tokens, length {length} and branching {branching}",
        )
        task = f"rule{k}"
        train[task], held_out = split_heldout([walk(n, table, length) for n in numbers], heldout_fraction, "task.heldout_fraction")
        if held_out:
            held[task] = held_out
    return from_sentences(name, train, repeats, held)
