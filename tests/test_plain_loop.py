"""The benchmarks' reference (scripts/plain_loop.py, a bare PyTorch loop) does the framework's work:
for the same config it gives the same accuracy matrix, so the ratios in docs/benchmarks.md
compare like with like."""
import runpy

import pytest
from omegaconf import open_dict

from .conftest import REPO, compose_config


@pytest.mark.parametrize("overrides", [
    ["experiment=seed", "model=transformer", "epochs_per_task=2"],  # dropout: the loaders must leave the RNG alone
    ["task=formal", "task.language=[parity,aa]", "task.train_size=64", "task.eval_size=20", "eval.split=bin1",
     "eval.metric=sequence", "model=rnn", "epochs_per_task=2"],  # a chosen split and accuracy
])
def test_plain_loop_gives_the_framework_accuracy_matrix(tmp_path, overrides):
    from nested_learning.train import run

    plain_loop = runpy.run_path(str(REPO / "scripts" / "plain_loop.py"))
    cfg = compose_config("logger=none", *overrides)
    with open_dict(cfg):
        cfg.trainer.default_root_dir = str(tmp_path)
    framework = run(cfg.copy(), tmp_path, overrides, print_table=False)["accuracy_matrix"]
    assert plain_loop["train_and_evaluate"](cfg) == framework
