"""Hydra callbacks: what happens around a whole multirun."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf


class MultirunSummary(Callback):
    """After every multirun, compare its jobs (the seed summary for one seed, mean and CI for several).

    The process then exits with status 1 if any job failed or did not finish, so a script can tell;
    every job still runs and the summary is still written.
    """

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # What `scripts/resume.py SWEEP_DIR` relaunches from. Hydra's basic sweeper writes the same
        # file; the Optuna sweeper does not.
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(config, sweep_dir / "multirun.yaml")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from rich.markup import escape

        from nested_learning.errors import UserError
        from nested_learning.report import make_console, print_comparison
        from nested_learning.summary import load_sweep, write_summary

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
