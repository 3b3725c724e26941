"""The `results.json` file every run writes: atomic writes, validated reads."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from nested_learning.errors import UserError

RESULTS_FILE = "results.json"


def write_results(run_dir: Path, record: dict[str, Any], durable: bool = True) -> Path:
    """Write atomically: a reader (or a killed run) sees the old file or the new one, never half of one.

    `durable` also flushes to disk before the rename, so the file survives a machine crash; it costs
    ten times the write itself, so progress-only updates skip it (a killed process loses nothing).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".results.", suffix=".tmp", dir=run_dir)
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes it owner-only; others on a cluster must read results
    with os.fdopen(fd, "w") as handle:
        # Compact: an indent switches json to its pure-Python encoder, 3x slower, and this file is
        # rewritten after every epoch. Pretty-print with `python -m json.tool results.json`.
        json.dump(record, handle, default=str)
        if durable:
            handle.flush()
            os.fsync(handle.fileno())
    target = run_dir / RESULTS_FILE
    os.replace(tmp, target)
    return target


def load_results(run_dir: str | Path) -> dict[str, Any]:
    run_dir = Path(run_dir)
    path = run_dir / RESULTS_FILE
    if not path.is_file():
        raise UserError(f"{run_dir}: not a run directory (no {RESULTS_FILE}); give a directory written by nested_learning.train")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None
