"""Errors a user can fix from the command line.

`train` catches these and prints their message as one line, with no traceback: the message must
name the bad value and what is allowed.
"""

# A failed sweep job's error, one line in the job's train.log only (conf/config.yaml routes it there;
# the terminal has it from the job's own print): what the sweep summary gives as the job's reason.
FAILURE_LOG = "nested_learning.failure"


class UserError(Exception):
    """Bad input: an out-of-range option, an empty task, a path that is not a run directory."""


class NonFiniteLossError(UserError):
    """Training diverged (NaN or inf loss); results written so far are kept."""


class SweepError(UserError):
    """Bad input that concerns every job of a sweep: the sweep stops with its one line, not job after job."""
