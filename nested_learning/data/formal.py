"""Formal-language recognition as next-character-set prediction (NL Table 5's protocol).

The protocol is Bhattamishra et al. 2020 ("On the ability and limitations of Transformers to
recognize formal languages", code satwik77/Transformer-Formal-Languages) as Irie et al. 2023 use it
(code IDSIA/fwp-formal-lang), which the Nested Learning paper's Table 5 follows. Every choice:

- Languages: Parity (bit strings with an even number of 1s), (aa)*, (abab)*, a^n b^n, a^n b^n c^n
  (n >= 1) and Shuffle-2 (interleavings of two Dyck-1 languages, `( )` and `[ ]`, each balanced).
- Input: one character per step, the characters of a member string, nothing else (no start symbol).
- Per-position target: after reading x1..xt, the set of characters that can follow in some member,
  plus `$` when x1..xt is itself a member (Bhattamishra). Irie trains one class per position with
  cross-entropy; so do we: the set is one target word, e.g. `<ab>` or `<a$>`, in the shared
  vocabulary. Only members are generated (the protocol uses no negative strings).
- Sequence accuracy: a string counts only if every position's set is right (`eval.metric=sequence`).
- Sizes: training lengths [1, 50], Bin1 lengths [51, 100]; for a^n b^n and a^n b^n c^n both ranges
  are over n. A length with no member is skipped, so Shuffle-2 trains on [2, 50] and is tested on
  [52, 100] (its even lengths), as in the protocol, from the same settings.
- Bin0 = held-out strings of the training lengths, disjoint from the training strings, and Bin1 =
  longer strings. (aa)*, (abab)*, a^n b^n and a^n b^n c^n have one member per length (or per n), so
  they have no held-out strings: training uses every member in range, Bin0 is those same strings
  (as in the original data) and Bin1 every member in its range; `Task.heldout` records it. So that
  an epoch means the same amount of training for every language, their epoch repeats the members
  in turn to `train_size` strings (at least one of each).
- Parity and Shuffle-2 draw `train_size` distinct training strings (default 10 000, about the
  protocol's 10k) and `eval_size` per bin (default 1000; the protocol's test sets hold 500-2000):
  a length uniform over the range's member lengths, then a member of it. Parity: uniform random
  bits, the last one fixing the parity. Shuffle-2: at each step a move chosen uniformly among those
  that still allow a balanced end (open either kind; close a kind that is open), so members are not
  drawn uniformly, a documented departure from Bhattamishra's grammar sampling.
- Seeded: the strings follow from (seed, language) only.

`language` may also be a list: one task per language, in order, over one shared vocabulary (a
continual sequence of languages). (aa)*, (abab)*, a^n b^n and a^n b^n c^n share the characters a
and b but not their targets: after `a`, (aa)* needs `a`, (abab)* `b`, a^n b^n either. Without task
identity no model can be right on all of them, so joint training (the upper bound) could not learn
the sequence. `marker=True` starts every string with its language's word, `#aa` (the task-
incremental setting: the task is known at test time), whose target is the set of characters a
member starts with; the Table 5 runs use no marker.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Sequence

from nested_learning.data.sampling import draw_distinct_items
from nested_learning.data.tasks import Task, TaskSequence
from nested_learning.errors import UserError

END = "$"


@dataclass(frozen=True)
class Language:
    alphabet: str
    starts: str  # the characters a member can start with: the target of a language marker (formal_tasks)
    # A member of the given size (a length, or n for the counter languages), or None if there is none.
    sample: Callable[[int, random.Random], str | None]
    # The set of valid next characters (and END) after each prefix of a member, in order.
    next_sets: Callable[[str], list[set[str]]]
    one_per_size: bool  # one member per size: nothing can be held out


def _parity_sample(length: int, rng: random.Random) -> str:
    bits = [rng.choice("01") for _ in range(length - 1)]
    return "".join(bits) + ("1" if bits.count("1") % 2 else "0")


def _parity_next(string: str) -> list[set[str]]:
    ones, sets = 0, []
    for char in string:
        ones += char == "1"
        sets.append({"0", "1"} | ({END} if ones % 2 == 0 else set()))
    return sets


def _repeat_next(unit: str) -> Callable[[str], list[set[str]]]:
    """(unit)*: the next character is fixed; the end is allowed after whole units."""
    return lambda string: [{unit[(t + 1) % len(unit)]} | ({END} if (t + 1) % len(unit) == 0 else set())
                           for t in range(len(string))]


def _counter_next(letters: str) -> Callable[[str], list[set[str]]]:
    """a^n b^n (c^n): more of the first letter or the second; then each later letter exactly n times."""
    def sets(string: str) -> list[set[str]]:
        n = string.count(letters[0])
        out = []
        for t in range(1, len(string) + 1):
            prefix = string[:t]
            if prefix[-1] == letters[0]:
                out.append({letters[0], letters[1]})
                continue
            block = letters.index(prefix[-1])
            done = prefix.count(prefix[-1]) == n
            last = block == len(letters) - 1
            out.append({END} if done and last else {letters[block + 1]} if done else {prefix[-1]})
        return out
    return sets


def _shuffle_sample(length: int, rng: random.Random) -> str | None:
    if length % 2:
        return None
    opened = {"(": 0, "[": 0}
    out = []
    for position in range(length):
        left = length - position
        moves = [c for c in ")]" if opened["(" if c == ")" else "["] > 0]
        if sum(opened.values()) + 1 <= left - 1:
            moves += ["(", "["]
        move = rng.choice(moves)
        if move in "([":
            opened[move] += 1
        else:
            opened["(" if move == ")" else "["] -= 1
        out.append(move)
    return "".join(out)


def _shuffle_next(string: str) -> list[set[str]]:
    opened = {"(": 0, "[": 0}
    sets = []
    for char in string:
        if char in "([":
            opened[char] += 1
        else:
            opened["(" if char == ")" else "["] -= 1
        sets.append({"(", "["} | ({")"} if opened["("] else set()) | ({"]"} if opened["["] else set())
                    | ({END} if not any(opened.values()) else set()))
    return sets


LANGUAGES = {
    "parity": Language("01", "01", _parity_sample, _parity_next, False),
    "aa": Language("a", "a", lambda length, rng: None if length % 2 else "a" * length, _repeat_next("aa"), True),
    "abab": Language("ab", "a", lambda length, rng: None if length % 4 else "ab" * (length // 2), _repeat_next("abab"), True),
    "anbn": Language("ab", "a", lambda n, rng: "a" * n + "b" * n, _counter_next("ab"), True),
    "anbncn": Language("abc", "a", lambda n, rng: "a" * n + "b" * n + "c" * n, _counter_next("abc"), True),
    "shuffle2": Language("()[]", "([", _shuffle_sample, _shuffle_next, False),
}


def target_word(valid: set[str], alphabet: str) -> str:
    """One class per set of valid next characters, e.g. {a, $} -> `<a$>`."""
    return "<" + "".join(c for c in alphabet + END if c in valid) + ">"


def example(string: str, language: str, marker: bool = False) -> tuple[str, str]:
    """(input characters, per-position target words) of one member string; with `marker`, the string
    follows the word `#language`, whose target is the set of characters a member starts with."""
    spec = LANGUAGES[language]
    sets = spec.next_sets(string)
    if marker:
        string, sets = [f"#{language}", *string], [set(spec.starts), *sets]
    return " ".join(string), " ".join(target_word(s, spec.alphabet) for s in sets)


def _sizes(spec: Language, low: int, high: int, field: str) -> list[int]:
    probe = random.Random(0)
    sizes = [size for size in range(low, high + 1) if spec.sample(size, probe) is not None]
    if not sizes:
        raise UserError(f"{field}=[{low}, {high}]: the language has no member of these lengths; widen the range")
    return sizes


def _check_range(field: str, value: Sequence[int]) -> tuple[int, int]:
    if not (isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) for v in value)
            and 1 <= value[0] <= value[1]):
        raise UserError(f"{field}={value!r}: must be [low, high], integers with 1 <= low <= high")
    return value[0], value[1]


def language_task(language: str, train_size: int, eval_size: int, train_lengths: tuple[int, int],
                  bin1_lengths: tuple[int, int], seed: int, marker: bool = False) -> Task:
    spec = LANGUAGES[language]
    train_sizes = _sizes(spec, *train_lengths, "task.train_lengths")
    bin1_sizes = _sizes(spec, *bin1_lengths, "task.bin1_lengths")
    rng = random.Random(f"{seed}:{language}")
    if spec.one_per_size:
        bin0 = [spec.sample(size, rng) for size in train_sizes]
        # An epoch of train_size strings, as for the other languages: every member, repeated in turn.
        train = [bin0[k % len(bin0)] for k in range(max(train_size, len(bin0)))]
        bin1 = [spec.sample(size, rng) for size in bin1_sizes]
    else:
        def draw(sizes: list[int], count: int, field: str) -> list[str]:
            what = f"strings of sizes {sizes[0]}..{sizes[-1]}"
            return draw_distinct_items(lambda: spec.sample(rng.choice(sizes), rng), count, field, what)

        both = draw(train_sizes, train_size + eval_size, "task.train_size + task.eval_size")
        train, bin0 = both[:train_size], both[train_size:]
        bin1 = draw(bin1_sizes, eval_size, "task.eval_size")
    encode = lambda strings: tuple(example(s, language, marker) for s in strings)  # noqa: E731
    return Task(language, encode(train), {"bin0": encode(bin0), "bin1": encode(bin1)})


def formal_tasks(
    language: str | Sequence[str] = "parity",
    name: str = "formal",
    train_size: int = 10_000,
    eval_size: int = 1000,
    train_lengths: Sequence[int] = (1, 50),
    bin1_lengths: Sequence[int] = (51, 100),
    repeats: int = 1,
    seed: int = 0,
    marker: bool = False,
) -> TaskSequence:
    """One task per language (a name or a list of names), evaluated on the splits bin0 and bin1.
    `marker`: every string starts with its language's word (`#parity`), so a sequence of languages
    whose strings share characters (a, b) is learnable by one model (see the module docstring)."""
    languages = [language] if isinstance(language, str) else list(language)
    unknown = [lang for lang in languages if lang not in LANGUAGES]
    if unknown or not languages:
        raise UserError(f"task.language={language!r}: give one of {', '.join(LANGUAGES)}, or a list of them")
    if len(set(languages)) != len(languages):
        raise UserError(f"task.language={languages}: a language may appear only once")
    for key, value in (("train_size", train_size), ("eval_size", eval_size), ("repeats", repeats)):
        if not isinstance(value, int) or value < 1:
            raise UserError(f"task.{key}={value!r}: must be an integer >= 1")
    train_range = _check_range("task.train_lengths", train_lengths)
    bin1_range = _check_range("task.bin1_lengths", bin1_lengths)
    if bin1_range[0] <= train_range[1]:
        raise UserError(f"task.bin1_lengths={list(bin1_lengths)}: must start above the training lengths "
                        f"(task.train_lengths={list(train_lengths)}), so that Bin1 holds longer strings")
    if not isinstance(marker, bool):
        raise UserError(f"task.marker={marker!r}: must be true or false")
    tasks = tuple(language_task(lang, train_size, eval_size, train_range, bin1_range, seed, marker) for lang in languages)
    return TaskSequence(name, tasks, repeats)
