"""`python -m nested_learning.train` as a user's command: what Hydra would report with a stack trace
and a generic hint, for a mistake the user can fix, becomes one line naming it.

- an override of an option that the chosen config does not have, but another choice of its group
  does (`task.language=parity` without task=formal): Hydra suggests `+task.language`, which cannot work;
- a scheduler that refuses the sweep's jobs (Slurm's sbatch: an unknown partition, too much memory):
  its own message, not 40 lines of submitit's stack (submitit prints sbatch's lines first itself).

A run's own UserErrors are printed by train.main, a sweep's check of its jobs by hydra_callbacks.

Hydra prints errors itself unless HYDRA_FULL_ERROR=1; that is set here so they reach this module.
Whatever is not one of the above is printed as Hydra prints it (its own errors) or with its stack;
a user who sets HYDRA_FULL_ERROR=1 gets every stack.
"""
from __future__ import annotations

import os
import sys
import traceback
from typing import Callable

FULL_ERROR = "HYDRA_FULL_ERROR"


def misplaced_option(err: Exception) -> str | None:
    """'task.language: the chosen task config has no option 'language'; task=formal has it (add task=formal)',
    for Hydra's failure to override a key that another choice of the key's group has; None otherwise."""
    from nested_learning.cli.config_checks import CONF, belongs_elsewhere

    key = getattr(err.__cause__, "full_key", None)
    if not str(err).startswith("Could not override") or not key or "." not in key:
        return None
    group, option = key.split(".", 1)
    elsewhere = belongs_elsewhere(group, option) if (CONF / group).is_dir() else ""
    if not elsewhere:
        return None  # a misspelt key: Hydra's own message names it
    return f"{key}: the chosen {group} config has no option {option.split('.')[0]!r}{elsewhere}"


def scheduler_refusal(err: Exception) -> str | None:
    """The scheduler's own message when it refused to queue the jobs (submitit's FailedJobError), on one line."""
    if type(err).__module__.split(".")[0] != "submitit" or type(err).__name__ != "FailedJobError":
        return None
    said = "; ".join(line.strip() for line in str(err).splitlines() if line.strip())
    return (f"the scheduler refused the sweep's jobs: {said} "
            "(check hydra.launcher.partition, cpus_per_task and mem_gb against `sinfo`)")


def run_app(app: Callable[[], object]) -> int:
    """Run the Hydra app; its exit status."""
    user_wants_traces = os.environ.get(FULL_ERROR) == "1"
    os.environ[FULL_ERROR] = "1"
    try:
        app()
    except Exception as err:
        if user_wants_traces:
            raise
        line = misplaced_option(err) or scheduler_refusal(err)
        if line is not None:
            print(f"error: {line}", file=sys.stderr)
            return 2
        print_as_hydra(err)
        return 1
    return 0


def print_as_hydra(err: Exception) -> None:
    """What Hydra prints for its own errors without HYDRA_FULL_ERROR (a compact message); the stack for any other."""
    from hydra.errors import CompactHydraException
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(err, CompactHydraException):
        sys.stderr.write(str(err) + os.linesep)
        if isinstance(err.__cause__, OmegaConfBaseException):
            sys.stderr.write(str(err.__cause__) + os.linesep)
    else:
        traceback.print_exc()
