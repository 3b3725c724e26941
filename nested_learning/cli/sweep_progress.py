"""A sweep's jobs: the basic sweeper's grid, and a line as each starts, "job 3/81: <job directory>"."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf


def grid_jobs(sweeper_params: Any, task_overrides: list[str]) -> list[list[str]] | None:
    """Every job of a basic sweeper's grid, each as its list of overrides, built exactly as Hydra's
    BasicSweeper builds them from its params and the command line's overrides; None when that cannot
    be done (a glob sweep, `model=glob(*)`, outside a running Hydra app, whose config loader lists the options)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    arguments = [f"{k}={v}" for k, v in (sweeper_params or {}).items()] + list(task_overrides)
    app = GlobalHydra.instance()
    try:
        parser = OverridesParser.create(config_loader=app.config_loader() if app.is_initialized() else None)
        overrides = parser.parse_overrides(arguments)
        return [job for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]
    except Exception:
        return None


def sweep_size(hydra_cfg: DictConfig) -> int | None:
    """How many jobs the sweep launches: Optuna's trial count, or the size of the basic sweeper's grid.

    The grid is rebuilt from the sweep's saved multirun.yaml (its sweeper params and command-line
    sweeps); None when that cannot be known.
    """
    if "n_trials" in hydra_cfg.sweeper:
        return int(hydra_cfg.sweeper.n_trials)
    saved_path = Path(hydra_cfg.sweep.dir) / "multirun.yaml"
    if not saved_path.is_file():
        return None
    saved = OmegaConf.load(saved_path).hydra
    jobs = grid_jobs(saved.sweeper.get("params"), list(saved.overrides.task))
    return None if jobs is None else len(jobs)


def announce_job(hydra_cfg: DictConfig) -> None:
    total = sweep_size(hydra_cfg)
    number = int(hydra_cfg.job.num) + 1
    print(f"job {number}/{total}: {Path(hydra_cfg.runtime.output_dir).name}" if total else f"job {number}: {Path(hydra_cfg.runtime.output_dir).name}", flush=True)
