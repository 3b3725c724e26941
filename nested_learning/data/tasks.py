"""Task sequences: named tasks of sentences, with training and evaluation splits.

A task's evaluation sentences are either its own training sentences (the seed's protocol, which
measures memorisation) or held-out sentences; `Task.heldout` says which, and results record it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from nested_learning.errors import UserError


@dataclass(frozen=True)
class Task:
    name: str
    train: tuple[str, ...]  # unique training sentences (repetition is the data module's job)
    eval: tuple[str, ...]

    @property
    def heldout(self) -> bool:
        return not set(self.train) & set(self.eval)


@dataclass(frozen=True)
class TaskSequence:
    name: str
    tasks: tuple[Task, ...]
    repeats: int  # each training sentence appears this many times per epoch

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.tasks]


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
        built.append(Task(str(task_name), train, held))
    return TaskSequence(name, tuple(built), int(repeats))
