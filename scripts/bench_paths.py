"""Where the benchmark scripts find the repository and its configs."""
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONF = REPO / "conf"
