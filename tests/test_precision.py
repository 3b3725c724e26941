"""trainer.precision=bf16-mixed (bfloat16 autocast in training steps): the seed HOPE cell's recurrence stays float32."""
import torch

from nested_learning.models.seed_hope import SeedHopeCell

from .conftest import compose_config


def test_the_hope_cell_runs_its_recurrence_in_float32_under_bf16_autocast():
    torch.manual_seed(0)
    for controller_input in ("tracks", "token"):
        cell = SeedHopeCell(8, 8, {"fast": 0.6, "medium": 0.3, "slow": 0.02}, controller_input=controller_input)
        x = torch.randn(2, 12, 8)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = cell(x)
        assert mixed.dtype == torch.float32 and torch.equal(mixed, cell(x)), controller_input


def test_hope_trains_under_bf16_mixed(run_in_process):
    result = run_in_process("model=hope", "epochs_per_task=1", "trainer.precision=bf16-mixed")
    assert result["status"] == "complete" and result["config"]["trainer"]["precision"] == "bf16-mixed"


def test_trainer_gpu_is_one_gpu_with_opt_in_bf16():
    trainer = compose_config("trainer=gpu").trainer
    assert (trainer.accelerator, trainer.devices, trainer.precision) == ("gpu", 1, "32-true")
    assert trainer.deterministic is True  # from trainer/default.yaml
    assert compose_config("trainer=gpu", "trainer.precision=bf16-mixed").trainer.precision == "bf16-mixed"
