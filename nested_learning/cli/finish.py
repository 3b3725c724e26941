"""Resume a killed run, or finish a killed sweep.

    python scripts/resume.py RUN_DIR              # continue a run from its last checkpoint
    python scripts/resume.py --restart RUN_DIR    # the same, or from the beginning if it has no checkpoint
    python scripts/resume.py SWEEP_DIR            # finish a sweep whose launcher was killed

A sweep is finished by launching it again, through Hydra, from the overrides saved in its
`multirun.yaml`, into the same directory, with `resume=auto`: Hydra enumerates the same jobs into the
same job directories; finished jobs are left as they are, interrupted ones continue from their
checkpoints, the rest run from the beginning; then the sweep summary is written as usual.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from omegaconf import OmegaConf

from nested_learning.errors import UserError
from nested_learning.cli.overrides import override_key, without_key
from nested_learning.cli.rerun import SWEEP_DIR_ENV, replay_command, saved_config_dir, train_command, with_dirs

SWEEP_RECORD = "multirun.yaml"


def finish_sweep_command(sweep_dir: Path) -> list[str]:
    """The original multirun's command, pointed at $NESTED_LEARNING_SWEEP_DIR, with resume=auto."""
    saved = OmegaConf.load(sweep_dir / SWEEP_RECORD)
    overrides = OmegaConf.to_container(saved.hydra.overrides, resolve=False)  # as typed, e.g. "${oc.env:...}"
    task = without_key(overrides["task"], "resume")
    hydra_overrides = [o for o in overrides["hydra"] if override_key(o) not in ("hydra.sweep.dir", "hydra.mode")]
    return train_command([
        "-m", "--config-name", saved.hydra.job.config_name, *hydra_overrides, *task,
        f"hydra.sweep.dir=${{oc.env:{SWEEP_DIR_ENV}}}", "resume=auto",
    ])


def resume_run_command(run_dir: Path, restart: bool) -> list[str]:
    saved_config_dir(run_dir)  # a one-line error for a directory that is no run
    return replay_command(run_dir, [], resume="auto" if restart else True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("directory", type=Path, help="a run directory, a job directory of a sweep, or a sweep directory")
    parser.add_argument("--restart", action="store_true", help="a run without a checkpoint starts again from the beginning")
    args = parser.parse_args(argv)
    directory = args.directory
    try:
        if (directory / SWEEP_RECORD).is_file():
            print(f"finishing the sweep in {directory}", flush=True)
            command, env = finish_sweep_command(directory), with_dirs(sweep_dir=directory)
        else:
            command, env = resume_run_command(directory, args.restart), with_dirs(run_dir=directory)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return subprocess.run(command, env=env).returncode
