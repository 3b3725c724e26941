"""CMS (Eq. 70-71): levels update exactly at the multiples of their period, with the chunk's summed
gradients, through the optimizer wrapper alone and through a real Lightning Trainer."""
import copy
from functools import partial

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from nested_learning.errors import UserError
from nested_learning.run.lit_module import ContinualLM
from nested_learning.models.cms import CMS
from nested_learning.models.cms_lm import CMSLM
from nested_learning.models.hope_attention import HopeAttentionLM
from nested_learning.models.transformer import TinyTransformerLM
from nested_learning.optim.multi_frequency import Level, MultiFrequencyOptimizer
from nested_learning.analysis.results import load_results

X = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 1.0], [1.0, 1.0], [0.0, 0.0], [2.0, -1.0]])
C = torch.tensor([1.0, -1.0, 2.0, 0.5, 0.0, 1.0])


@pytest.mark.parametrize("set_to_none", [True, False])
def test_sgd_level_applies_the_sum_of_its_chunk_once_at_each_multiple(set_to_none):
    # loss_n = w . x_n + b c_n, so grad w = x_n and grad b = c_n: the updates can be written by hand.
    w = nn.Parameter(torch.tensor([1.0, -2.0]))
    b = nn.Parameter(torch.tensor(0.0))
    opt = MultiFrequencyOptimizer(partial(torch.optim.SGD, lr=0.5), [b], [Level([w], period=3, lr=0.1)])
    w_after, b_after = [], []
    for x, c in zip(X, C):
        opt.zero_grad(set_to_none=set_to_none)
        (w @ x + b * c).backward()
        opt.step()
        w_after.append(w.detach().clone())
        b_after.append(b.detach().clone())
    # steps 1-2 leave w alone; step 3 applies -0.1 (x1 + x2 + x3) = -0.1 [4, 3]; step 6 -0.1 (x4 + x5 + x6) = -0.1 [3, 0]
    expected = torch.tensor([[1.0, -2.0], [1.0, -2.0], [0.6, -2.3], [0.6, -2.3], [0.6, -2.3], [0.3, -2.3]])
    torch.testing.assert_close(torch.stack(w_after), expected)
    # bit for bit unchanged inside a chunk
    assert all(torch.equal(w_after[n], expected[0]) for n in (0, 1)) and all(torch.equal(w_after[n], w_after[2]) for n in (3, 4))
    torch.testing.assert_close(torch.stack(b_after), torch.cumsum(-0.5 * C, 0))  # b steps every call with the optimizer's lr
    assert opt.updates == [2] and opt.clock == 6
    # total change of w: [0.3, -2.3] - [1, -2] = [-0.7, -0.3], norm sqrt(0.58)
    assert opt.report() == [{"level": 1, "period": 3, "lr": 0.1, "updates": 2, "change_norm": pytest.approx(0.58 ** 0.5)}]


def test_saved_state_resumes_mid_chunk_exactly():
    torch.manual_seed(0)
    make = lambda: nn.Parameter(torch.tensor([1.0, -2.0]))  # noqa: E731
    w1, w2 = make(), make()
    factory = partial(torch.optim.Adam, lr=0.1)
    first = MultiFrequencyOptimizer(factory, [], [Level([w1], period=4)])
    for x in X[:2]:
        first.zero_grad()
        (w1 @ x).backward()
        first.step()
    second = MultiFrequencyOptimizer(factory, [], [Level([w2], period=4)])
    second.load_state_dict(first.state_dict())
    for x in X[2:]:
        for w, opt in ((w1, first), (w2, second)):
            opt.zero_grad()
            (w @ x).backward()
            opt.step()
    assert torch.equal(w1, w2) and second.updates == [1] and second.clock == 6
    assert not torch.equal(w2, make())


def test_report_reads_the_learning_rates_in_force_after_a_load():
    w1, w2 = nn.Parameter(torch.ones(2)), nn.Parameter(torch.ones(2))
    first = MultiFrequencyOptimizer(partial(torch.optim.SGD, lr=0.5), [], [Level([w1], period=2, lr=0.1)])
    second = MultiFrequencyOptimizer(partial(torch.optim.SGD, lr=0.5), [], [Level([w2], period=2, lr=0.2)])
    second.load_state_dict(first.state_dict())  # replaces the inner optimizer's group dicts, lr included
    assert second.report() == [{"level": 1, "period": 2, "lr": 0.1, "updates": 0, "change_norm": 0.0}]
    second.param_groups[-1]["lr"] = 0.3
    assert second.report()[0]["lr"] == 0.3


def test_loading_state_saved_with_other_periods_fails_clearly():
    w1, w2 = nn.Parameter(torch.ones(2)), nn.Parameter(torch.ones(2))
    first = MultiFrequencyOptimizer(partial(torch.optim.SGD, lr=0.5), [], [Level([w1], period=3)])
    second = MultiFrequencyOptimizer(partial(torch.optim.SGD, lr=0.5), [], [Level([w2], period=4)])
    with pytest.raises(ValueError, match=r"saved state has level periods \[3\] but this optimizer has \[4\]"):
        second.load_state_dict(first.state_dict())


class _Recorder(pl.Callback):
    """Each CMS level's parameters before training and after every optimizer step."""

    def __init__(self):
        self.snapshots = []

    def _take(self, module):
        chains = [m for m in module.net.modules() if isinstance(m, CMS)]
        levels = [[p.detach().clone() for c in chains for p in c.levels[i].parameters()] for i in range(len(chains[0].levels))]
        self.snapshots.append((levels, module.net.embed.weight.detach().clone()))

    def on_train_start(self, trainer, module):
        self._take(module)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self._take(module)


class _NextToken(ContinualLM):
    """ContinualLM (its configure_optimizers hook included) with a training step that needs no task sequence."""

    def training_step(self, batch, batch_idx):
        inputs, targets = batch
        return self.next_token_loss(self(inputs), targets)


def test_levels_change_exactly_at_multiples_of_their_period_in_a_real_trainer():
    torch.manual_seed(0)
    periods, rates = [1, 2, 3, 2], [1e-2, 1e-2, 1e-2, 0.0]  # the last level has rate 0: it must never change
    net = CMSLM(vocab_size=12, max_len=6, d_model=16, d_ff=16, n_layers=2, periods=periods, level_lrs=rates)
    tokens = torch.randint(1, 12, (16, 7))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(tokens[:, :-1], tokens[:, 1:]), batch_size=4)
    recorder = _Recorder()
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", logger=False, callbacks=[recorder], enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(_NextToken(net, partial(torch.optim.Adam, lr=1e-3), pad_id=0), train_dataloaders=loader)
    steps = len(recorder.snapshots) - 1
    assert steps == 8 and trainer.global_step == 8
    for level, (period, rate) in enumerate(zip(periods, rates)):
        changed = [n for n in range(1, steps + 1) if any(
            not torch.equal(a, b) for a, b in zip(recorder.snapshots[n - 1][0][level], recorder.snapshots[n][0][level]))]
        expected = [n for n in range(1, steps + 1) if n % period == 0] if rate > 0 else []
        assert changed == expected, f"level {level + 1} (period {period}, lr {rate})"
    assert all(not torch.equal(a[1], b[1]) for a, b in zip(recorder.snapshots, recorder.snapshots[1:]))  # embeddings: every step
    assert [lv["updates"] for lv in net.extra_results([])["cms_levels"]] == [8 // p for p in periods]


def _fit(net, loader, epochs, ckpt_path=None, save_to=None):
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    module = _NextToken(net, partial(torch.optim.Adam, lr=1e-2), pad_id=0)
    trainer.fit(module, train_dataloaders=loader, ckpt_path=ckpt_path)
    if save_to is not None:
        trainer.save_checkpoint(save_to)
    return module


def test_lightning_checkpoint_resumes_a_half_summed_chunk(tmp_path):
    """Stopped after step 4 with a period-3 level one gradient into its second chunk, a resumed fit
    must end where an uninterrupted one does: the partial sum and the clock travel in the checkpoint."""
    torch.manual_seed(0)
    make = lambda: CMSLM(vocab_size=12, max_len=6, d_model=16, d_ff=16, n_layers=1, periods=[1, 3], dropout=0.0)  # noqa: E731
    straight = make()
    resumed = copy.deepcopy(straight)
    tokens = torch.randint(1, 12, (16, 7))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(tokens[:, :-1], tokens[:, 1:]), batch_size=4)
    _fit(straight, loader, epochs=2)
    _fit(copy.deepcopy(resumed), loader, epochs=1, save_to=tmp_path / "half.ckpt")
    _fit(resumed, loader, epochs=2, ckpt_path=tmp_path / "half.ckpt")
    for (name, a), b in zip(straight.named_parameters(), resumed.parameters()):
        torch.testing.assert_close(a, b, msg=name)
    assert resumed.cms_optimizer.updates == [8, 2] and resumed.cms_optimizer.clock == 8


def test_one_level_hope_attention_is_the_transformer():
    torch.manual_seed(0)
    kwargs = dict(vocab_size=12, max_len=9, d_model=16, n_heads=2, d_ff=24, n_layers=2)
    transformer, hope = TinyTransformerLM(**kwargs).eval(), HopeAttentionLM(**kwargs, periods=[1]).eval()
    state = {}
    for key, value in transformer.state_dict().items():
        state[key.replace("linear1", "cms.levels.0.linear1").replace("linear2", "cms.levels.0.linear2")] = value
    hope.load_state_dict(state)
    tokens = torch.randint(0, 12, (3, 9))
    with torch.no_grad():  # eval + no_grad is where nn.TransformerEncoderLayer takes its fused fast path
        torch.testing.assert_close(hope(tokens), transformer(tokens))


def test_independent_levels_are_a_learned_convex_combination():
    torch.manual_seed(0)
    cms = CMS(8, 8, [1, 4], variant="independent")
    with torch.no_grad():
        cms.mix_logits.copy_(torch.tensor([0.0, 1.0]))
    h = torch.randn(2, 3, 8)
    w = torch.softmax(torch.tensor([0.0, 1.0]), 0)
    torch.testing.assert_close(cms(h), h + w[0] * cms.levels[0](h) + w[1] * cms.levels[1](h))
    # w is trained every optimizer step, whatever the levels' periods: it gets a gradient and moves each step.
    net = CMSLM(vocab_size=12, max_len=6, d_model=16, d_ff=16, n_layers=2, periods=[2, 4], cms_variant="independent")
    opt = net.configure_optimizer(partial(torch.optim.Adam, lr=1e-2))
    mixers = [m.mix_logits for m in net.modules() if isinstance(m, CMS)]
    assert len(mixers) == 2
    tokens = torch.randint(1, 12, (4, 7))
    for step in range(1, 5):
        before = [w.detach().clone() for w in mixers]
        opt.zero_grad()
        nn.functional.cross_entropy(net(tokens[:, :-1]).flatten(0, 1), tokens[:, 1:].flatten()).backward()
        assert all(w.grad is not None and w.grad.abs().sum() > 0 for w in mixers), f"step {step}"
        opt.step()
        assert all(not torch.equal(a, w) for a, w in zip(before, mixers)), f"step {step}"


@pytest.mark.parametrize("kwargs,message", [
    ({"periods": [1, 0]}, r"model.periods=\[1, 0\]: each period must be an integer >= 1"),
    ({"periods": []}, r"model.periods=\[\]: give at least one level period"),
    ({"periods": [1, 4], "level_lrs": [1e-3]}, r"model.level_lrs has 1 entries but model.periods has 2"),
    ({"periods": [1, 4], "level_lrs": [1e-3, -1.0]}, r"each rate must be a number >= 0 or null"),
    ({"periods": [1, 4], "variant": "nested"}, r"model.cms_variant=nested: choose one of sequential, independent"),
])
def test_bad_cms_options_name_the_field(kwargs, message):
    with pytest.raises(UserError, match=message):
        CMS(8, 8, **kwargs)


def test_bad_period_stops_a_run_before_training(run_in_process):
    with pytest.raises(UserError, match=r"model.periods=\[0, 2\]"):
        run_in_process("model=cms", "model.periods=[0,2]")


@pytest.mark.parametrize("model,overrides,periods", [
    ("cms", ["model.periods=[1,2,5]", "model.level_lrs=[1e-3,2e-3,null]"], [1, 2, 5]),
    ("cms", ["model.periods=[1,3]", "model.cms_variant=independent"], [1, 3]),
    ("hope_attention", ["model.periods=[2,4]"], [2, 4]),
])
def test_cms_models_train_end_to_end_and_report_level_updates(run_in_process, tmp_path, model, overrides, periods):
    run_in_process(f"model={model}", "epochs_per_task=[1,2]", *overrides)  # 2 steps per epoch: 6 optimizer steps
    saved = load_results(tmp_path / "run")
    assert saved["status"] == "complete" and len(saved["accuracy_matrix"]) == 2
    levels = saved["model_state"]["cms_levels"]
    assert saved["model_state"]["optimizer_steps"] == 6
    assert [lv["period"] for lv in levels] == periods
    assert [lv["updates"] for lv in levels] == [6 // p for p in periods]
    if "model.level_lrs=[1e-3,2e-3,null]" in overrides:
        assert [lv["lr"] for lv in levels] == [1e-3, 2e-3, saved["config"]["optimizer"]["lr"]]
