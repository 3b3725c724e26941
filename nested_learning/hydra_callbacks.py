"""Hydra callbacks: what happens around a whole multirun."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


class MultirunSummary(Callback):
    """After every multirun, compare its jobs (the seed summary for one seed, mean and CI for several)."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from nested_learning.errors import UserError
        from nested_learning.report import make_console, print_comparison
        from nested_learning.summary import load_sweep, write_summary

        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            sweep = load_sweep(sweep_dir)
        except UserError as err:  # e.g. every job failed before writing anything
            print(f"no summary: {err}")
            return
        console = make_console()
        console.rule(f"[bold]Summary of {sweep_dir}")
        print_comparison(sweep.runs, sweep.failures, console)
        reference = config.get("summary", {}).get("reference")
        written = write_summary(sweep_dir, sweep, reference=reference)
        console.print(f"[dim]wrote {', '.join(p.name for p in written)} in {sweep_dir}[/]")
