"""The seed HOPE cell against a hand-computed step; every model's causality; the Transformer's layers."""
import math

import pytest
import torch
from hydra.utils import instantiate

from nested_learning.errors import UserError
from nested_learning.models.hope_attention import HopeAttentionLM
from nested_learning.models.seed_hope import SeedHopeCell, SeedHopeLM
from nested_learning.models.transformer import TinyTransformerLM

from .conftest import CONF, compose_config


def _cell(margin: float) -> SeedHopeCell:
    # input width 1, two tracks of width 2: c = [x, s0_0, s0_1, s1_0, s1_1]
    cell = SeedHopeCell(1, 2, {"fast": 0.5, "slow": 0.1}, clamp_margin=margin)
    with torch.no_grad():
        cell.controller.weight.copy_(torch.tensor([[1.0, 0, 0, 0, 0], [0, 0, 0, 0, 0]]))
        cell.controller.bias.copy_(torch.tensor([0.0, 0.5]))
        cell.rate_adapter.weight.copy_(torch.tensor([[0.0, 1, 0, 0, 0], [0, 0, 0, 0, 0]]))
        cell.rate_adapter.bias.zero_()
    return cell


@pytest.mark.parametrize("margin", [0.05, 1.0])
def test_one_step_matches_hand_computation(margin):
    x = torch.tensor([[0.3]])
    states = torch.tensor([[[1.0, -1.0], [0.2, 0.4]]])  # (B=1, k=2, U=2)
    new = _cell(margin).step(x, states)
    h = [math.tanh(0.3), math.tanh(0.5)]
    a0 = 1 / (1 + math.exp(-1.0))  # the adapter reads s0_0 = 1
    rate0 = min(0.5 + 0.5 * a0, 0.5 + margin)  # 0.866 clipped to 0.55 with the seed's margin
    rate1 = 0.1  # the slowest track is protected: its base rate, whatever the adapter says
    expected = torch.tensor([
        [(1 - rate0) * 1.0 + rate0 * h[0], (1 - rate0) * -1.0 + rate0 * h[1]],
        [(1 - rate1) * 0.2 + rate1 * h[0], (1 - rate1) * 0.4 + rate1 * h[1]],
    ])
    torch.testing.assert_close(new[0], expected)


def test_unprotected_slowest_track_follows_the_adapter():
    cell = _cell(1.0)
    cell.protect_slowest = False
    new = cell.step(torch.tensor([[0.3]]), torch.zeros(1, 2, 2))
    rate1 = 0.1 + 0.9 * 0.5  # adapter output sigmoid(0) = 0.5
    torch.testing.assert_close(new[0, 1], rate1 * torch.tanh(torch.tensor([0.3, 0.5])))


def test_output_is_mean_of_tracks_and_any_track_count_works():
    for rates in ({"only": 0.4}, {"a": 0.9, "b": 0.5, "c": 0.2, "d": 0.01}):
        cell = SeedHopeCell(3, 5, rates)
        x = torch.randn(2, 4, 3)
        out = cell(x)
        states = torch.zeros(2, len(rates), 5)
        for t in range(4):
            states = cell.step(x[:, t], states)
        torch.testing.assert_close(out[:, -1], states.mean(dim=1))


@pytest.mark.parametrize("value", [0.0, 1.5, -0.1])
def test_rate_outside_range_names_the_field(value):
    with pytest.raises(UserError, match=rf"rates\.medium={value}: a rate must lie in \(0, 1\]"):
        SeedHopeLM(10, 5, {"fast": 0.6, "medium": value, "slow": 0.02})


def test_unordered_rates_warn_but_run(caplog):
    SeedHopeLM(10, 5, {"fast": 0.1, "medium": 0.3, "slow": 0.02})
    assert "not ordered" in caplog.text


MODELS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))
# Variants whose causality depends on more than the defaults: chunked memories update from a whole
# chunk at once, so a read inside a chunk must not see the chunk's later tokens.
VARIANTS = [
    ("rnn", ["model.cell=lstm"]),
    ("titans", ["model.memory=mlp", "model.chunk_size=4"]),
    ("hope_nl", ["model.chunk_size=4", "model.momentum=0.5"]),
    ("deltanet", ["model.chunk_size=4"]),
    ("linear_attention", ["model.denominator=true"]),
    # token-clock CMS: level updates inside forward (a large inner rate, so they matter)
    ("cms", ["model.cms_clock=token", "model.cms_inner_lr=0.01", "model.periods=[1,2,4]"]),
    ("hope_attention", ["model.cms_clock=token", "model.cms_state=carry", "model.cms_inner_lr=0.01"]),
]


def _logits_before_and_after_changing_token_5(*overrides: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The net of a composed config (as test_configs builds it), in eval mode, on tokens and on the
    same tokens with position 5 changed."""
    torch.manual_seed(0)
    cfg = compose_config(*overrides)
    net = instantiate({k: v for k, v in cfg.model.items() if k != "name"}, vocab_size=12, max_len=9, _convert_="all")
    tokens = torch.randint(1, 12, (2, 9))
    changed = tokens.clone()
    changed[:, 5] = tokens[:, 5] % 11 + 1
    with torch.no_grad():
        return net.eval()(tokens), net(changed)


@pytest.mark.parametrize("model,overrides", [(m, []) for m in MODELS] + VARIANTS,
                         ids=MODELS + [f"{m}-{'-'.join(o)}" for m, o in VARIANTS])
def test_earlier_logits_ignore_later_tokens(model, overrides):
    before, after = _logits_before_and_after_changing_token_5(f"model={model}", *overrides)
    assert before.shape == (2, 9, 12)
    torch.testing.assert_close(before[:, :5], after[:, :5])  # a position never sees later tokens
    assert not torch.allclose(before[:, 5], after[:, 5])  # ...but does see its own


def test_seed_transformer_leaks_future_tokens(caplog):
    before, after = _logits_before_and_after_changing_token_5("model=transformer", "model.causal=false")
    assert not torch.allclose(before[:, :5], after[:, :5], atol=1e-6)
    assert "each position can see the next token" in caplog.text


@pytest.mark.parametrize("make", [
    lambda: TinyTransformerLM(vocab_size=12, max_len=9, d_model=16, n_layers=3),
    lambda: HopeAttentionLM(vocab_size=12, max_len=9, d_model=16, n_layers=3),
], ids=["transformer", "hope_attention"])
def test_each_layer_starts_with_its_own_weights(make):
    torch.manual_seed(0)
    layers = make().blocks.layers
    assert len(layers) == 3
    for name, first in layers[0].named_parameters():
        if first.dim() < 2:
            continue  # LayerNorm weights and zero-initialised biases start equal by design
        others = [dict(layer.named_parameters())[name] for layer in layers[1:]]
        assert all(not torch.equal(first, other) for other in others), name


@pytest.mark.parametrize("make,message", [
    (lambda: TinyTransformerLM(12, 9, d_model=16, n_heads=3), r"model.n_heads=3: must be >= 1 and divide model.d_model=16"),
    (lambda: TinyTransformerLM(12, 9, n_layers=0), r"model.n_layers=0: must be an integer >= 1"),
    (lambda: HopeAttentionLM(12, 9, d_model=16, n_heads=5), r"model.n_heads=5: must be >= 1 and divide model.d_model=16"),
    (lambda: HopeAttentionLM(12, 9, n_layers=0), r"model.n_layers=0: must be an integer >= 1"),
])
def test_bad_transformer_options_name_the_field(make, message):
    with pytest.raises(UserError, match=message):
        make()
