"""Hydra callbacks: what happens around a whole multirun."""
from __future__ import annotations

import logging
import re
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf


class OnceEach(logging.Filter):
    """Passes a message the first time only; submitit's "Call #3 - " counter does not make it new."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        text = re.sub(r"^Call #\d+ - ", "", record.getMessage())
        new = text not in self.seen
        self.seen.add(text)
        return new


def one_line_per_submitit_warning() -> None:
    """submitit's logger prints each message to stderr, again to stdout, and a third time through Hydra's
    root handler; and it repeats a failing status poll's warning at every poll. Keep its stderr handler, once per message."""
    import submitit  # noqa: F401  (its import configures its logger: change it after)

    logger = logging.getLogger("submitit")
    logger.handlers = [h for h in logger.handlers if h.name == "submitit_err"]
    logger.propagate = False
    logger.addFilter(OnceEach())


class MultirunSummary(Callback):
    """After every multirun, compare its jobs (the seed summary for one seed, mean and CI for several).

    The process then exits with status 1 if any job failed or did not finish, so a script can tell;
    every job still runs and the summary is still written.
    """

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from nested_learning.cli.config_checks import check_jobs, validate
        from nested_learning.errors import UserError
        from nested_learning.cli.sweep_progress import grid_jobs

        jobs = None
        if config.hydra.sweeper._target_.endswith(".BasicSweeper"):
            jobs = grid_jobs(config.hydra.sweeper.get("params"), list(config.hydra.overrides.task))
        try:
            if jobs:
                check_jobs(config, jobs)
            else:  # a search (Optuna) proposes its jobs as it goes: what they share is checked now
                validate(config)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(2)  # Hydra turns a callback's exceptions into warnings and goes on
        if "submitit" in config.hydra.launcher._target_:
            one_line_per_submitit_warning()
        # What `scripts/resume.py SWEEP_DIR` relaunches from. Hydra's basic sweeper writes the same
        # file; the Optuna sweeper does not.
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(config, sweep_dir / "multirun.yaml")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from rich.markup import escape

        from nested_learning.errors import UserError
        from nested_learning.analysis.report import make_console, print_comparison
        from nested_learning.analysis.summary import load_sweep, write_summary

        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            sweep = load_sweep(sweep_dir)
        except UserError as err:  # e.g. every job failed before writing anything
            print(f"no summary: {err}")
            raise SystemExit(1)
        console = make_console()
        console.rule(f"[bold]Summary of {escape(str(sweep_dir))}")
        print_comparison(sweep.runs, sweep.failures, console)
        reference = config.get("summary", {}).get("reference")
        written = write_summary(sweep_dir, sweep, reference=reference)
        console.print(f"[dim]wrote {', '.join(p.name for p in written)} in {escape(str(sweep_dir))}[/]")
        if sweep.failures:
            total = len(sweep.failures) + len(sweep.runs)
            console.print(f"{len(sweep.failures)} of {total} jobs failed or did not finish: exit status 1")
            raise SystemExit(1)
