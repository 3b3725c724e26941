from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

REPO = Path(__file__).resolve().parent.parent
CONF = REPO / "conf"


def compose_config(*overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


@pytest.fixture
def run_in_process(tmp_path):
    """Train in this process (no Hydra app, no subprocess): fast enough for the quick suite."""
    from nested_learning.train import run

    def _run(*overrides: str, run_dir: Path | None = None) -> dict:
        cfg = compose_config("logger=none", *overrides)
        directory = run_dir or tmp_path / "run"
        with open_dict(cfg):
            cfg.trainer.default_root_dir = str(directory)
        return run(cfg, directory, list(overrides), print_table=False)

    return _run


def run_cli(*args: str, cwd: Path = REPO, env_extra: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run `python -m nested_learning.train ARGS` as a user would, with outputs under a temp root."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "nested_learning.train", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def kill_env(epoch: int, when: str, run_dir_glob: str | None = None) -> dict[str, str]:
    """Environment for a run that SIGKILLs itself after its `epoch`-th epoch (from 1), `when` "before" or "after"
    that epoch's checkpoint, in a run directory matching `run_dir_glob` (any by default): checkpoints.TEST_SIGKILL_ENV."""
    from nested_learning.run.checkpoints import TEST_SIGKILL_ENV

    return {TEST_SIGKILL_ENV: ":".join([str(epoch), when, *([run_dir_glob] if run_dir_glob else [])])}


def kill_at(job: list[str], run_dir: Path, epoch: int, when: str) -> dict:
    """Run `python -m nested_learning.train JOB` into run_dir, killed by SIGKILL after `epoch` (see kill_env);
    returns its results.json as the killed run left it."""
    out = run_cli(*job, f"hydra.run.dir={run_dir}", env_extra=kill_env(epoch, when))
    assert out.returncode == -signal.SIGKILL, out.stderr
    return json.loads((run_dir / "results.json").read_text())


def assert_resume_matches(killed: Path, whole: Path) -> None:
    """Resume the killed run with scripts/resume.py; it must end with the uninterrupted run's matrices."""
    resumed = subprocess.run([sys.executable, str(REPO / "scripts" / "resume.py"), str(killed)], cwd=REPO, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    final, uninterrupted = (json.loads((d / "results.json").read_text()) for d in (killed, whole))
    assert final["status"] == "complete" and final["resumed"] == 1
    assert final["accuracy_matrix"] == uninterrupted["accuracy_matrix"]
    assert final["loss_matrix"] == uninterrupted["loss_matrix"]


def run_cli_in_terminal(*args: str, env_extra: dict | None = None, timeout: int = 300) -> tuple[int, str]:
    """Run `python -m nested_learning.train ARGS` with a pseudo-terminal as stdin/stdout/stderr, as on a
    user's screen; returns (exit status, everything it drew, colours and cursor moves removed)."""
    import pty
    import re
    import select

    env = {**os.environ, "TERM": "xterm", "COLUMNS": "160", **(env_extra or {})}
    env = {k: v for k, v in env.items() if v is not None}
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "nested_learning.train", *args], cwd=REPO, env=env,
                            stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], timeout)
        if not ready:
            proc.kill()
            break
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return proc.wait(), re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", b"".join(chunks).decode(errors="replace"))
