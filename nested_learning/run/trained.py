"""A finished run's trained model, read back from its directory.

    from nested_learning.run.trained import load_run
    run = load_run("outputs/runs/2026-12-05_12-00-00_hope")
    run.model          # the trained network, in eval mode: (B, T) token ids -> (B, T, V) logits
    run.data.vocab     # its vocabulary (encode sentences into ids)
    run.cfg, run.results
    run.evaluate()     # every task measured as the run measured it: ({split: {metric: [...]}}, {split: [...]})

The network is rebuilt from the run's resolved config (results.json) and given the weights of
`checkpoints/final.ckpt`, which every run writes at the end of its last task (checkpoints.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from nested_learning.data.datamodule import TaskSequenceDataModule
from nested_learning.errors import UserError
from nested_learning.run.lit_module import ContinualLM
from nested_learning.analysis.results import load_results
from nested_learning.run.checkpoints import FINAL_CHECKPOINT
from nested_learning.run.retention import evaluate_tasks
from nested_learning.train import build_model


@dataclass
class LoadedRun:
    model: nn.Module  # the trained network, in eval mode
    cfg: DictConfig  # the run's config, resolved as it ran
    results: dict[str, Any]  # its results.json
    data: TaskSequenceDataModule  # its tasks and vocabulary
    module: ContinualLM  # the network inside the framework's training/evaluation module

    def evaluate(self) -> tuple[dict, dict]:
        """Every task on every evaluation split, as the retention callback measures R's last row."""
        trained = len(self.data.task_names) - 1
        return evaluate_tasks(self.module, self.data, bool(self.results.get("count_padding", False)), trained)


def load_run(run_dir: str | Path) -> LoadedRun:
    run_dir = Path(run_dir)
    results = load_results(run_dir)  # a directory without results.json: one-line UserError naming it
    checkpoint = run_dir / FINAL_CHECKPOINT
    if not checkpoint.is_file():
        status = results.get("status", "unknown")
        why = ("it finished before runs wrote their trained model; python scripts/rerun.py RUN_DIR runs it again"
               if status == "complete" else
               "a run writes it when its last task ends; python scripts/resume.py RUN_DIR finishes a killed one")
        raise UserError(f"{run_dir}: no trained model ({FINAL_CHECKPOINT}): the run is {status}; {why}")
    cfg = OmegaConf.create(results["config"])
    _, data, module = build_model(cfg, instantiate(cfg.task, _convert_="all"))
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)  # our own file
    module.load_state_dict(state["state_dict"])
    module.eval()
    return LoadedRun(model=module.net, cfg=cfg, results=results, data=data, module=module)
