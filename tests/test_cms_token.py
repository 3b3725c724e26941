"""CMS on the token clock (Eq. 71 with tokens as steps): each level's fast state changes exactly after
token multiples of its period, by plain SGD on the chunk's summed local error terms; the learned
parameters are only the initial state; carry mode carries the change across sequences and never
learns from evaluation."""
import copy
from functools import partial

import pytest
import pytorch_lightning as pl
import torch

from nested_learning.errors import UserError
from nested_learning.models import cms as cms_module
from nested_learning.models.cms import CMS
from nested_learning.models.cms_lm import CMSLM
from nested_learning.analysis.results import load_results

from .test_cms import _fit, _NextToken


def reference_level(w1, b1, w2, b2, x, period, lr):
    """Eq. 71 written out token by token with autograd for the inner gradient (one sequence x (T, D)).

    Returns the reads MLP_theta(t)(x_t) and the state theta(t) used at each token, for tokens 1..T.
    """
    theta = [w1, b1, w2, b2]
    reads, states, chunk_loss = [], [], 0.0

    def mlp(params, k):
        a1, c1, a2, c2 = params
        return torch.relu(k @ a1.T + c1) @ a2.T + c2

    frozen = [p.detach().clone().requires_grad_() for p in theta]
    for t in range(x.shape[0]):
        reads.append(mlp([p0 + (f.detach() - p0.detach()) for p0, f in zip(theta, frozen)], x[t]))
        states.append([f.detach().clone() for f in frozen])
        if t >= 1:
            chunk_loss = chunk_loss + 0.5 * ((x[t - 1] + mlp(frozen, x[t - 1]) - x[t]) ** 2).sum()
        if (t + 1) % period == 0:  # after token t+1 (1-based), a multiple of the period: one SGD step
            grads = torch.autograd.grad(chunk_loss, frozen)
            frozen = [(f - lr * g).detach().requires_grad_() for f, g in zip(frozen, grads)]
            chunk_loss = 0.0
    return torch.stack(reads), states


def record_runs(monkeypatch) -> list:
    """Every LevelRun made by a CMS forward, as (period, run)."""
    runs = []
    original = cms_module.run_level

    def recording(*args):
        runs.append((args[3], original(*args)))
        return runs[-1][1]

    monkeypatch.setattr(cms_module, "run_level", recording)
    return runs


def test_one_level_matches_a_token_by_token_sgd_reference_with_a_partial_last_chunk(monkeypatch):
    torch.manual_seed(0)
    cms = CMS(3, 4, periods=[2], clock="token", inner_lr=0.1).double()
    level = cms.levels[0]
    x = torch.randn(2, 5, 3, dtype=torch.float64)  # T = 5: chunks {1,2}, {3,4} and a partial {5}
    runs = record_runs(monkeypatch)
    y = cms(x)
    ((_, run),) = runs
    params = [level.linear1.weight, level.linear1.bias, level.linear2.weight, level.linear2.bias]
    for b in range(2):
        reads, states = reference_level(*params, x[b], period=2, lr=0.1)
        torch.testing.assert_close(y[b], x[b] + reads)
        for t in range(5):  # theta_0 + delta in force at each token
            got = [p.detach() + d[b] for p, d in zip(params, run.state(run.applied[t]).tensors())]
            for g, e in zip(got, states[t]):
                torch.testing.assert_close(g, e)
        # the partial chunk (token 5) is read but never applied: the end state is the one after token 4
        end = [p.detach() + d[b] for p, d in zip(params, run.state().tensors())]
        for g, e in zip(end, states[4]):
            torch.testing.assert_close(g, e)
    assert run.updates == 2 and run.applied == [0, 0, 1, 1, 3]  # error terms: token 2, then tokens 3 and 4
    assert run.state(0).w1.abs().sum() == 0  # tokens 1-2: theta_0
    # the carried mean and the per-sequence norms agree with the materialised states
    ends = run.state()
    for mean, per_row in zip(run.mean_end().tensors(), ends.tensors()):
        torch.testing.assert_close(mean, per_row.mean(0))
    norms = torch.sqrt(sum(t.flatten(1).pow(2).sum(-1) for t in ends.tensors()))
    torch.testing.assert_close(run.change_norms(), norms)
    # evaluation under no_grad reads from the chunk loop itself: the same outputs
    with torch.no_grad():
        torch.testing.assert_close(cms(x), y)
    # the parameters are the initial state: never written by the in-context updates
    before = [p.detach().clone() for p in params]
    cms(x)
    assert all(torch.equal(p, q) for p, q in zip(params, before))


def test_gradients_reach_the_initial_weights_through_every_read():
    torch.manual_seed(0)
    cms = CMS(3, 4, periods=[2], clock="token", inner_lr=0.1).double()
    level = cms.levels[0]
    params = [level.linear1.weight, level.linear1.bias, level.linear2.weight, level.linear2.bias]
    x = torch.randn(1, 5, 3, dtype=torch.float64)
    cms(x).pow(2).sum().backward()
    got = [p.grad.clone() for p in params]
    reads, _ = reference_level(*params, x[0], period=2, lr=0.1)
    expected = torch.autograd.grad((x[0] + reads).pow(2).sum(), params)
    assert all(g.abs().sum() > 0 for g in got)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e)


def test_padding_writes_nothing(monkeypatch):
    torch.manual_seed(0)
    cms = CMS(3, 4, periods=[2], clock="token", inner_lr=0.1)
    x = torch.randn(1, 6, 3)
    valid = torch.tensor([[True, True, True, False, False, False]])
    runs = record_runs(monkeypatch)
    cms(x, valid)
    run = runs[0][1]
    w1 = [run.state(n).w1 for n in run.applied]  # the state each token was read with
    assert not torch.allclose(w1[2], w1[1])  # the update after token 2 (term of token 2)
    # the chunk {3, 4} has the term of token 3 only; {5, 6} is all padding: no change
    assert not torch.allclose(w1[4], w1[3])
    torch.testing.assert_close(run.state().w1, w1[4], rtol=0, atol=1e-7)
    cms(x, torch.tensor([[True, True, False, False, False, False]]))
    run = runs[1][1]
    only_token_2 = CMS(3, 4, periods=[2], clock="token", inner_lr=0.1)
    only_token_2.load_state_dict(cms.state_dict())
    runs.clear()
    only_token_2(x[:, :3], torch.tensor([[True, True, True]]))
    torch.testing.assert_close(run.state().w1, runs[0][1].state().w1, rtol=0, atol=1e-7)  # only token 2's term


def _loader(seed=0, n=16, T=7):
    tokens = torch.randint(2, 12, (n, T + 1), generator=torch.Generator().manual_seed(seed))
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(tokens[:, :-1], tokens[:, 1:]), batch_size=4)


def test_fast_weights_change_exactly_at_token_multiples_in_a_real_trainer(monkeypatch):
    torch.manual_seed(0)
    periods = [1, 2, 3]
    net = CMSLM(vocab_size=12, max_len=7, d_model=8, d_ff=8, n_layers=2, periods=periods, cms_clock="token", cms_inner_lr=1e-2)
    runs = record_runs(monkeypatch)
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(_NextToken(net, partial(torch.optim.Adam, lr=1e-3), pad_id=0), train_dataloaders=_loader())
    assert len(runs) == 4 * 2 * 3  # 4 steps x 2 layers x 3 levels
    for period, run in runs:
        # token t (1-based) is read with a new state iff t - 1 is a multiple of the period, from 2 on
        # (token 1 has no error term: with period 1 the boundary after it has nothing to apply)
        w1 = [run.state(n).w1 for n in run.applied]
        changed = [t for t in range(2, 8) if not torch.equal(w1[t - 1], w1[t - 2])]
        assert changed == [t for t in range(3, 8) if (t - 1) % period == 0], f"period {period}"
        assert run.updates == len(changed) + (7 % period == 0)  # the update after token 7 is read by no token
    levels = net.extra_results([])["cms_levels"]
    assert [lv["updates"] for lv in levels] == [4 * 6, 4 * 3, 4 * 2]  # per training forward: after tokens 2..7, 2 4 6, 3 6
    assert [lv["outer_updates"] for lv in levels] == [4, 4, 4]  # initial weights: every optimizer step


def test_carried_state_moves_in_training_never_in_evaluation_and_resumes_exactly(tmp_path):
    torch.manual_seed(0)
    make = lambda: CMSLM(vocab_size=12, max_len=7, d_model=8, d_ff=8, n_layers=1, periods=[1, 3],  # noqa: E731
                         dropout=0.0, cms_clock="token", cms_state="carry", cms_inner_lr=1e-2)
    straight = make()
    resumed = copy.deepcopy(straight)
    loader = _loader()
    module = _fit(straight, loader, epochs=2)
    chain = straight.cms_chains()[0]
    carried = {k: v.clone() for k, v in straight.state_dict().items() if ".carried." in k}
    assert len(carried) == 8 and all(v.abs().sum() > 0 for v in carried.values())
    inputs = next(iter(loader))[0]
    # evaluation reads from the carried state (its output differs from a reset state's) and changes nothing
    first = module.evaluate(loader)
    assert module.evaluate(loader) == first
    assert all(torch.equal(v, straight.state_dict()[k]) for k, v in carried.items())
    counts = chain.inner_updates.clone()
    zeroed = copy.deepcopy(straight)
    for level in zeroed.cms_chains()[0].carried:
        for buffer in level.buffers():
            buffer.zero_()
    with torch.no_grad():
        out_carry, out_reset = straight.eval()(inputs), zeroed.eval()(inputs)
    assert not torch.equal(out_carry, out_reset)  # evaluation reads the carried state
    assert torch.equal(chain.inner_updates, counts)
    # a checkpoint after epoch 1 holds the carried state: the resumed fit ends where the straight one does
    _fit(copy.deepcopy(resumed), loader, epochs=1, save_to=tmp_path / "half.ckpt")
    _fit(resumed, loader, epochs=2, ckpt_path=tmp_path / "half.ckpt")
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
    assert [lv["updates"] for lv in resumed.extra_results([])["cms_levels"]] == [8 * 6, 8 * 2]


def test_carry_all_lets_evaluation_write_the_carried_state_and_says_so():
    torch.manual_seed(0)
    kwargs = dict(vocab_size=12, max_len=7, d_model=8, d_ff=8, n_layers=1, periods=[1, 3], dropout=0.0,
                  cms_clock="token", cms_inner_lr=1e-2)
    carry = CMSLM(**kwargs, cms_state="carry")
    carry_all = CMSLM(**kwargs, cms_state="carry_all")
    carry_all.load_state_dict(carry.state_dict())
    inputs = next(iter(_loader()))[0]
    with torch.no_grad():
        carry.eval()(inputs), carry_all.eval()(inputs)
    untouched = [b.abs().sum() for lv in carry.cms_chains()[0].carried for b in lv.buffers()]
    written = [b.abs().sum() for lv in carry_all.cms_chains()[0].carried for b in lv.buffers()]
    assert all(v == 0 for v in untouched) and all(v > 0 for v in written)
    assert list(carry_all.cms_chains()[0].inner_updates) == [6, 2]  # after tokens 1..6, and 3 6 (one sequence of 7)
    carry_all.configure_optimizer(lambda ps: torch.optim.SGD(ps, lr=0.1))  # extra_results reports through it
    assert "asked for with cms_state=carry_all" in carry_all.extra_results([])["evaluation_may_change"]


def test_reset_state_is_not_in_the_state_dict_and_carry_is():
    kwargs = dict(vocab_size=12, max_len=7, d_model=8, d_ff=8, n_layers=1, periods=[1, 3], cms_clock="token")
    assert not any("carried" in k for k in CMSLM(**kwargs).state_dict())
    assert sum("carried" in k for k in CMSLM(**kwargs, cms_state="carry").state_dict()) == 8


@pytest.mark.parametrize("kwargs,message", [
    ({"clock": "tokens"}, r"model.cms_clock=tokens: choose one of step, token"),
    ({"clock": "token", "state": "keep"}, r"model.cms_state=keep: choose one of reset, carry, carry_all"),
    ({"state": "carry"}, r"model.cms_state=carry needs model.cms_clock=token"),
    ({"clock": "token", "inner_lr": [0.1]}, r"model.cms_inner_lr=\[0.1\]: give one number >= 0, or a list of 2"),
    ({"clock": "token", "inner_lr": -1.0}, r"model.cms_inner_lr=-1.0: give one number >= 0"),
])
def test_bad_clock_options_name_the_allowed_values(kwargs, message):
    with pytest.raises(UserError, match=message):
        CMS(8, 8, [1, 4], **kwargs)


def test_bad_clock_stops_a_run_with_one_line(run_in_process):
    with pytest.raises(UserError, match=r"model.cms_clock=tokens: choose one of step, token"):
        run_in_process("model=cms", "model.cms_clock=tokens")


@pytest.mark.parametrize("model,overrides", [
    ("cms", ["model.cms_clock=token", "model.cms_state=carry"]),
    ("hope_attention", ["model.cms_clock=token"]),
    ("cms", []),
])
def test_results_record_clock_scope_updates_change_and_level_cosines(run_in_process, tmp_path, model, overrides):
    run_in_process(f"model={model}", "epochs_per_task=1", *overrides)  # commute: 2 tasks x 2 steps
    saved = load_results(tmp_path / "run")
    state = saved["model_state"]
    token = "model.cms_clock=token" in overrides
    assert state["cms_clock"] == ("token" if token else "step")
    assert state["cms_state"] == ("carry" if "model.cms_state=carry" in overrides else "reset" if token else None)
    assert "discarded" in state["evaluation_may_change"] if token else state["evaluation_may_change"].startswith("nothing")
    levels = state["cms_levels"]
    if token:
        assert [lv["period"] for lv in levels] == [1, 3, 6]
        assert levels[0]["updates"] > levels[1]["updates"] > levels[2]["updates"] > 0
        assert all(lv["fast_change_norm"] > 0 for lv in levels)
    else:
        assert [lv["updates"] for lv in levels] == [4, 1, 0]
    assert all(lv["change_norm"] > 0 for lv in levels[:2])
    cosines = state["cms_level_cosine"]
    assert set(cosines) == {f"layer{n}/level{i}-level{j}" for n in (1, 2) for i, j in ((1, 2), (1, 3), (2, 3))}
    assert all(-1 <= c <= 1 for c in cosines.values())


def test_diagnostics_reach_tensorboard(run_in_process, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_in_process("model=cms", "model.cms_clock=token", "epochs_per_task=1", "logger=tensorboard",
                   "logger.save_dir=" + str(tmp_path / "run"))
    (events_dir,) = {p.parent for p in (tmp_path / "run").rglob("events.out.tfevents.*")}
    scalars = set(EventAccumulator(str(events_dir)).Reload().Tags()["scalars"])
    assert {"model_state/cms_levels/1/updates", "model_state/cms_levels/3/fast_change_norm",
            "model_state/cms_levels/2/change_norm", "model_state/cms_level_cosine/layer2/level1-level3"} <= scalars


def test_diagnostics_script_averages_levels_over_seeds(tmp_path):
    import json

    from .conftest import call_script

    for seed, (updates, cosine) in enumerate([(10, 0.2), (20, 0.4)]):
        job = tmp_path / f"{seed}_cms_arm=token_carry,seed={seed}"
        (job / ".hydra").mkdir(parents=True)
        levels = [{"level": 1, "period": 1, "lr": 1e-3, "updates": updates, "change_norm": 1.0, "fast_change_norm": 2.0 * (seed + 1)},
                  {"level": 2, "period": 3, "lr": 1e-3, "updates": updates // 2, "change_norm": 3.0, "fast_change_norm": 1.0}]
        state = {"cms_clock": "token", "cms_state": "carry", "cms_levels": levels,
                 "cms_level_cosine": {"layer1/level1-level2": cosine, "layer2/level1-level2": cosine + 0.2}}
        (job / "results.json").write_text(json.dumps({
            "model": "cms", "seed": seed, "status": "complete", "overrides": ["cms_arm=token_carry", f"seed={seed}"],
            "metrics": {"acc": 0.5, "bwt": 0.0, "fwt": 0.0, "forgetting": 0.0}, "model_state": state}))
    out = call_script("cms_diagnostics.py", tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "model=cms  (n=2, clock token, state carry)",  # what every run shares is left out, as in every report
        "  level 1: period 1, updates 15, change 1.000, in-context change 3.000",
        "  level 2: period 3, updates 8, change 3.000, in-context change 1.000",  # (5 + 10) / 2 = 7.5, printed .0f
        "  cosine level1-level2: +0.400",  # layers and seeds: (0.2 + 0.4 + 0.4 + 0.6) / 4
    ]


@pytest.mark.parametrize("model", ["titans", "hope_nl", "hope_attention"])
def test_every_cms_model_takes_the_token_clock(model):
    from .conftest import compose_config
    from hydra.utils import instantiate

    cfg = compose_config(f"model={model}", "model.cms_clock=token", "model.cms_state=carry", "model.periods=[1,2]")
    net = instantiate({k: v for k, v in cfg.model.items() if k != "name"}, vocab_size=12, max_len=9, _convert_="all")
    chains = net.cms_chains()
    assert chains and all(c.clock == "token" and c.state == "carry" for c in chains)
    tokens = torch.randint(2, 12, (3, 9))
    net.train()(tokens)
    assert all(c.carried[1].w1.abs().sum() > 0 for c in chains)  # the training forward moved every carried state
    assert [int(n) for n in chains[0].inner_updates] == [8, 4]
