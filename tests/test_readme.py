"""The commands of the README and of docs/*.md run as written after the README's set-up
(`source .venv/bin/activate`), with tiny budgets.

Every command of every ```bash block is either run here or skipped with the name of the test that
covers it, so a command added to the README or to a guide in docs/ is run by default.
"""
import os
import re
import shlex
import subprocess
import sys
import time

import pytest

from .conftest import REPO

# Commands run elsewhere, or that cannot run here: the start of the command -> why.
ELSEWHERE = {
    "make seed": "test_runs.py::test_readme_main_command_runs runs its command",
    "make test": "is this suite",
    ".venv/bin/python -m pytest": "is this suite",
    "python scripts/resume.py": "needs a killed run: test_sweeps.py::test_sigkill_in_second_task_then_resume_gives_the_same_matrix",
    "python -m nested_learning.train -m hydra/launcher=slurm": "needs a Slurm cluster",
    "PYTHONPATH=examples/extending": "test_extending.py::test_the_guides_commands_train_the_users_components checks their results",
    "make venv-gpu": "needs a GPU and downloads the CUDA build of torch (docs/hardware.md)",
    "python -m nested_learning.train trainer=gpu": "needs a GPU: test_precision.py composes trainer=gpu, "
                                                   "test_hardware.py checks its one-line error without one",
    "python -m nested_learning.train trainer=ddp trainer.devices": "needs several GPUs; test_ddp.py runs the same code "
                                                                   "on CPU ranks (trainer=ddp_cpu)",
    "python -m nested_learning.train trainer=ddp_cpu": "test_ddp.py::test_ddp_cpu_trains_and_evaluates_as_one_process "
                                                       "runs it on a smaller task",
}
# Whole commands that a test of their own runs (or runs more of), with its shared run where there is one: the command -> that test.
COVERED = {
    "python -m nested_learning.train":
        "test_runs.py::test_a_run_says_where_it_wrote_logs_to_train_log_and_shows_no_bar_when_piped",
    "python -m nested_learning.train model=transformer seed=3 epochs_per_task=[5,2]":
        "test_reproduce.py::test_a_run_killed_before_its_first_checkpoint_says_so_and_restarts",
    "python -m nested_learning.train -m rates.fast=0.3,0.6,0.9 rates.slow=0.01,0.02,0.05 seed=0,1,2":
        "test_sweeps.py::test_tensorboard_has_curves_per_task_heatmap_and_hparams",
    "python -m nested_learning.train -m rates.fast=0.3,0.6,0.9 rates.slow=0.01,0.02,0.05 seed=0,1,2 hydra/launcher=joblib":
        "test_sweeps.py::test_no_state_leaks_between_jobs_with_either_launcher_and_a_joblib_job_reruns",
    "python -m nested_learning.train hparams_search=optuna_rates":
        "test_sweeps.py::test_optuna_search_reports_the_pareto_front_of_acc_and_forgetting",
    "python scripts/rerun.py RUN_DIR [key=value ...]":
        "test_sweeps.py::test_rerun_and_resume_reproduce_both_matrices_and_print_each_line_once",
}
# Where users copy commands from, in the order they are run (a later command may use an earlier one's run).
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# The smallest budget that still runs each command's code: one epoch per task, no TensorBoard, a
# sweep of two jobs (two values of the first swept key, the first value of any other), two Optuna trials.
BUDGET = ["epochs_per_task=1", "logger=none"]


def doc_commands(path) -> list[str]:
    """The commands of a Markdown file's ```bash blocks, continuation lines joined, comments dropped."""
    text = path.read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            command = line.split(" # ")[0].split("  #")[0].strip()
            if command and not command.startswith("#"):
                commands.append(command)
    return commands


def readme_commands() -> list[str]:
    return [command for path in DOCUMENTS for command in doc_commands(path)]


def split_env(words: list[str]) -> tuple[dict[str, str], list[str]]:
    """Leading `NAME=value` words (the shell's per-command environment) and the command after them."""
    env = {}
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
        name, value = words.pop(0).split("=", 1)
        env[name] = value
    return env, words


def sweep_values(key: str, value: str) -> list[str] | None:
    """The values a sweep override (or a sweeper param) expands to, as Hydra parses them; None if not a sweep."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    override = OverridesParser.create().parse_override(f"{key}={value}")
    return list(override.sweep_string_iterator()) if override.is_sweep_override() else None


def experiment_sweep(words: list[str]) -> dict[str, str]:
    """The sweeper params a config (an experiment) sets, e.g. experiment=fair: model and seed.

    A key also given on the command line is the command line's, as in Hydra (experiment=baselines strategy=naive).
    """
    from hydra import compose, initialize_config_dir

    if not any(w.startswith(("experiment=", "hparams_search=")) for w in words):
        return {}  # only those configs set sweeper params
    plain = [w for w in words if "=" in w and sweep_values(*w.split("=", 1)) is None]
    given = {w.split("=", 1)[0] for w in plain}
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=plain, return_hydra_config=True)
    params = cfg.hydra.sweeper.get("params") or {}
    return {} if "n_trials" in cfg.hydra.sweeper else {str(k): str(v) for k, v in params.items() if str(k) not in given}


def with_budget(command: str, out, run_dir, sweep_dir) -> tuple[dict[str, str], list[str]]:
    """(the command's own environment variables, its words with the budget added)."""
    command = command.replace("outputs/multiruns/<time>", str(sweep_dir)).replace("RUN_DIR", str(run_dir))
    env, words = split_env([w for w in shlex.split(command) if w != "[key=value" and w != "...]"])
    if words[:3] != ["python", "-m", "nested_learning.train"] or "--cfg" in words or "--help" in words:
        return env, words
    words = [w for w in words if not w.startswith("epochs_per_task=")]
    swept = {**experiment_sweep(words[3:]), **dict(w.split("=", 1) for w in words[3:] if "=" in w and sweep_values(*w.split("=", 1)))}
    kept = [w for w in words if w.split("=", 1)[0] not in swept]
    for i, (key, value) in enumerate(swept.items()):
        kept.append(f"{key}={','.join(sweep_values(key, value)[:2 if i == 0 else 1])}")
    budget = BUDGET + [f"paths.output_root={out}"]
    if any(w.startswith("hparams_search=") for w in words):
        budget.append("hydra.sweeper.n_trials=2")
    return env, kept + budget


@pytest.mark.slow
def test_every_readme_command_runs_after_activating_the_venv(tmp_path):
    venv_bin = os.path.dirname(sys.executable)
    env = {**os.environ, "PATH": f"{venv_bin}:{os.environ['PATH']}", "VIRTUAL_ENV": os.path.dirname(venv_bin)}
    env.pop("CI", None)
    ran, covered = [], []
    for command in readme_commands():
        if any(command.startswith(start) for start in ELSEWHERE):
            continue
        if command in COVERED:
            covered.append(command)
            continue
        if command.startswith("tensorboard "):
            # a server that runs until stopped: check that activation puts it on PATH
            assert subprocess.run(["tensorboard", "--version_tb"], env=env, capture_output=True).returncode == 0
            ran.append(command)
            continue
        runs = sorted((tmp_path / "runs").glob("*"))
        sweeps = sorted((tmp_path / "multiruns").glob("*"), key=lambda p: p.stat().st_mtime)
        reference = re.search(r"--reference (\S+)", command)
        if reference:  # the latest sweep that has the model to compare against
            sweeps = [s for s in sweeps if any(s.glob(f"*model={reference.group(1)}*"))]
        axes = re.search(r"--axes (\S+)", command)
        if axes:  # the latest sweep that varies the first axis
            sweeps = [s for s in sweeps if any(s.glob(f"*{axes.group(1)}=*"))]
        own_env, words = with_budget(command, tmp_path, runs[-1] if runs else "RUN_DIR", sweeps[-1] if sweeps else "<time>")
        started = time.time()
        out = subprocess.run(words, cwd=REPO, env={**env, **own_env}, capture_output=True, text=True, timeout=600)
        print(f"{time.time() - started:5.1f} s  {' '.join(words)}")
        assert out.returncode == 0, f"{command}\n-> {' '.join(words)}\n{out.stderr[-3000:]}"
        ran.append(command)
    assert len(ran) + len(covered) >= 12, ran  # the README's examples, not a parse that found nothing


def test_every_command_skipped_by_name_is_in_the_docs_and_names_a_test_that_exists():
    import importlib

    shown = set(readme_commands())
    for command, test in COVERED.items():
        assert command in shown, f"{command!r} is skipped, but no document shows it any more"
        module, name = test.split("::")
        assert callable(getattr(importlib.import_module(f"tests.{module.removesuffix('.py')}"), name, None)), (command, test)
