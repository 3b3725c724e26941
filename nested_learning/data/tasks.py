"""Task sequences: named tasks of examples, with training data and named evaluation splits.

An example is a sentence, whose targets are its next words (then <eos>), or a pair (input words,
target words) with one target per input word (e.g. the formal languages' sets of valid next
characters). Every task of a sequence has the same evaluation splits, in the same order: sentence
tasks one, `eval`; the formal languages `bin0` and `bin1`. A task's evaluation sentences are either
its own training sentences (the seed's protocol, which measures memorisation) or held-out ones;
`Task.heldout` says which, and results record it.

Classification tasks (data/text.py) name their label words (`Task.labels`); the sequence's
`label_scope` says which of them an evaluation may predict (see `TaskSequence.allowed_labels`).
A sequence may also carry files its runs keep (a trained tokenizer) and facts about its data
(`info`, e.g. a unigram baseline), which results.json records.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence, Union

from nested_learning.errors import UserError


Example = Union[str, tuple[str, str]]  # a sentence, or (input words, target words): one target per input word
EVAL_SPLIT = "eval"  # the one evaluation split of a sentence task
# Reserved words (ids 0 and 1 in data/vocab.py): here, so that tasks name them without importing torch.
PAD, EOS = "<pad>", "<eos>"
LABEL_SCOPES = (None, "class", "task")


def example_words(example: Example) -> tuple[list[str], list[str] | None]:
    """(input words, explicit target words, or None for next-word targets)."""
    if isinstance(example, str):
        return example.split(), None
    inputs, targets = example
    return inputs.split(), targets.split()


@dataclass(frozen=True)
class Task:
    name: str
    train: tuple[Example, ...]  # unique training examples (repetition is the data module's job)
    splits: Mapping[str, tuple[Example, ...]]  # named evaluation splits, in order
    labels: tuple[str, ...] = ()  # a classification task's label words (explicit targets), else none

    @property
    def heldout(self) -> bool:
        return not any(set(self.train) & set(split) for split in self.splits.values())


@dataclass(frozen=True)
class TaskSequence:
    name: str
    tasks: tuple[Task, ...]
    repeats: int  # each training sentence appears this many times per epoch
    # Which label words an evaluation may predict: None any token (argmax over the vocabulary);
    # "class" the labels of every task trained so far (class-incremental); "task" the evaluated
    # task's own labels (task-incremental).
    label_scope: str | None = None
    files: Mapping[str, str] = field(default_factory=dict)  # file name -> text, kept in every run directory
    info: Mapping[str, Any] = field(default_factory=dict)  # facts about the data, recorded in results.json

    def __post_init__(self):
        first = list(self.tasks[0].splits)
        for task in self.tasks:
            if list(task.splits) != first or not all(task.splits.values()):
                raise UserError(f"task {task.name!r}: evaluation splits {list(task.splits)} must be non-empty and "
                                f"the same as every task's ({first})")
        if self.label_scope not in LABEL_SCOPES:
            raise UserError(f"label scope {self.label_scope!r}: give one of {', '.join(map(str, LABEL_SCOPES))}")

    def allowed_labels(self, task: int, trained: int) -> list[str] | None:
        """The label words an evaluation of task `task` may predict after training tasks 0..trained
        (-1: none yet), or None: any token. Class-incremental: a task not yet trained has no label
        among them, so nothing of it can count as right before its labels appear."""
        if self.label_scope is None:
            return None
        shown = self.tasks[: trained + 1] if self.label_scope == "class" else [self.tasks[task]]
        return [label for t in shown for label in t.labels]

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.tasks]

    @property
    def split_names(self) -> list[str]:
        return list(self.tasks[0].splits)


def _checked_sentences(field: str, sentences: Sequence[str] | None) -> tuple[str, ...]:
    if not sentences:
        raise UserError(f"{field}: empty task; give at least one sentence")
    checked = []
    for i, sentence in enumerate(sentences):
        if not isinstance(sentence, str) or not sentence.split():
            raise UserError(f"{field}[{i}]: empty sentence {sentence!r}; every sentence needs at least one word")
        checked.append(" ".join(sentence.split()))
    return tuple(checked)


def from_sentences(
    name: str,
    tasks: Mapping[str, Sequence[str]],
    repeats: int = 1,
    eval: Mapping[str, Sequence[str]] | None = None,
) -> TaskSequence:
    """Build a task sequence from literal sentences; tasks keep the mapping's order.

    Without `eval`, every task is evaluated on its own training sentences.
    """
    if not tasks:
        raise UserError(f"task.tasks: task sequence {name!r} has no tasks; give at least one")
    if repeats < 1:
        raise UserError(f"task.repeats={repeats}: must be an integer >= 1")
    eval = eval or {}
    unknown = set(eval) - set(tasks)
    if unknown:
        raise UserError(f"task.eval: {sorted(unknown)} are not tasks; tasks are {list(tasks)}")
    built = []
    for task_name, sentences in tasks.items():
        train = _checked_sentences(f"task.tasks.{task_name}", sentences)
        held = _checked_sentences(f"task.eval.{task_name}", eval[task_name]) if task_name in eval else train
        built.append(Task(str(task_name), train, {EVAL_SPLIT: held}))
    return TaskSequence(name, tuple(built), int(repeats))
