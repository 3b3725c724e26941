"""Re-run a run from its saved config and report whether its accuracy and loss matrices are identical.

    python scripts/rerun.py RUN_DIR [key=value ...]
"""
import sys

from nested_learning.cli.rerun import main

sys.exit(main())
