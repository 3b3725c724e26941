"""Re-run a finished run from its saved config and check that it reproduces the same matrix.

    python scripts/rerun.py RUN_DIR [key=value ...]

RUN_DIR is any directory written by `nested_learning.train`, a single run or one job of a multirun.
The new run goes to RUN_DIR/reruns/<time>; on the same machine, with no overrides, its accuracy
and loss matrices must equal the saved ones exactly.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from omegaconf import OmegaConf

from nested_learning.errors import UserError
from nested_learning.cli.overrides import layered
from nested_learning.analysis.results import RESULTS_FILE, load_results


def saved_config_dir(run_dir: Path) -> Path:
    config = run_dir / ".hydra" / "config.yaml"
    if not config.is_file():
        raise UserError(f"{run_dir}: not a run directory (no .hydra/config.yaml); give a directory written by nested_learning.train")
    return config.parent


def replayed_run(config_sources: Sequence[Any]) -> Path | None:
    """The run directory whose saved config this process replays (a rerun or a resume), or None.

    config_sources: Hydra's runtime.config_sources; the "main" one is where --config-path pointed.
    """
    for source in config_sources:
        config_dir = Path(source.path)
        if source.provider == "main" and config_dir.name == ".hydra" and (config_dir.parent / RESULTS_FILE).is_file():
            return config_dir.parent
    return None


def replayed_overrides(config_sources: Sequence[Any], own: list[str]) -> list[str]:
    """The overrides a run records: its own, or, for a run replayed from a saved config (a rerun or
    a resume), those of the run it replays with the keys it sets itself replaced, so that a summary
    labels and groups it with that run (a rerun would otherwise record none: its config file holds them)."""
    replayed = replayed_run(config_sources)
    return own if replayed is None else layered(load_results(replayed).get("overrides", []), own)


# Directories reach Hydra through the environment, never through its override grammar: job
# directories are named after their overrides ("0_model=hope,seed=1"), and `=`, `,`, quotes and
# brackets in an override's value need quoting that Hydra's grammar makes fragile.
RUN_DIR_ENV = "NESTED_LEARNING_RUN_DIR"
MATRICES = ("accuracy_matrix", "loss_matrix")  # what a re-run must reproduce exactly
SWEEP_DIR_ENV = "NESTED_LEARNING_SWEEP_DIR"


def train_command(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "nested_learning.train", *args]


def with_dirs(run_dir: Path | None = None, sweep_dir: Path | None = None) -> dict[str, str]:
    """The environment that `hydra.run.dir=${oc.env:...}` / `hydra.sweep.dir=${oc.env:...}` read."""
    env = dict(os.environ)
    for name, path in ((RUN_DIR_ENV, run_dir), (SWEEP_DIR_ENV, sweep_dir)):
        if path is not None:
            env[name] = str(Path(path).resolve())
    return env


def saved_logging(config_dir: Path) -> list[str]:
    """The run's terminal log level, from its saved hydra.yaml, as an override.

    A replay composes the saved config.yaml, which holds no `hydra:` settings: without this, Hydra's
    default console level (INFO) would print every progress line a second time, as a log record.
    """
    hydra_yaml = config_dir / "hydra.yaml"
    if not hydra_yaml.is_file():
        return []
    key = "hydra.job_logging.handlers.console.level"
    level = OmegaConf.select(OmegaConf.load(hydra_yaml), key, throw_on_resolution_failure=False)
    return [] if level is None else [f"++{key}={level}"]  # ++: Hydra's default handler sets no level


def replay_command(run_dir: Path, overrides: list[str], resume: bool | str = False) -> list[str]:
    """The train command that replays run_dir's saved config into $NESTED_LEARNING_RUN_DIR (see with_dirs)."""
    config_dir = saved_config_dir(run_dir).resolve()
    return train_command([
        "--config-path", str(config_dir), "--config-name", "config",
        f"hydra.run.dir=${{oc.env:{RUN_DIR_ENV}}}", *saved_logging(config_dir),
        # Explicit either way: a resumed run's saved config says resume=true.
        f"resume={str(resume).lower()}", *overrides,
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="a run directory (with .hydra/config.yaml and results.json)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides applied on top of the saved config")
    args = parser.parse_args(argv)
    try:
        saved = load_results(args.run_dir)
        new_dir = args.run_dir / "reruns" / time.strftime("%Y-%m-%d_%H-%M-%S")
        command = replay_command(args.run_dir, args.overrides)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"re-running {args.run_dir} into {new_dir}", flush=True)
    if subprocess.run(command, env=with_dirs(run_dir=new_dir)).returncode != 0:
        print(f"error: the re-run failed; see {new_dir}", file=sys.stderr)
        return 1
    fresh = load_results(new_dir)
    # Losses too: one scored token moves an accuracy by a few hundredths, so a small difference in the
    # state a run starts from can leave every accuracy equal; it shows in the losses.
    different = [key for key in MATRICES if fresh.get(key) != saved.get(key)]
    if not different:
        print(f"identical: the accuracy and loss matrices of {new_dir} equal the saved ones")
        return 0
    for key in different:
        print(f"DIFFERENT {key.replace('_', ' ')}:")
        print(f"  saved:  {saved.get(key)}")
        print(f"  re-run: {fresh.get(key)}")
    return 0 if args.overrides else 1  # with overrides a different matrix is expected, not a failure
