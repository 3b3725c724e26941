"""The `results.json` file every run writes: atomic writes, validated reads, and which accuracy a record holds."""
from __future__ import annotations

import gzip
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

from nested_learning.errors import UserError
from nested_learning.analysis.metrics import record_metrics

RESULTS_FILE = "results.json"
# A run's results.json as archived with the docs (scripts/archive_results.py): read like the file itself.
ARCHIVED_FILE = RESULTS_FILE + ".gz"


def write_results(run_dir: Path, record: dict[str, Any]) -> Path:
    """Write atomically: a reader (or a killed run) sees the old file or the new one, never half of one.

    Not forced to disk (no fsync): a killed process (SIGKILL, out of memory, preemption) loses nothing,
    since the kernel holds what was written. Only the machine itself failing within the kernel's
    writeback delay (seconds) can lose the latest version, as it can a checkpoint; docs/checkpoints.md
    says what a resume then finds. A flush cost more than the write itself.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".results.", suffix=".tmp", dir=run_dir)
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes it owner-only; others on a cluster must read results
    with os.fdopen(fd, "w") as handle:
        # Compact and in one string: an indent, or json.dump's chunked writing, switches json to its
        # pure-Python encoder, 3x slower, and this file is rewritten after every epoch.
        # Pretty-print with `python -m json.tool results.json`.
        handle.write(json.dumps(record, default=str))
    target = run_dir / RESULTS_FILE
    os.replace(tmp, target)
    return target


def results_path(run_dir: str | Path) -> Path | None:
    """The run's results.json, or its archived copy results.json.gz; None when it has neither."""
    for name in (RESULTS_FILE, ARCHIVED_FILE):
        path = Path(run_dir) / name
        if path.is_file():
            return path
    return None


def load_results(run_dir: str | Path) -> dict[str, Any]:
    run_dir = Path(run_dir)
    path = results_path(run_dir)
    if path is None:
        raise UserError(f"{run_dir}: not a run directory (no {RESULTS_FILE}); give a directory written by nested_learning.train")
    try:
        text = gzip.decompress(path.read_bytes()).decode() if path.name == ARCHIVED_FILE else path.read_text()
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None


def with_accuracy(record: dict[str, Any], split: str | None = None, metric: str | None = None) -> dict[str, Any]:
    """The record as if `eval.split=split eval.metric=metric` had been chosen (None: the run's own).

    Every split is measured with every accuracy during the run (`accuracy_matrices[split][metric]`),
    so another choice needs no rerun: the matrices, initial values and the metrics derived from them
    are swapped in. The learning curves were logged on the run's own choice only and are left out.
    """
    split, metric = split or record.get("eval_split"), metric or record.get("eval_metric")
    matrices = record.get("accuracy_matrices") or {}
    if split not in matrices:
        raise UserError(f"split {split!r}: not measured by this run; its splits: {', '.join(matrices) or 'none recorded'}")
    if metric not in matrices[split]:
        raise UserError(f"accuracy {metric!r}: not measured by this run; its accuracies: {', '.join(matrices[split])}")
    view = {k: v for k, v in record.items() if k != "curves"}
    view.update(
        eval_split=split, eval_metric=metric,
        accuracy_matrix=matrices[split][metric], initial_accuracy=record["initial_accuracies"][split][metric],
        loss_matrix=record["loss_matrices"][split], initial_loss=record["initial_losses"][split],
    )
    view.update(record_metrics(view["accuracy_matrix"], view["initial_accuracy"]))
    return view


ACCURACY_LABELS = {"token": "next-token accuracy", "sequence": "sequence accuracy (every position right)"}


def accuracy_shown(runs: Sequence[dict[str, Any]]) -> str:
    """Which accuracy the runs' matrices and metrics hold: eval.metric on eval.split (mixed ones listed),
    with a classification sequence's label scope."""
    kinds = sorted({(r.get("eval_metric", "token"), r.get("eval_split", "eval"), scope_label(r)) for r in runs})
    return "; ".join(f"{ACCURACY_LABELS[metric]}{scope} on split {split}" for metric, split, scope in kinds)


SCOPE_LABELS = {"class": " at label positions, argmax over the labels of every task trained so far (class-incremental)",
                "task": " at label positions, argmax over the evaluated task's labels (task-incremental)"}


def scope_label(result: dict[str, Any]) -> str:
    """How a classification sequence's accuracy chooses among labels (data/text.py); nothing for other tasks."""
    return SCOPE_LABELS.get(result.get("label_scope"), "")
