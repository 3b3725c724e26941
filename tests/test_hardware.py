"""Hardware a run asks for and the machine lacks: one line, before any run directory is left behind."""
import pytest

from nested_learning.errors import UserError
from nested_learning.run.hardware import check_hardware, usable_cores

from .conftest import run_cli

LAPTOP = {"cpu": 2, "cuda": 0, "mps": 0, "gpu": 0}
TWO_GPUS = {"cpu": 16, "cuda": 2, "mps": 0, "gpu": 2}


@pytest.mark.parametrize("accelerator, devices, available, message", [
    ("gpu", 1, LAPTOP, "trainer.accelerator=gpu: this machine has 0 CUDA GPU(s) and 2 usable CPU core(s); "
                       "use trainer.accelerator=cpu, or auto for whatever this machine has"),
    ("tpu", 1, LAPTOP, "trainer.accelerator='tpu': must be one of cpu, gpu, cuda, mps, auto"),
    ("cpu", 4, LAPTOP, "trainer.devices=4 on cpu: this machine has 2 usable CPU core(s), and a CPU device is a process on one"),
    ("gpu", 4, TWO_GPUS, "trainer.devices=4 on gpu: this machine has 2 CUDA GPU(s) and 16 usable CPU core(s)"),
    ("cuda", [1, 2], TWO_GPUS, "trainer.devices=[1, 2] on cuda: no device 2; this machine has 2 CUDA GPU(s) and "
                               "16 usable CPU core(s) (indices 0 to 1)"),
    ("cpu", 0, LAPTOP, "trainer.devices=0: must be a count >= 1, -1 (all), auto or a list of device indices"),
])
def test_what_the_machine_lacks_is_named_with_what_it_has(accelerator, devices, available, message):
    with pytest.raises(UserError) as err:
        check_hardware(accelerator, devices, available)
    assert str(err.value) == message


@pytest.mark.parametrize("accelerator, devices", [("cpu", 2), ("gpu", 2), ("cuda", [0, 1]), ("auto", "auto"), ("gpu", -1)])
def test_what_the_machine_has_passes(accelerator, devices):
    check_hardware(accelerator, devices, TWO_GPUS)


@pytest.mark.slow
@pytest.mark.parametrize("override, says", [
    ("trainer.accelerator=gpu", "error: trainer.accelerator=gpu: this machine has 0 CUDA GPU(s)"),
    (f"trainer.devices={usable_cores() + 1}", f"error: trainer.devices={usable_cores() + 1} on cpu: this machine has "),
])
def test_missing_hardware_stops_the_command_with_one_line_and_no_run_directory(tmp_path, override, says):
    import torch

    if override.startswith("trainer.accelerator") and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    out = run_cli(override, f"paths.output_root={tmp_path}")
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1 and out.stderr.startswith(says), out.stderr
    assert list((tmp_path / "runs").iterdir()) == []
