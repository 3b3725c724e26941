"""Resume a killed run from its last checkpoint, or finish a killed sweep.

    python scripts/resume.py RUN_DIR              # a single run or one job of a sweep
    python scripts/resume.py --restart RUN_DIR    # from the beginning when it has no checkpoint yet
    python scripts/resume.py SWEEP_DIR            # every unfinished job of a sweep, then its summary
"""
import sys

from nested_learning.cli.finish import main

sys.exit(main())
