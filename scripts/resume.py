"""Resume a killed run from its last checkpoint, in its own directory.

    python scripts/resume.py RUN_DIR

Same as: python -m nested_learning.train --config-path RUN_DIR/.hydra --config-name config \\
             hydra.run.dir=RUN_DIR resume=true
"""
import argparse
import subprocess
import sys
from pathlib import Path

from nested_learning.errors import UserError
from nested_learning.rerun import rerun_command

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("run_dir", type=Path, help="the run directory of the interrupted run")
args = parser.parse_args()
try:
    command = rerun_command(args.run_dir, args.run_dir, [], resume=True)
except UserError as err:
    sys.exit(f"error: {err}")
sys.exit(subprocess.run(command).returncode)
