"""Every option of every config group under conf/ builds; bad names list the choices."""
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from .conftest import CONF, compose_config, run_cli

# (group, option) for every config file in a folder of conf/, nested groups (hydra/launcher) included.
OPTIONS = sorted((p.parent.relative_to(CONF).as_posix(), p.stem) for p in CONF.rglob("*.yaml") if p.parent != CONF)
GROUPS = sorted({group for group, _ in OPTIONS})
# What a run builds from its config (train.build), and what Hydra builds for a sweep.
BUILT = ("task", "model", "strategy", "optimizer", "logger", "trainer", "hydra.launcher", "hydra.sweeper")
CONSUMER = {"rates": "model"}  # a group that is no object of its own is built into the part that reads it


def options(group: str) -> list[str]:
    return sorted(option for g, option in OPTIONS if g == group)


def compose_with_hydra(*overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=True)


def build(cfg: DictConfig, key: str, tmp_path) -> None:
    """Build cfg.<key> as a run (or Hydra, for hydra.*) would and check that it is what it must be."""
    import pytorch_lightning as pl
    from hydra.plugins.launcher import Launcher
    from hydra.plugins.sweeper import Sweeper

    from nested_learning.cli.config_checks import check_options
    from nested_learning.strategies.base import Strategy

    node = OmegaConf.select(cfg, key)
    if node is None:
        return  # e.g. logger=none
    if not key.startswith("hydra."):
        check_options(cfg, key)  # every option is an argument of its constructor, of the annotated type
    kwargs = OmegaConf.to_container(node, resolve=True)
    if key in ("model", "strategy"):
        del kwargs["name"]  # a label, as train.build drops it
    if key == "task":
        assert len(instantiate(kwargs, _convert_="all").tasks) >= 1
    elif key == "model":
        net = instantiate(kwargs, vocab_size=12, max_len=9, _convert_="all")
        assert net(torch.randint(0, 12, (2, 8))).shape == (2, 8, 12)  # (B, T) ids -> (B, T, V) logits
    elif key == "strategy":
        assert isinstance(instantiate(kwargs, _convert_="all"), Strategy)
    elif key == "optimizer":
        assert isinstance(instantiate(kwargs)([torch.nn.Parameter(torch.zeros(3, 3))]), torch.optim.Optimizer)
    elif key == "logger":
        assert hasattr(instantiate({**kwargs, "save_dir": str(tmp_path)}), "log_metrics")
    elif key == "trainer":
        if kwargs["accelerator"] in ("gpu", "cuda") and not torch.cuda.is_available():
            kwargs["accelerator"] = "cpu"  # the rest of a GPU trainer's options are built here all the same
        assert isinstance(instantiate({**kwargs, "default_root_dir": str(tmp_path)}), pl.Trainer)
    else:
        plugin = instantiate(kwargs) if kwargs["_target_"].startswith("hydra_plugins.") else None
        # Hydra's own basic launcher and sweeper are built by Hydra alone (the sweeper's jobs are checked below)
        assert plugin is None or isinstance(plugin, Launcher if key == "hydra.launcher" else Sweeper)


DEFAULT = compose_with_hydra()


# An experiment or search composes and checks every job of its sweep (up to 175): seconds each.
@pytest.mark.parametrize("group,option", [
    pytest.param(g, o, marks=pytest.mark.slow) if g in ("experiment", "hparams_search") else (g, o) for g, o in OPTIONS])
def test_every_option_of_every_group_builds(group, option, tmp_path):
    """Each option's own part is built (an experiment's: every part it changes), and its values pass the
    checks a run makes. An option that defines a sweep has every job's values checked, as the sweep
    does before it starts, and its first job built."""
    from hydra.core.hydra_config import HydraConfig

    from nested_learning.cli.config_checks import apply_model_overrides, check_jobs, validate
    from nested_learning.cli.sweep_progress import grid_jobs

    cfg = compose_with_hydra(f"{group}={option}")
    if cfg.hydra.sweeper.get("params") and cfg.hydra.sweeper._target_.endswith(".BasicSweeper"):
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):  # a glob sweep lists options through it
            jobs = grid_jobs(cfg.hydra.sweeper.params, list(cfg.hydra.overrides.task))
            assert jobs, f"{group}={option}: its sweep has no jobs"
            check_jobs(cfg, jobs)
        cfg = compose_with_hydra(*jobs[0])
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(tmp_path)  # what ${hydra:runtime.output_dir} gives a run
        apply_model_overrides(cfg)
    HydraConfig.instance().set_config(cfg)
    try:
        validate(cfg)
        own = CONSUMER.get(group, group.replace("/", "."))
        for key in (k for k in BUILT if k == own or OmegaConf.select(cfg, k) != OmegaConf.select(DEFAULT, k)):
            build(cfg, key, tmp_path)
    finally:
        HydraConfig.instance().cfg = None


def test_the_option_listing_finds_every_group():
    assert {"model", "task", "strategy", "optimizer", "rates", "experiment", "hydra/launcher"} <= set(GROUPS)
    assert ("hydra/launcher", "slurm") in OPTIONS and ("model", "hope_nl") in OPTIONS


def test_seed_experiment_budgets():
    cfg = compose_config("experiment=seed")
    assert cfg.seed == 7 and cfg.batch_size == 64
    assert cfg.model_overrides.transformer == {"epochs_per_task": 5, "optimizer.lr": 2.0e-3}
    assert cfg.model_overrides.hope == {"epochs_per_task": 3, "optimizer.lr": 7.0e-4}
    assert cfg.optimizer._target_ == "torch.optim.Adam"


def test_rates_presets():
    assert dict(compose_config("rates=seed").rates) == {"fast": 0.6, "medium": 0.3, "slow": 0.02}
    assert dict(compose_config("rates=seed_bad").rates) == {"fast": 0.95, "medium": 0.5, "slow": 0.1}


@pytest.mark.parametrize("group", ["model", "rates", "task"])
def test_unknown_name_lists_the_choices_without_traceback(group, tmp_path):
    out = run_cli(f"{group}=nope", f"paths.output_root={tmp_path}")
    assert out.returncode != 0
    assert f"Could not find '{group}/nope'" in out.stderr
    for option in options(group):
        assert option in out.stderr
    assert "Traceback" not in out.stderr


def test_gitignore_ignores_no_tracked_file():
    import shutil
    import subprocess

    if shutil.which("git") is None or not (CONF.parent / ".git").exists():
        pytest.skip("not a git checkout")
    out = subprocess.run(["git", "ls-files", "--cached", "--ignored", "--exclude-standard"], cwd=CONF.parent,
                         capture_output=True, text=True, check=True)
    assert out.stdout == "", f"tracked but ignored: {out.stdout}"
