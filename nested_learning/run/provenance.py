"""What a run needs to be reproduced: package versions, git commit, machine."""
from __future__ import annotations

import platform
import subprocess
import sys
from functools import lru_cache
from importlib import metadata
from pathlib import Path

PACKAGES = ("torch", "pytorch-lightning", "hydra-core", "omegaconf", "numpy", "tensorboard", "torchmetrics")
REPO_ROOT = Path(__file__).resolve().parents[2]


@lru_cache(maxsize=1)  # a sweep's jobs share one process and one environment
def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


@lru_cache(maxsize=1)  # the checkout does not change under a running sweep
def git_state(root: Path = REPO_ROOT) -> dict[str, str | bool | None]:
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def collect() -> dict:
    return {
        "versions": dict(package_versions()),
        "git": dict(git_state()),
        "machine": {"platform": platform.platform(), "processor": platform.machine()},
        "argv": sys.argv,
    }
