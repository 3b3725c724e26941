"""Tasks from the user's own text files.

A folder holds one file per task, `<task>.txt`, one sentence per line (blank lines skipped); tasks
run in order of file name, so prefix names with numbers to order them (`1_bus.txt`, `2_boat.txt`).
An optional `<task>.eval.txt` beside a task file holds held-out evaluation sentences; a task without
one is evaluated on its training sentences. Files must be UTF-8 text. Hidden files are ignored; any
other entry stops the run with a one-line error naming it, as do a missing folder, an empty file and
a file that is not text.
"""
from __future__ import annotations

from pathlib import Path

from nested_learning.data.tasks import TaskSequence, from_sentences
from nested_learning.errors import UserError

TASK_SUFFIX, EVAL_SUFFIX = ".txt", ".eval.txt"
# Used when task.path is null, so `task=folder` runs out of the box and shows the layout.
EXAMPLE = Path(__file__).parent / "example_tasks"


def read_sentences(path: Path) -> list[str]:
    """The non-blank lines of a UTF-8 text file."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise UserError(f"{path}: cannot read it ({err.strerror})") from None
    if b"\0" in data:
        raise UserError(f"{path}: not a text file (it contains NUL bytes); give UTF-8 text, one sentence per line")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not UTF-8 text (undecodable byte at offset {err.start}); save it as UTF-8") from None
    sentences = [line.strip() for line in text.splitlines() if line.strip()]
    if not sentences:
        raise UserError(f"{path}: empty file; give at least one sentence, one per line")
    return sentences


def folder_tasks(path: str | None = None, name: str = "folder", repeats: int = 8) -> TaskSequence:
    folder = Path(path).expanduser() if path is not None else EXAMPLE
    if not folder.is_dir():
        raise UserError(f"task.path={folder}: no such folder; give a folder with one <task>{TASK_SUFFIX} file per task")
    entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    for entry in entries:
        if not (entry.is_file() and entry.name.endswith(TASK_SUFFIX)):
            raise UserError(f"{entry}: not a <task>{TASK_SUFFIX} or <task>{EVAL_SUFFIX} file; the folder may hold only those")
    task_files = [p for p in entries if not p.name.endswith(EVAL_SUFFIX)]
    if not task_files:
        raise UserError(f"task.path={folder}: no <task>{TASK_SUFFIX} files in it; give one file per task")
    stems = {p.name[: -len(TASK_SUFFIX)] for p in task_files}
    for held in (p for p in entries if p.name.endswith(EVAL_SUFFIX)):
        if held.name[: -len(EVAL_SUFFIX)] not in stems:
            raise UserError(f"{held}: held-out file without a task file {held.name[: -len(EVAL_SUFFIX)]}{TASK_SUFFIX}")
    tasks, heldout = {}, {}
    for task_file in task_files:
        task = task_file.name[: -len(TASK_SUFFIX)]
        tasks[task] = read_sentences(task_file)
        held = folder / f"{task}{EVAL_SUFFIX}"
        if held.is_file():
            heldout[task] = read_sentences(held)
    trained = {" ".join(s.split()) for sentences in tasks.values() for s in sentences}
    for task, sentences in heldout.items():
        leaked = next((s for s in sentences if " ".join(s.split()) in trained), None)
        if leaked is not None:
            raise UserError(f"{folder / (task + EVAL_SUFFIX)}: {leaked!r} is also a training sentence; held-out sentences must be unseen")
    return from_sentences(name, tasks, repeats, heldout)
