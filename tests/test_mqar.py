"""MQAR (data/mqar.py), checked by reading each sequence back independently of the generator."""
from __future__ import annotations

import random
from collections import Counter

import pytest

from nested_learning.data.mqar import power_law_gaps, mqar_tasks
from nested_learning.data.vocab import Vocabulary
from nested_learning.errors import UserError


def test_every_query_targets_its_keys_value_and_nothing_else_has_a_target():
    seq = mqar_tasks([3, 5], vocab_size=16, seq_len=24, train_size=40, eval_size=10, seed=1)
    assert seq.names == ["mqar3", "mqar5"] and seq.split_names == ["eval"]
    for task, pairs in zip(seq.tasks, (3, 5)):
        examples = task.train + task.splits["eval"]
        assert len(set(examples)) == 50 and not set(task.train) & set(task.splits["eval"])
        for inputs, targets in examples:
            words, wanted = inputs.split(), targets.split()
            assert len(words) == len(wanted) == 24
            context = words[: 2 * pairs]
            keys, values = context[0::2], context[1::2]
            assert len(set(keys)) == pairs and all(1 <= int(k[1:]) < 8 for k in keys)  # keys: the lower half
            assert all(8 <= int(v[1:]) < 16 for v in values)  # values: the upper half
            recall = dict(zip(keys, values))
            queries = [(t, w) for t, w in enumerate(words) if t >= 2 * pairs and w != "_"]
            assert sorted(w for _, w in queries) == sorted(keys)  # every key asked once
            assert all((t - 2 * pairs) % 2 == 0 for t, _ in queries)
            assert {t: wanted[t] for t, _ in queries} == {t: recall[w] for t, w in queries}
            assert all(wanted[t] == "<pad>" for t in range(24) if t not in dict(queries))


def test_targets_outside_queries_are_padding_ids():
    seq = mqar_tasks(2, vocab_size=8, seq_len=8, train_size=3, eval_size=1)
    inputs, targets = Vocabulary(seq).encode(seq.tasks[0].train)
    assert inputs.shape == targets.shape == (3, 8)
    assert ((targets != 0).sum(-1) == 2).all()  # two queries per sequence, no other target


def test_query_gaps_follow_a_power_law():
    rng = random.Random(0)
    counts = Counter(power_law_gaps(20, 1, 0.01, rng)[0] for _ in range(4000))
    # p(g) ~ (g + 1)^-0.99: the first gap about 20 times as likely as the last
    assert counts[0] > 10 * counts[19] and counts[0] > counts[1] > counts[5]
    assert sorted(power_law_gaps(6, 6, 0.01, rng)) == list(range(6))  # without replacement


@pytest.mark.parametrize("kwargs, message", [
    ({"num_kv_pairs": 40}, r"task.num_kv_pairs=40: must lie in 1..31"),
    ({"num_kv_pairs": 20, "seq_len": 64}, r"task.seq_len=64: 20 pairs and their queries need at least 80 positions"),
    ({"num_kv_pairs": [4, 4]}, "a list of distinct integers"),
    ({"vocab_size": 2}, r"task.vocab_size=2: must be an integer >= 4"),
    ({"num_kv_pairs": 1, "vocab_size": 4, "seq_len": 4, "train_size": 10}, "could not draw that many distinct"),
])
def test_bad_values_are_one_line_errors(kwargs, message):
    with pytest.raises(UserError, match=message):
        mqar_tasks(**kwargs)
