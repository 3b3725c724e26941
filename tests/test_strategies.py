"""Continual-learning strategies: reservoir sampling, the EWC penalty and Fisher, what joint and
replay training serve, and every strategy end to end."""
import json
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from scipy import stats

from nested_learning.data.datamodule import TaskSequenceDataModule
from nested_learning.data.tasks import from_sentences
from nested_learning.errors import UserError
from nested_learning.run.lit_module import ContinualLM
from nested_learning.strategies.base import Naive
from nested_learning.strategies.ewc import EWC, empirical_fisher, ewc_penalty
from nested_learning.strategies.joint import Joint
from nested_learning.strategies.lwf import LwF
from nested_learning.strategies.replay import Replay, ReservoirBuffer

from .conftest import compose_config

STRATEGIES = ("naive", "replay", "ewc", "lwf", "joint")


def three_tasks(strategy, epochs=2, batch_size=4, seed=0):
    sequence = from_sentences(
        "abc",
        {"A": ["a one", "a two", "a three"], "B": ["b one", "b two"], "C": ["c one", "c two", "c three", "c four"]},
        repeats=3,
    )
    return TaskSequenceDataModule(sequence, epochs, batch_size, seed, strategy)


def rows(dataset) -> list[tuple[int, ...]]:
    return [tuple(x.tolist()) for x in dataset.tensors[0]]


def epoch_batches(dm, epoch) -> list[list[tuple[int, ...]]]:
    """The input rows of every batch the train loader serves at `epoch`, then the epoch ends."""
    dm.trainer = SimpleNamespace(current_epoch=epoch, datamodule=dm, global_rank=0, world_size=1)
    batches = [[tuple(x.tolist()) for x in inputs] for inputs, _ in dm.train_dataloader()]
    dm.strategy.on_train_epoch_end(dm.trainer, None)
    return batches


def test_reservoir_keeps_a_uniform_sample():
    # 3000 streams of items 0..39, offered in loader-sized chunks, through a buffer of 8: every item
    # should end up kept in 8/40 of the streams, the early ones as often as the late ones.
    generator = torch.Generator().manual_seed(0)
    kept = torch.zeros(40)
    for _ in range(3000):
        buffer = ReservoirBuffer(8)
        for start in range(0, 40, 6):
            buffer.add(list(range(start, min(start + 6, 40))), generator)
        kept[buffer.items] += 1
    assert len(buffer.items) == len(set(buffer.items)) == 8 and buffer.seen == 40
    assert kept.sum() == 3000 * 8
    assert stats.chisquare(kept.numpy()).pvalue > 0.01  # expected 600 per item
    assert abs(kept[:20].sum() - kept[20:].sum()) < 0.05 * kept.sum()


def test_reservoir_sample_draws_distinct_stored_items():
    generator = torch.Generator().manual_seed(1)
    buffer = ReservoirBuffer(5)
    buffer.add([10, 11, 12], generator)
    assert sorted(buffer.sample(10, generator)) == [10, 11, 12]  # no more than it holds
    drawn = buffer.sample(2, generator)
    assert len(set(drawn)) == 2 and set(drawn) <= {10, 11, 12}


def test_ewc_penalty_is_zero_at_the_anchor_and_quadratic_in_distance_weighted_by_fisher():
    net = torch.nn.Linear(2, 1, bias=False)
    anchor = {"weight": torch.tensor([[1.0, -2.0]])}
    fisher = {"weight": torch.tensor([[3.0, 0.5]])}

    def penalty_at(weight):
        with torch.no_grad():
            net.weight.copy_(torch.tensor([weight]))
        return ewc_penalty(net.named_parameters(), anchor, fisher, lam=4.0).item()

    assert penalty_at([1.0, -2.0]) == 0.0
    # lam / 2 * F * d^2 = 2 * 3 * 0.1^2 on the first weight
    assert penalty_at([1.1, -2.0]) == pytest.approx(0.06)
    assert penalty_at([1.2, -2.0]) == pytest.approx(0.24)  # twice the distance, four times the penalty
    assert penalty_at([0.8, -2.0]) == pytest.approx(0.24)  # symmetric
    assert penalty_at([1.0, -1.9]) == pytest.approx(0.01)  # same distance, 6x smaller Fisher: 2 * 0.5 * 0.01
    assert penalty_at([1.1, -1.9]) == pytest.approx(0.07)  # coordinates add


def test_empirical_fisher_is_the_mean_squared_gradient_per_sentence():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Embedding(6, 4), torch.nn.Linear(4, 6))
    module = ContinualLM(net, optimizer=None, pad_id=0)
    inputs = torch.tensor([[2, 3, 4], [5, 2, 0]])
    targets = torch.tensor([[3, 4, 1], [2, 1, 0]])
    fisher = empirical_fisher(module, inputs, targets)
    squares = []
    for x, y in zip(inputs, targets):
        net.zero_grad()
        module.next_token_loss(net(x[None]), y[None]).backward()
        squares.append({n: p.grad.clone() ** 2 for n, p in net.named_parameters()})
    for name, _ in net.named_parameters():
        torch.testing.assert_close(fisher[name], (squares[0][name] + squares[1][name]) / 2)
    # not the square of the mean gradient, which cancels where the sentences disagree
    assert not torch.allclose(fisher["1.bias"], ((squares[0]["1.bias"].sqrt() + squares[1]["1.bias"].sqrt()) / 2) ** 2)


def test_online_ewc_decays_the_running_fisher_by_value():
    torch.manual_seed(0)
    dm = three_tasks(EWC(lam=1.0, online=True, decay=0.25))
    ewc, trainer = dm.strategy, SimpleNamespace(datamodule=dm)
    net = torch.nn.Sequential(torch.nn.Embedding(len(dm.vocab), 4), torch.nn.Linear(4, len(dm.vocab)))
    module = ContinualLM(net, optimizer=None, pad_id=dm.vocab.pad_id)

    def fisher_of(task):
        return empirical_fisher(module, *dm.vocab.encode(dm.sequence.tasks[task].train))

    ewc.on_task_end(trainer, module, 0)
    first = fisher_of(0)
    with torch.no_grad():  # as if the second task had been trained
        for p in net.parameters():
            p.add_(0.3 * torch.randn_like(p))
    ewc.on_task_end(trainer, module, 1)
    second = fisher_of(1)
    ((anchor, fisher),) = ewc.anchors
    for name, p in net.named_parameters():
        torch.testing.assert_close(fisher[name], 0.25 * first[name] + second[name])
        torch.testing.assert_close(anchor[name], p.detach())
    assert not torch.allclose(fisher["1.bias"], first["1.bias"] + second["1.bias"])  # the decay did something


def test_lwf_is_zero_when_the_student_is_its_teacher_and_trains_only_the_student():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Embedding(6, 4), torch.nn.Linear(4, 6))
    module = ContinualLM(net, optimizer=None, pad_id=0)
    lwf = LwF(alpha=0.5, temperature=2.0)
    inputs = torch.tensor([[2, 3, 4], [5, 2, 0]])
    targets = torch.tensor([[3, 4, 1], [2, 1, 0]])
    assert lwf.loss_term(module, inputs, targets, module(inputs), 5.0) is None  # no teacher during the first task
    lwf.on_task_end(None, module, 0)
    assert lwf.loss_term(module, inputs, targets, module(inputs), 5.0).item() == pytest.approx(0.0, abs=1e-7)

    with torch.no_grad():  # the student moves on
        for p in net.parameters():
            p.add_(0.5 * torch.randn_like(p))
    logits = module(inputs)
    term = lwf.loss_term(module, inputs, targets, logits, 5.0)
    teacher_logits = lwf.teacher(inputs)
    # alpha * T^2 * KL(teacher || student) at temperature T, averaged over the 5 non-padding positions
    kl = torch.nn.functional.kl_div(
        torch.log_softmax(logits / 2, -1), torch.log_softmax(teacher_logits / 2, -1), log_target=True, reduction="none"
    ).sum(-1)
    assert term.item() == pytest.approx(0.5 * 4 * kl[targets != 0].mean().item(), rel=1e-5) and term.item() > 0
    teacher_before = {n: p.clone() for n, p in lwf.teacher.named_parameters()}
    term.backward()
    assert all(p.grad is None for p in lwf.teacher.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
    for name, p in lwf.teacher.named_parameters():
        assert torch.equal(p, teacher_before[name]) and not p.requires_grad


def test_joint_serves_every_task_seen_so_far_once_per_epoch():
    dm = three_tasks(Joint())
    task_rows = [rows(ds) for ds in dm.train_sets]
    for epoch, task in enumerate(dm.task_of_epoch):
        served = [row for batch in epoch_batches(dm, epoch) for row in batch]
        expected = [row for t in range(task + 1) for row in task_rows[t]]
        assert sorted(served) == sorted(expected), f"epoch {epoch} (task {task})"


def test_naive_serves_only_the_current_task():
    dm = three_tasks(Naive())
    for epoch, task in enumerate(dm.task_of_epoch):
        served = [row for batch in epoch_batches(dm, epoch) for row in batch]
        assert sorted(served) == sorted(rows(dm.train_sets[task]))


def test_replay_batches_keep_the_current_task_and_add_a_fraction_from_the_buffer():
    naive = three_tasks(Naive())
    dm = three_tasks(Replay(buffer_size=5, fraction=0.5))
    task_rows = [set(rows(ds)) for ds in dm.train_sets]
    for epoch, task in enumerate(dm.task_of_epoch):
        plain = epoch_batches(naive, epoch)
        mixed = epoch_batches(dm, epoch)
        assert [batch[: len(p)] for batch, p in zip(mixed, plain)] == plain  # the current task, as naive sees it
        for batch, p in zip(mixed, plain):
            replayed = batch[len(p):]
            assert len(replayed) <= len(p)  # fraction 0.5: as many replayed as current, when the buffer has them
            assert all(any(row in task_rows[t] for t in range(task + 1)) for row in replayed)
        if epoch > 0:
            assert all(len(batch) == 2 * len(p) for batch, p in zip(mixed, plain))  # the buffer holds >= 4 by then
        assert len(dm.strategy.buffer.items) == 5
    # by the last task the buffer mixes earlier tasks' examples into the batches
    assert any(row in task_rows[0] | task_rows[1] for batch in mixed for row in batch)


def test_replay_is_deterministic_for_a_seed_and_resumes_from_its_state():
    first = three_tasks(Replay(buffer_size=4, fraction=0.25), seed=3)
    second = three_tasks(Replay(buffer_size=4, fraction=0.25), seed=3)
    other = three_tasks(Replay(buffer_size=4, fraction=0.25), seed=4)
    runs = [[epoch_batches(dm, e) for e in range(4)] for dm in (first, second, other)]
    assert runs[0] == runs[1] and runs[0] != runs[2]
    resumed = three_tasks(Replay(buffer_size=4, fraction=0.25), seed=3)
    resumed.strategy.load_state_dict(first.strategy.state_dict())
    assert epoch_batches(resumed, 4) == epoch_batches(first, 4)


@pytest.mark.parametrize(
    "override,message",
    [
        ("strategy.fraction=1.0", r"strategy.fraction=1.0: .* \[0, 1\)"),
        ("strategy.buffer_size=0", r"strategy.buffer_size=0: must be an integer >= 1"),
    ],
)
def test_bad_replay_settings_name_the_value(run_in_process, override, message):
    with pytest.raises(UserError, match=message):
        run_in_process("strategy=replay", override)


def test_bad_ewc_and_lwf_settings_name_the_value(run_in_process):
    with pytest.raises(UserError, match=r"strategy.lam=-1.0: .* >= 0"):
        run_in_process("strategy=ewc", "strategy.lam=-1.0")
    with pytest.raises(UserError, match=r"strategy.decay=0.0: .* \(0, 1\]"):
        run_in_process("strategy=ewc", "strategy.decay=0.0")
    with pytest.raises(UserError, match=r"strategy.temperature=0: must be > 0"):
        run_in_process("strategy=lwf", "strategy.temperature=0")


def test_every_strategy_runs_end_to_end_and_records_its_settings(run_in_process, tmp_path):
    results = {}
    for name in STRATEGIES:
        run_in_process("model=rnn", "task=commute4", f"strategy={name}", "epochs_per_task=1", run_dir=tmp_path / name)
        results[name] = saved = json.loads((tmp_path / name / "results.json").read_text())
        assert saved["status"] == "complete" and len(saved["accuracy_matrix"]) == 4
        settings = {k: v for k, v in compose_config(f"strategy={name}").strategy.items() if k != "_target_"}
        assert saved["strategy"] == settings and saved["strategy"]["name"] == name
    naive = results["naive"]["loss_matrix"]
    for name in STRATEGIES[1:]:
        # a strategy that left the later tasks' training as naive's would be a no-op
        assert results[name]["loss_matrix"][1:] != naive[1:], name
    for name in ("ewc", "lwf", "joint"):
        assert results[name]["loss_matrix"][0] == naive[0], name  # nothing to protect or add during the first task
    assert results["replay"]["strategy"]["buffer_size"] == 200 and results["ewc"]["strategy"]["lam"] > 0


def test_online_ewc_keeps_one_anchor(tmp_path):
    from nested_learning.train import build
    from omegaconf import OmegaConf

    cfg = compose_config("logger=none", "model=rnn", "task=commute4", "strategy=ewc", "strategy.online=true",
                         "strategy.decay=0.5", "epochs_per_task=1", "checkpoint_every_s=null")
    OmegaConf.update(cfg, "trainer.default_root_dir", str(tmp_path))
    trainer, module, datamodule, _ = build(cfg, tmp_path, {"model": "rnn", "seed": 7}, print_table=False)

    class Snapshot(pl.Callback):  # the parameters at the end of every epoch (= every task here)
        params: list = []

        def on_train_epoch_end(self, trainer, pl_module):
            self.params.append({n: p.detach().clone() for n, p in pl_module.net.named_parameters()})

    trainer.callbacks.append(Snapshot())
    trainer.fit(module, datamodule=datamodule)
    assert len(datamodule.strategy.anchors) == 1
    anchor, _ = datamodule.strategy.anchors[0]
    # The anchor is the last task that has a successor (the third of four): after the final task
    # there is nothing left to protect, so no Fisher or anchor is computed then.
    for name, value in Snapshot.params[-2].items():
        torch.testing.assert_close(anchor[name], value)


@pytest.mark.parametrize("name", ["replay", "ewc", "lwf"])
def test_a_resumed_run_keeps_the_strategy_state(run_in_process, tmp_path, name):
    """Stop mid-way through the second task, resume from the checkpoint: the same matrices as a whole run.

    With the Transformer's dropout, whatever draws on the global RNG outside the checkpoint (e.g. a
    strategy's end-of-task work) would give the resumed run other dropout masks, and other matrices.
    """
    from omegaconf import OmegaConf

    from nested_learning.train import build

    job = ("model=transformer", "task=commute4", f"strategy={name}", "epochs_per_task=2", "checkpoint_every_s=0")
    whole = run_in_process(*job, run_dir=tmp_path / "whole")
    cfg = compose_config("logger=none", *job)
    OmegaConf.update(cfg, "trainer.default_root_dir", str(tmp_path / "cut"))
    trainer, module, datamodule, _ = build(cfg, tmp_path / "cut", {"model": "transformer", "seed": 7}, print_table=False)
    trainer.fit_loop.max_epochs = 3  # the first task's two epochs and one of the second's
    trainer.fit(module, datamodule=datamodule)
    resumed = run_in_process(*job, "resume=true", run_dir=tmp_path / "cut")
    assert resumed["resumed"] == 1
    assert resumed["accuracy_matrix"] == whole["accuracy_matrix"]
    assert resumed["loss_matrix"] == whole["loss_matrix"]
