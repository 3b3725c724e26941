"""Every config under conf/ composes; bad names list the choices."""
import pytest
from hydra.utils import instantiate

from .conftest import CONF, compose_config, run_cli

GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir())


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in options(g)])
def test_every_option_composes(group, option):
    cfg = compose_config(f"{group}={option}")
    assert cfg is not None
    if group == "model" or group == "experiment":
        net_cfg = {k: v for k, v in cfg.model.items() if k != "name"}
        net = instantiate(net_cfg, vocab_size=12, max_len=9, _convert_="all")
        assert sum(p.numel() for p in net.parameters()) > 0
    if group == "task":
        assert len(instantiate(cfg.task, _convert_="all").tasks) >= 1


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
