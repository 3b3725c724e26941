from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

REPO = Path(__file__).resolve().parent.parent
CONF = REPO / "conf"


def compose_config(*overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


# The shared multirun's jobs (dropout: the Transformer is the most RNG-sensitive model), and the seeds it sweeps.
SWEEP_JOB = ["model=transformer", "epochs_per_task=2", "logger=none"]


@pytest.fixture(scope="session")
def basic_sweep(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """One multirun of SWEEP_JOB over seed=0,1 with Hydra's basic launcher, for every test that compares a launcher's
    jobs with it: (its sweep directory, the finished command). Read only."""
    sweep = tmp_path_factory.mktemp("basic_sweep")
    return sweep, run_cli("-m", *SWEEP_JOB, "seed=0,1", f"hydra.sweep.dir={sweep}")


ODD = "a b=c,d'e\"f[g]"  # every character Hydra's override grammar would need quoted
# The killed sweep's jobs. Transformer (dropout 0.1): a resumed run only matches if the RNG state is restored.
KILLED_SWEEP = ["model=transformer", "seed=0,1,2", "epochs_per_task=[1,4]", "task.repeats=32", "batch_size=16",
                "checkpoint_every_s=0"]


@pytest.fixture(scope="session")
def killed_sweep(tmp_path_factory) -> SimpleNamespace:
    """One sweep killed for real, for every test of what a kill leaves and how it resumes.

    KILLED_SWEEP runs whole (`whole`), and again into a directory named with ODD characters (`killed`),
    where its second job SIGKILLs the sweep after epoch 3 and that epoch's checkpoint, two epochs into
    its second task (`killed_out`: the killed command). `cut` is that job's results.json as the kill left it
    and `cut_copy` a copy of the killed sweep, taken before the job was resumed in place with
    scripts/resume.py (`resumed`: that command). `jobs`: the job directories' names. Read only: a test
    that changes a directory works on a copy.
    """
    from nested_learning.cli.rerun import SWEEP_DIR_ENV, with_dirs

    root = tmp_path_factory.mktemp("killed_sweep")
    whole = root / "whole"
    whole_out = run_cli("-m", *KILLED_SWEEP, f"hydra.sweep.dir={whole}")
    killed = root / ODD / "sweep"
    killed.mkdir(parents=True)
    killed_out = subprocess.run(
        [sys.executable, "-m", "nested_learning.train", "-m", *KILLED_SWEEP, f"hydra.sweep.dir=${{oc.env:{SWEEP_DIR_ENV}}}"],
        cwd=REPO, env={**with_dirs(sweep_dir=killed), **kill_env(3, "after", "*/1_*")}, capture_output=True, text=True,
    )
    jobs = sorted(p.name for p in whole.iterdir() if p.is_dir())
    cut = json.loads((killed / jobs[1] / "results.json").read_text())
    cut_copy = root / ODD / "cut_copy"
    shutil.copytree(killed, cut_copy)
    resumed = run_script("resume.py", killed / jobs[1])
    return SimpleNamespace(whole=whole, whole_out=whole_out, killed=killed, killed_out=killed_out, jobs=jobs, cut=cut,
                           cut_copy=cut_copy, resumed=resumed)


@pytest.fixture(scope="session")
def optuna_search(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """One Optuna search of three trials (hparams_search=optuna_rates, one epoch per task), run as a user runs it,
    for every test that reads one: (its sweep directory, the finished command). A test that changes it works on a copy."""
    sweep = tmp_path_factory.mktemp("optuna")
    return sweep, run_cli("hparams_search=optuna_rates", "hydra.sweeper.n_trials=3", "epochs_per_task=1", f"hydra.sweep.dir={sweep}")


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


def run_script(name: str, *args, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    """Run `python scripts/NAME ARGS` from the repository root, as a user would."""
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, str(REPO / "scripts" / name), *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True)


def call_script(name: str, *args) -> subprocess.CompletedProcess:
    """scripts/NAME run as `__main__` in this process, with its output captured: what run_script gives, less the
    start of a new interpreter (a second or more, for the scripts that import pandas and scipy). For the quick
    tests; the slow ones start the scripts as a user does (run_script, and the README's commands)."""
    import contextlib
    import io
    import runpy

    path = str(REPO / "scripts" / name)
    argv = [path, *map(str, args)]
    stdout, stderr = io.StringIO(), io.StringIO()
    saved_argv, saved_path = sys.argv, list(sys.path)
    sys.argv = argv
    sys.path.insert(0, str(REPO / "scripts"))  # as `python scripts/NAME` has it: a script may import its neighbours
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                runpy.run_path(path, run_name="__main__")
                code = 0
            except SystemExit as exit_:
                if isinstance(exit_.code, str):  # sys.exit("message"): the interpreter prints it, exit status 1
                    print(exit_.code, file=sys.stderr)
                code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
    return subprocess.CompletedProcess(argv, code, stdout.getvalue(), stderr.getvalue())


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


def assert_resume_matches(killed: Path, whole: Path, resumed: subprocess.CompletedProcess | None = None) -> None:
    """Resume the killed run with scripts/resume.py (unless `resumed` is that command, run by a shared fixture);
    it must end with the uninterrupted run's matrices."""
    resumed = resumed or run_script("resume.py", killed)
    assert resumed.returncode == 0, resumed.stderr
    assert_matches_uninterrupted(killed, whole)


def assert_matches_uninterrupted(killed: Path, whole: Path) -> None:
    """The killed run, resumed, ended with the uninterrupted run's matrices."""
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
