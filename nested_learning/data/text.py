"""Real-text task sequences: domain-incremental language modelling and class-incremental classification.

Both read (text, label) records (data/text_sources.py: the offline BBC corpus, JSONL, CSV, a Hugging
Face dataset) and split each label's texts, after a shuffle seeded by (seed, label), into training
texts and `heldout_fraction` held-out texts (split `eval`). A subword tokenizer (data/subwords.py:
BPE trained on the training texts of every task, or bytes) turns texts into tokens, through a disk
cache shared by the jobs of a sweep.

`text_domains`: one task per label (domain), e.g. the five BBC categories. A domain's training texts,
each followed by <eos>, form one token stream cut into windows of `window` tokens, each with the
next `window` tokens as targets (explicit targets, so a window's last target is the first token of
the next window); the held-out texts likewise. Token accuracy is next-token accuracy; the loss
matrix gives perplexity (exp of the mean loss per token). `info` records, per domain, the unigram
baseline: the accuracy of always predicting the domain's most frequent training token, and the
perplexity of its add-one-smoothed unigram distribution, both on the held-out windows.

`text_classes`: classes split into tasks of `classes_per_task` (in the order of `classes`, by default
sorted; the last task takes what is left), at most `max_per_class` training and `max_eval_per_class`
held-out texts per class (the first of each shuffled side, taken before tokenising, so a corpus as
large as DBpedia's costs only what is kept). An example is the text's first `max_tokens` tokens, then
<eos>, whose target is the label word `<label>`; every other position has no target (<pad>), so
training fits the label alone and accuracy counts only label positions. Every model and strategy
runs unchanged: the label is just the next token. At evaluation the prediction is the argmax over
label words only, among
- `incremental=class` (class-incremental, NL §9.1's setting): the labels of every task trained so
  far. Before a task is trained its labels are not among them, so its accuracy is exactly 0 (and
  the initial accuracy b is 0 for every task).
- `incremental=task` (task-incremental): the evaluated task's own labels (the task is known).
The sequence's name carries the variant, so every table and summary says which one it shows. The
loss (and so perplexity) is the full softmax's in both.
"""
from __future__ import annotations

import math
import random
from collections import Counter
from typing import Sequence

from nested_learning.data.subwords import TOKENIZER_FILE, Cache, build_tokenizer, encode, fingerprint
from nested_learning.data.tasks import EOS, EVAL_SPLIT, PAD, Task, TaskSequence
from nested_learning.data.text_sources import Record, load_records
from nested_learning.errors import UserError

INCREMENTAL = ("class", "task")


def group_texts(records: Sequence[Record], chosen: Sequence[str] | None, field: str) -> dict[str, list[str]]:
    """label -> its distinct texts, in record order, for the chosen labels (default: every label, sorted).
    Empty texts and repeats of a text within a label are dropped (BBC News holds some articles twice:
    one copy held out and one trained on would make held-out accuracy partly memorisation); a chosen
    label with no text left is an error."""
    by_label: dict[str, dict[str, None]] = {}
    for text, label in records:
        by_label.setdefault(label, {})
        if text:
            by_label[label].setdefault(text)
    if chosen is None:
        chosen = sorted(by_label)
    chosen = [str(c) for c in chosen]
    if not chosen or len(set(chosen)) != len(chosen):
        raise UserError(f"{field}={chosen!r}: give distinct labels, or null for all")
    unknown = [c for c in chosen if c not in by_label]
    if unknown:
        have = sorted(by_label)
        shown = ", ".join(have[:30]) + (f" ... ({len(have)} in all)" if len(have) > 30 else "")
        raise UserError(f"{field}: unknown label {', '.join(map(repr, unknown))}; the data has {shown}")
    empty = [c for c in chosen if not by_label[c]]
    if empty:
        raise UserError(f"{field}: {', '.join(map(repr, empty))} has no text (empty domain); drop it from {field}")
    return {c: list(by_label[c]) for c in chosen}


def split_texts(texts: list[str], label: str, heldout_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(train, held-out) texts of one label, after a shuffle seeded by (seed, label)."""
    if not 0.0 < heldout_fraction < 1.0:
        raise UserError(f"task.heldout_fraction={heldout_fraction}: must lie in (0, 1)")
    shuffled = list(texts)
    random.Random(f"{seed}:{label}").shuffle(shuffled)
    held = round(heldout_fraction * len(shuffled))
    if not 0 < held < len(shuffled):
        raise UserError(f"{label!r} has {len(shuffled)} text(s): task.heldout_fraction={heldout_fraction} holds out {held} "
                        f"and trains on {len(shuffled) - held}; each side needs at least one (give it more examples, "
                        "change task.heldout_fraction, or leave it out)")
    return shuffled[held:], shuffled[:held]


def _check_int(field: str, value: object, low: int, allow_none: bool = False) -> None:
    if allow_none and value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise UserError(f"{field}={value!r}: must be an integer >= {low}{' or null' if allow_none else ''}")


def prepare(records: Sequence[Record], chosen: Sequence[str] | None, field: str, heldout_fraction: float, seed: int,
            tokenizer: str, vocab_size: int, cache_dir: str | None, tokenizer_file: str | None,
            max_train: int | None = None, max_heldout: int | None = None):
    """Per label (train token lists, held-out token lists), the tokenizer file's text, and the tokenizer's token set.
    `max_train` / `max_heldout` keep each label's first texts of either side (a seeded sample: they are
    shuffled), before anything is tokenised, so a large corpus costs only what is kept (BPE trains on it)."""
    groups = group_texts(records, chosen, field)
    splits = {}
    for label, texts in groups.items():
        train, held = split_texts(texts, label, heldout_fraction, seed)
        splits[label] = (train[:max_train], held[:max_heldout])
    cache = Cache(cache_dir)
    train_texts = [text for train, _ in splits.values() for text in train]
    model = build_tokenizer(tokenizer, vocab_size, train_texts, cache, tokenizer_file)
    every = [text for train, held in splits.values() for text in train + held]
    tokens = iter(encode(model, every, cache))
    tokenised = {label: ([next(tokens) for _ in train], [next(tokens) for _ in held]) for label, (train, held) in splits.items()}
    vocabulary = set(model.get_vocab())
    clash = vocabulary & {PAD, EOS}
    if clash:
        raise UserError(f"the tokenizer has the token(s) {sorted(clash)}, which this framework reserves; "
                        "give another task.tokenizer_file or task.vocab_size")
    return tokenised, model.to_str(), vocabulary


def windows(documents: list[list[str]], window: int, limit: int | None) -> tuple[tuple[str, str], ...]:
    """(inputs, targets) windows over the documents' stream (each document then <eos>): `window`
    tokens each, targets the next `window` tokens; the last window may be shorter."""
    stream = [token for document in documents for token in document + [EOS]]
    out = []
    for start in range(0, len(stream) - 1, window):
        chunk = stream[start : start + window + 1]
        out.append((" ".join(chunk[:-1]), " ".join(chunk[1:])))
        if limit is not None and len(out) == limit:
            break
    return tuple(out)


def unigram_baseline(train: Sequence[tuple[str, str]], held: Sequence[tuple[str, str]], vocab_size: int) -> tuple[float, float]:
    """(accuracy of always predicting the most frequent training target, perplexity of the add-one
    smoothed unigram distribution over vocab_size tokens), on the held-out targets."""
    counts = Counter(token for _, targets in train for token in targets.split())
    total = sum(counts.values())
    held_targets = [token for _, targets in held for token in targets.split()]
    top = counts.most_common(1)[0][0]
    accuracy = sum(token == top for token in held_targets) / len(held_targets)
    nll = -sum(math.log((counts[token] + 1) / (total + vocab_size)) for token in held_targets) / len(held_targets)
    return accuracy, math.exp(nll)


def _tokenizer_info(kind: str, tokenizer_file: str | None, tokenizer_json: str, vocabulary: set[str]) -> dict:
    return {"tokenizer": kind, "tokenizer_file": tokenizer_file, "tokenizer_vocab_size": len(vocabulary),
            "tokenizer_sha256": fingerprint(tokenizer_json)}


def text_domains(
    name: str = "text_domains",
    source: str = "bbc",
    path: str | None = None,
    text_column: str = "text",
    label_column: str = "label",
    dataset: str | None = None,
    config: str | None = None,
    split: str = "train",
    domains: Sequence[str] | None = None,
    heldout_fraction: float = 0.1,
    tokenizer: str = "bpe",
    vocab_size: int = 2000,
    window: int = 64,
    max_per_domain: int | None = None,
    max_eval_per_domain: int | None = None,
    max_windows: int | None = None,
    max_eval_windows: int | None = None,
    repeats: int = 1,
    seed: int = 0,
    cache_dir: str | None = None,
    tokenizer_file: str | None = None,
) -> TaskSequence:
    """One language-modelling task per domain (label), in the order of `domains` (default: sorted)."""
    _check_int("task.window", window, 1)
    _check_int("task.max_per_domain", max_per_domain, 1, allow_none=True)
    _check_int("task.max_eval_per_domain", max_eval_per_domain, 1, allow_none=True)
    _check_int("task.max_windows", max_windows, 1, allow_none=True)
    _check_int("task.max_eval_windows", max_eval_windows, 1, allow_none=True)
    _check_int("task.repeats", repeats, 1)
    records = load_records(source, path, text_column, label_column, dataset, config, split)
    tokenised, tokenizer_json, vocabulary = prepare(records, domains, "task.domains", heldout_fraction, seed, tokenizer,
                                                    vocab_size, cache_dir, tokenizer_file, max_per_domain, max_eval_per_domain)
    tasks, info = [], {**_tokenizer_info(tokenizer, tokenizer_file, tokenizer_json, vocabulary), "window": window,
                       "documents": {}, "windows": {}, "unigram_accuracy": [], "unigram_perplexity": []}
    for domain, (train_docs, held_docs) in tokenised.items():
        train, held = windows(train_docs, window, max_windows), windows(held_docs, window, max_eval_windows)
        tasks.append(Task(domain, train, {EVAL_SPLIT: held}))
        accuracy, perplexity = unigram_baseline(train, held, len(vocabulary) + 1)  # + <eos>
        info["documents"][domain] = [len(train_docs), len(held_docs)]
        info["windows"][domain] = [len(train), len(held)]
        info["unigram_accuracy"].append(accuracy)
        info["unigram_perplexity"].append(perplexity)
    return TaskSequence(name, tuple(tasks), repeats, files={TOKENIZER_FILE: tokenizer_json}, info=info)


def majority_share(examples: Sequence[tuple[str, str]]) -> float:
    """The accuracy of always answering the most frequent label of these examples (each target's last token): the
    baseline a class-incremental task must beat right after training it, which models were seen to sit at."""
    counts = Counter(targets.rsplit(" ", 1)[-1] for _, targets in examples)
    return max(counts.values()) / len(examples)


def label_word(label: str) -> str:
    return "<" + "_".join(label.split()) + ">"


def _task_name(classes: Sequence[str]) -> str:
    joined = "+".join(classes)
    return joined if len(joined) <= 32 else f"{classes[0]}..{classes[-1]}({len(classes)})"


def text_classes(
    name: str = "text_classes",
    source: str = "bbc",
    path: str | None = None,
    text_column: str = "text",
    label_column: str = "label",
    dataset: str | None = None,
    config: str | None = None,
    split: str = "train",
    classes: Sequence[str] | None = None,
    classes_per_task: int = 2,
    incremental: str = "class",
    heldout_fraction: float = 0.2,
    tokenizer: str = "bpe",
    vocab_size: int = 2000,
    max_tokens: int = 128,
    max_per_class: int | None = None,
    max_eval_per_class: int | None = None,
    repeats: int = 1,
    seed: int = 0,
    cache_dir: str | None = None,
    tokenizer_file: str | None = None,
) -> TaskSequence:
    """Classes in tasks of `classes_per_task`; the label is the token after the text (module docstring)."""
    if incremental not in INCREMENTAL:
        raise UserError(f"task.incremental={incremental!r}: give class (labels of every task so far) or task (the task's own)")
    _check_int("task.classes_per_task", classes_per_task, 1)
    _check_int("task.max_tokens", max_tokens, 1)
    _check_int("task.max_per_class", max_per_class, 1, allow_none=True)
    _check_int("task.max_eval_per_class", max_eval_per_class, 1, allow_none=True)
    _check_int("task.repeats", repeats, 1)
    records = load_records(source, path, text_column, label_column, dataset, config, split)
    tokenised, tokenizer_json, vocabulary = prepare(records, classes, "task.classes", heldout_fraction, seed, tokenizer,
                                                    vocab_size, cache_dir, tokenizer_file, max_per_class, max_eval_per_class)
    words = {label: label_word(label) for label in tokenised}
    if len(set(words.values())) != len(words):
        raise UserError(f"task.classes: labels {sorted(tokenised)} give clashing label words once spaces become _")
    clash = vocabulary & set(words.values())
    if clash:
        raise UserError(f"label word(s) {sorted(clash)} are also text tokens of the tokenizer; rename those labels")

    def example(tokens: list[str], label: str) -> tuple[str, str]:
        kept = tokens[:max_tokens] + [EOS]
        return " ".join(kept), " ".join([PAD] * (len(kept) - 1) + [words[label]])

    order = list(tokenised)
    tasks = []
    for start in range(0, len(order), classes_per_task):
        chunk = order[start : start + classes_per_task]
        train = tuple(example(t, c) for c in chunk for t in tokenised[c][0])
        # Distinct texts can share their first max_tokens tokens: such a held-out example is a training one.
        seen = set(train)
        held = tuple(e for e in (example(t, c) for c in chunk for t in tokenised[c][1]) if e not in seen)
        if not held:
            raise UserError(f"task.max_tokens={max_tokens}: every held-out text of {'+'.join(chunk)} starts with the "
                            "same tokens as a training text; keep more tokens (raise task.max_tokens)")
        tasks.append(Task(_task_name(chunk), train, {EVAL_SPLIT: held}, labels=tuple(words[c] for c in chunk)))
    info = {**_tokenizer_info(tokenizer, tokenizer_file, tokenizer_json, vocabulary), "incremental": incremental,
            "classes": {task.name: order[k * classes_per_task : (k + 1) * classes_per_task] for k, task in enumerate(tasks)},
            "examples": {task.name: [len(task.train), len(task.splits[EVAL_SPLIT])] for task in tasks},
            "majority_accuracy": [majority_share(task.splits[EVAL_SPLIT]) for task in tasks]}
    return TaskSequence(f"{name} ({incremental}-incremental)", tuple(tasks), repeats, label_scope=incremental,
                        files={TOKENIZER_FILE: tokenizer_json}, info=info)
