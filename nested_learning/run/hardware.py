"""The hardware a run asks for (`trainer.accelerator`, `trainer.devices`) against what the machine has.

Lightning finds a missing GPU only when it builds the Trainer, seconds in, with a traceback and a run
directory left behind; train.run checks here first, so the mistake is one line and leaves nothing.
"""
from __future__ import annotations

import os
from typing import Any

from nested_learning.errors import UserError

ACCELERATORS = ("cpu", "gpu", "cuda", "mps", "auto")


def usable_cores() -> int:
    """Cores this process may run on (a Slurm job or container can get fewer than the machine has)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def available_devices() -> dict[str, int]:
    """accelerator -> how many devices of it this machine has (cpu: cores, one process per device)."""
    import torch

    cuda = torch.cuda.device_count()
    mps = int(torch.backends.mps.is_available())
    return {"cpu": usable_cores(), "cuda": cuda, "mps": mps, "gpu": cuda or mps}


def describe(available: dict[str, int]) -> str:
    gpus = f"{available['cuda']} CUDA GPU(s)" + (", an Apple MPS GPU" if available["mps"] else "")
    return f"{gpus} and {available['cpu']} usable CPU core(s)"


def check_hardware(accelerator: Any, devices: Any, available: dict[str, int] | None = None) -> None:
    """One UserError naming what was asked and what exists, for an accelerator or device count the machine lacks.

    `devices`: a count (-1: all), a list of device indices, or "auto"; other forms Lightning accepts go to it unchecked.
    """
    if accelerator not in ACCELERATORS:
        raise UserError(f"trainer.accelerator={accelerator!r}: must be one of {', '.join(ACCELERATORS)}")
    available = available_devices() if available is None else available
    if accelerator == "auto":
        return  # Lightning picks what exists
    have = available[accelerator]
    if have == 0:
        raise UserError(f"trainer.accelerator={accelerator}: this machine has {describe(available)}; "
                        "use trainer.accelerator=cpu, or auto for whatever this machine has")
    has = (f"{have} usable CPU core(s), and a CPU device is a process on one" if accelerator == "cpu"
           else describe(available))
    if isinstance(devices, bool):
        raise UserError(f"trainer.devices={devices}: must be a count, -1 (all), auto or a list of device indices")
    if isinstance(devices, int):
        if devices == 0 or devices < -1:
            raise UserError(f"trainer.devices={devices}: must be a count >= 1, -1 (all), auto or a list of device indices")
        if devices > have:
            raise UserError(f"trainer.devices={devices} on {accelerator}: this machine has {has}")
    elif isinstance(devices, (list, tuple)) and accelerator != "cpu":
        missing = [i for i in devices if not isinstance(i, int) or not 0 <= i < have]
        if missing:
            raise UserError(f"trainer.devices={list(devices)} on {accelerator}: no device {missing[0]}; "
                            f"this machine has {describe(available)} (indices 0 to {have - 1})")
