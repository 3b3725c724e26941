"""Data-parallel training on several devices (Lightning's DDP), with the math of one process.

`batch_size` is the global batch: the experiment, not the hardware, fixes it. Each optimizer step
the data module hands rank r a contiguous share of the global batch a single process would train on
(`RankShares`), and `ContinualLM.training_step` divides each share's summed loss by the global
batch's non-padding targets per rank, so DDP's average of the ranks' gradients is the gradient of
the global batch's mean loss (docs/ddp.md). Evaluation runs on rank 0 over whole evaluation sets
and is broadcast, so every example counts exactly once and every rank takes the same decisions.
Only rank 0 writes (results.json, checkpoints) and prints.
"""
from __future__ import annotations

import os
import subprocess
from typing import Any, Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from nested_learning.errors import SweepError, UserError


def set_process_group_environment(trainer_cfg: Any, threads: int | None) -> None:
    """What the ranks read from the environment before Lightning starts them (they inherit it).

    On one machine the ranks meet on the loopback interface: MASTER_ADDR 127.0.0.1 and, for gloo
    (CPU ranks), GLOO_SOCKET_IFNAME=lo, since gloo otherwise binds to the address the host name
    resolves to, and inside a sandbox that can be one it never reaches (where it hangs). Lightning
    sets every rank's thread count to cores / ranks unless OMP_NUM_THREADS is set: `threads` wins.
    Values the user exported are kept.
    """
    if threads:
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    if int(trainer_cfg.get("num_nodes", 1)) == 1:
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        if trainer_cfg.get("accelerator") == "cpu":
            os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")


class SilentExamples(Dataset):
    """A dataset of (inputs, targets) pairs in which index -1 - i is example i with every target <pad>.

    A rank whose share of a global batch is empty (a last batch smaller than the number of ranks)
    still has to take part in the step's gradient all-reduce: it runs a copy that counts in no loss.
    """

    def __init__(self, dataset: Dataset, pad_id: int):
        self.dataset, self.pad_id = dataset, pad_id

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if index >= 0:
            return self.dataset[index]
        inputs, targets = self.dataset[-1 - index]
        return inputs, torch.full_like(targets, self.pad_id)


class RankShares(Sampler[list[int]]):
    """Rank `rank`'s contiguous share of every global batch of `batches` (sizes differ by at most one)."""

    def __init__(self, batches: Any, rank: int, world_size: int):
        self.batches, self.rank, self.world_size = batches, rank, world_size

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.batches:
            batch = list(batch)
            share = batch[self.rank * len(batch) // self.world_size : (self.rank + 1) * len(batch) // self.world_size]
            yield share or [-1 - batch[0]]


def rank_share(loader: DataLoader, rank: int, world_size: int, pad_id: int) -> DataLoader:
    """The loader of this rank's shares of `loader`'s batches (one process: the same batches)."""
    # The generator only seeds workers; giving one keeps iter() off the global RNG that dropout uses.
    return DataLoader(SilentExamples(loader.dataset, pad_id), batch_sampler=RankShares(loader.batch_sampler, rank, world_size),
                      generator=loader.generator, num_workers=loader.num_workers)


def refuse_unsupported(cfg: Any, trainer: Any, multirun: bool) -> None:
    """One line, before anything is written, for a data-parallel run whose result would not be the one-process result."""
    from pytorch_lightning.strategies.launchers.multiprocessing import _MultiProcessingLauncher
    from pytorch_lightning.strategies.launchers.subprocess_script import _SubprocessScriptLauncher

    if trainer.world_size == 1:
        return
    strategy = cfg.trainer.get("strategy", "auto")
    if isinstance(trainer.strategy.launcher, _MultiProcessingLauncher):
        # Its ranks are copies made by pickling or forking: what rank 0 measures stays in the copy.
        raise UserError(f"trainer.strategy={strategy}: processes started by spawn or fork are not supported; "
                        "use trainer.strategy=ddp (trainer=ddp, trainer=ddp_cpu)")
    relaunches = isinstance(trainer.strategy.launcher, _SubprocessScriptLauncher) and \
        not trainer.strategy.cluster_environment.creates_processes_externally
    if multirun and relaunches:
        raise SweepError(
            f"trainer.strategy={strategy} with {trainer.world_size} devices in a multirun: Lightning "
            "re-launches the whole command for each rank, so every rank would start the sweep again (Lightning issue 11300, "
            "Hydra issue 2070); sweep with hydra/launcher=slurm_ddp (Slurm starts the ranks), or launch each run on its own")
    state = cfg.model.get("cms_state", "reset")
    if state != "reset":
        raise UserError(
            f"model.cms_state={state} with {trainer.world_size} devices: the carried fast state is the mean over a batch, and "
            "each rank would carry its own share's; use trainer.devices=1, or model.cms_state=reset")


def wait_for_ranks(trainer: Any, timeout: float = 120) -> None:
    """Rank 0 returns only when the ranks it started have exited (killed after `timeout` seconds)."""
    for proc in getattr(trainer.strategy.launcher, "procs", []):
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
