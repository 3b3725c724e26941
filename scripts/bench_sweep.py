"""Sweep throughput: experiment=rate_sweep (27 rate points x 3 seeds = 81 HOPE trainings) three ways.

  1. the basic launcher:  python -m nested_learning.train experiment=rate_sweep
  2. the joblib launcher: python -m nested_learning.train experiment=rate_sweep hydra/launcher=joblib
     (one job per core; each job keeps threads=1)
  3. a plain PyTorch loop doing the same 81 trainings and evaluations in one process
     (scripts/plain_loop.py --rate-grid)

Each is timed as a whole command, imports included: that is what a researcher waits for. The
ratios are the targets of issue 3: basic <= 1.3x plain, joblib <= 0.75x basic.

    python scripts/bench_sweep.py
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time

from bench_paths import REPO


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=REPO, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args()
    train = [sys.executable, "-m", "nested_learning.train", "experiment=rate_sweep"]
    with tempfile.TemporaryDirectory() as tmp:
        print("timing the plain loop ...", flush=True)
        plain = timed([sys.executable, str(REPO / "scripts" / "plain_loop.py"), "--rate-grid"])
        print("timing the basic launcher ...", flush=True)
        basic = timed([*train, f"paths.output_root={tmp}/basic"])
        print("timing the joblib launcher ...", flush=True)
        joblib = timed([*train, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"paths.output_root={tmp}/joblib"])
    print("\n81 trainings of experiment=rate_sweep, whole commands, imports included:")
    print(f"  plain PyTorch loop, one process: {plain:6.1f} s")
    print(f"  basic launcher:                  {basic:6.1f} s   {basic / plain:.2f}x plain   (target <= 1.3x)")
    print(f"  joblib launcher, 2 cores:        {joblib:6.1f} s   {joblib / basic:.2f}x basic   (target <= 0.75x)")


if __name__ == "__main__":
    main()
