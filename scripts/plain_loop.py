"""The reference the benchmarks measure the framework against: the same training and evaluation
as `nested_learning.train`, written as a bare PyTorch loop (no Lightning, no Hydra app, no logging).

It reuses the framework's data module for the tensors and the epoch schedule, the networks, and
the (seed, epoch) shuffle order, so for the same config both give the same accuracy matrix, which
the benchmarks check: the two sides must do the same work.

    python scripts/plain_loop.py --rate-grid     # the 81 HOPE trainings of experiment=rate_sweep
"""
from __future__ import annotations

import argparse
import itertools
import time

import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict

from nested_learning.analysis import metrics as M
from nested_learning.data.datamodule import TaskSequenceDataModule
from nested_learning.run.lit_module import ACCURACIES
from nested_learning.strategies.base import Naive
from nested_learning.cli.config_checks import apply_model_overrides


def train_and_evaluate(cfg: DictConfig) -> list[list[float]]:
    """Evaluate every task before training and after every epoch; return the accuracy matrix."""
    cfg = cfg.copy()
    apply_model_overrides(cfg)
    torch.set_num_threads(int(cfg.threads))
    torch.manual_seed(int(cfg.seed))
    dm = TaskSequenceDataModule(instantiate(cfg.task, _convert_="all"), cfg.epochs_per_task, int(cfg.batch_size), int(cfg.seed), Naive())
    net_cfg = {k: v for k, v in cfg.model.items() if k != "name"}
    net = instantiate(net_cfg, vocab_size=len(dm.vocab), max_len=dm.vocab.seq_len, _convert_="all")
    optimizer = torch.optim.Adam(net.parameters(), lr=float(cfg.optimizer.lr))
    pad = dm.vocab.pad_id
    split = cfg.eval.split or dm.sequence.split_names[0]  # as the framework chooses it
    accuracy = ACCURACIES[cfg.eval.metric]

    @torch.no_grad()
    def evaluate_all() -> list[float]:
        net.eval()
        accs = []
        for loader in dm.eval_dataloaders()[split]:
            correct = counted = 0
            for inputs, targets in loader:
                logits = net(inputs)
                F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=pad, reduction="sum")
                c, n = accuracy(logits, targets, pad, count_padding=bool(cfg.eval.count_padding))
                correct, counted = correct + c, counted + n
            accs.append(correct / counted)
        net.train()
        return accs

    initial, R = evaluate_all(), []
    for epoch, task in enumerate(dm.task_of_epoch):
        for inputs, targets in dm.shuffled_loader(dm.train_sets[task], epoch):
            loss = F.cross_entropy(net(inputs).flatten(0, 1), targets.flatten(), ignore_index=pad)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        accs = evaluate_all()
        if epoch in dm.last_epoch_of_task:
            R.append(accs)
    M.all_metrics(R, initial)
    return R


def rate_grid_configs(base: DictConfig) -> list[DictConfig]:
    """The jobs of experiment=rate_sweep, from its own sweeper params."""
    params = base.hydra.sweeper.params
    axes = {key: [float(v) if key != "seed" else int(v) for v in str(values).split(",")] for key, values in params.items()}
    jobs = []
    for point in itertools.product(*axes.values()):
        cfg = base.copy()
        with open_dict(cfg):
            del cfg["hydra"]
            for key, value in zip(axes, point):
                cfg_key = key.split(".")
                node = cfg
                for part in cfg_key[:-1]:
                    node = node[part]
                node[cfg_key[-1]] = value
        jobs.append(cfg)
    return jobs


def main() -> None:
    from hydra import compose, initialize_config_dir

    from bench_paths import CONF

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate-grid", action="store_true", required=True, help="run the 81 trainings of experiment=rate_sweep")
    parser.parse_args()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        base = compose(config_name="config", overrides=["experiment=rate_sweep"], return_hydra_config=True)
    jobs = rate_grid_configs(base)
    start = time.perf_counter()
    for i, cfg in enumerate(jobs, 1):
        train_and_evaluate(cfg)
        if i % 27 == 0:
            print(f"{i}/{len(jobs)} trainings", flush=True)
    print(f"plain loop: {len(jobs)} trainings in {time.perf_counter() - start:.1f} s (imports excluded)")


if __name__ == "__main__":
    main()
