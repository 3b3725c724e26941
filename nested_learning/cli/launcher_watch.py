"""A sweep job that ends when the process that launched it dies.

joblib's launcher runs a sweep's jobs in worker processes (loky). Killed by SIGTERM or SIGKILL, the launching process
cannot stop them: they go on training, and writing into their job directories, as orphans, beside the
`scripts/resume.py` a user then runs on the same sweep. A job in such a worker watches its parent, and once the
parent is gone kills its own process: it leaves what a SIGKILL leaves (its last checkpoint, results.json not
complete), which `scripts/resume.py` continues. loky's parent handle has no sentinel to wait on, so the watch polls.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time

POLL_S = 0.5
_watching = False  # one watch per worker process, which runs several jobs in turn


def stop_with_launcher() -> None:
    """In a worker process of a launcher (multiprocessing's or loky's), SIGKILL this process once its parent is gone;
    elsewhere (a single run, the basic launcher, Slurm, DDP ranks) nothing."""
    global _watching
    parent = multiprocessing.parent_process()
    if parent is None or parent.pid is None or _watching:
        return
    launcher = parent.pid

    def watch() -> None:
        while os.getppid() == launcher:
            time.sleep(POLL_S)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="stop-with-launcher", daemon=True).start()
    _watching = True
