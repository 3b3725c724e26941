"""Multi-query associative recall (MQAR), after HazyResearch/zoology `zoology/data/multiquery_ar.py`.

A sequence first lists `num_kv_pairs` key-value pairs (`k3 v17 k9 v4 ...`): keys are drawn without
replacement from one half of the vocabulary (`k1 .. k{V/2-1}`), values from the other (`v{V/2} ..
v{V-1}`). The rest of the sequence is filler (`_`) with every key asked once, at even offsets whose
gaps follow zoology's power law p(g) ~ a g^(a-1) (a = `power_a`, 0.01: mostly short gaps). The target
at a query's position is its key's value; every other position has no target (<pad>), so token
accuracy is recall per query and sequence accuracy asks for every query of a sequence right.
Departure: zoology can fill the gaps with random tokens (`random_non_queries`); here they are the
filler word, so a gap never reads as an unasked query. Training and evaluation sequences are
distinct draws of the same generator, seeded by (seed, number of pairs).
"""
from __future__ import annotations

import random
from typing import Sequence

from nested_learning.data.sampling import draw_distinct_items
from nested_learning.data.tasks import EVAL_SPLIT, PAD, Task, TaskSequence
from nested_learning.errors import UserError

FILLER = "_"


def power_law_gaps(space: int, count: int, power_a: float, rng: random.Random) -> list[int]:
    """`count` distinct gaps from 0..space-1, gap g drawn with weight a (g + 1)^(a - 1) (zoology's)."""
    weights = [power_a * (g + 1) ** (power_a - 1) for g in range(space)]
    chosen: list[int] = []
    for _ in range(count):
        free = [g for g in range(space) if g not in chosen]
        chosen.append(rng.choices(free, [weights[g] for g in free])[0])
    return chosen


def mqar_example(num_kv_pairs: int, vocab_size: int, seq_len: int, power_a: float, rng: random.Random) -> tuple[str, str]:
    """(input words, target words): the pairs, then filler with each key queried once."""
    half = vocab_size // 2
    keys = rng.sample(range(1, half), num_kv_pairs)
    values = rng.sample(range(half, vocab_size), num_kv_pairs)
    context = 2 * num_kv_pairs
    inputs = [w for k, v in zip(keys, values) for w in (f"k{k}", f"v{v}")] + [FILLER] * (seq_len - context)
    targets = [PAD] * seq_len
    for key, value, gap in zip(keys, values, power_law_gaps((seq_len - context) // 2, num_kv_pairs, power_a, rng)):
        inputs[context + 2 * gap] = f"k{key}"
        targets[context + 2 * gap] = f"v{value}"
    return " ".join(inputs), " ".join(targets)


def mqar_tasks(
    num_kv_pairs: int | Sequence[int] = 8,
    name: str = "mqar",
    vocab_size: int = 64,
    seq_len: int = 64,
    power_a: float = 0.01,
    train_size: int = 2000,
    eval_size: int = 500,
    repeats: int = 1,
    seed: int = 0,
) -> TaskSequence:
    """One task per number of pairs (an int, or a list for a sequence of tasks), evaluated on the split `eval`."""
    counts = [num_kv_pairs] if isinstance(num_kv_pairs, int) else list(num_kv_pairs)
    for key, value, low in (("vocab_size", vocab_size, 4), ("train_size", train_size, 1), ("eval_size", eval_size, 1),
                            ("repeats", repeats, 1)):
        if not isinstance(value, int) or value < low:
            raise UserError(f"task.{key}={value!r}: must be an integer >= {low}")
    if not 0 < power_a <= 1:
        raise UserError(f"task.power_a={power_a}: must lie in (0, 1]")
    if not counts or len(set(counts)) != len(counts):
        raise UserError(f"task.num_kv_pairs={num_kv_pairs!r}: give an integer or a list of distinct integers")
    tasks = []
    for count in counts:
        if not isinstance(count, int) or not 1 <= count <= vocab_size // 2 - 1:
            raise UserError(f"task.num_kv_pairs={count!r}: must lie in 1..{vocab_size // 2 - 1} (distinct keys "
                            f"from half of task.vocab_size={vocab_size})")
        if seq_len < 4 * count:
            raise UserError(f"task.seq_len={seq_len}: {count} pairs and their queries need at least {4 * count} positions")
        rng = random.Random(f"{seed}:{count}")
        examples = draw_distinct_items(lambda: mqar_example(count, vocab_size, seq_len, power_a, rng),
                                       train_size + eval_size, "task.train_size + task.eval_size",
                                       f"sequences of {count} pairs over task.vocab_size={vocab_size}")
        tasks.append(Task(f"mqar{count}", tuple(examples[:train_size]), {EVAL_SPLIT: tuple(examples[train_size:])}))
    return TaskSequence(name, tuple(tasks), repeats)
