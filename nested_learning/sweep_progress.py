"""Which job of a sweep is running: one line per job, "job 3/81: <job directory>"."""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf


def sweep_size(hydra_cfg: DictConfig) -> int | None:
    """How many jobs the sweep launches: Optuna's trial count, or the size of the basic sweeper's grid.

    The grid is rebuilt from the sweep's saved multirun.yaml (its sweeper params and command-line
    sweeps) exactly as Hydra's basic sweeper builds it; None when that cannot be known.
    """
    if "n_trials" in hydra_cfg.sweeper:
        return int(hydra_cfg.sweeper.n_trials)
    saved_path = Path(hydra_cfg.sweep.dir) / "multirun.yaml"
    if not saved_path.is_file():
        return None
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    saved = OmegaConf.load(saved_path).hydra
    arguments = [f"{k}={v}" for k, v in (saved.sweeper.get("params") or {}).items()] + list(saved.overrides.task)
    try:
        overrides = OverridesParser.create().parse_overrides(arguments)
        return sum(len(batch) for batch in BasicSweeper.split_arguments(overrides, None))
    except Exception:  # e.g. a glob sweep, which needs Hydra's config loader: show the job number alone
        return None


def announce_job(hydra_cfg: DictConfig) -> None:
    total = sweep_size(hydra_cfg)
    number = int(hydra_cfg.job.num) + 1
    print(f"job {number}/{total}: {Path(hydra_cfg.runtime.output_dir).name}" if total else f"job {number}: {Path(hydra_cfg.runtime.output_dir).name}", flush=True)
