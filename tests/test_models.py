"""The seed HOPE cell against a hand-computed step; the Transformer's causality."""
import math

import pytest
import torch

from nested_learning.errors import UserError
from nested_learning.models.seed_hope import SeedHopeCell, SeedHopeLM
from nested_learning.models.transformer import TinyTransformerLM


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


def _earlier_logits_move(causal: bool) -> bool:
    torch.manual_seed(0)
    net = TinyTransformerLM(vocab_size=20, max_len=8, causal=causal, positional=causal).eval()
    tokens = torch.randint(2, 20, (1, 8))
    changed = tokens.clone()
    changed[0, 5] = (tokens[0, 5] + 1 - 2) % 18 + 2
    with torch.no_grad():
        before, after = net(tokens), net(changed)
    return not torch.allclose(before[:, :5], after[:, :5], atol=1e-6)


def test_causal_transformer_earlier_logits_ignore_later_tokens():
    assert not _earlier_logits_move(causal=True)


def test_seed_transformer_leaks_future_tokens(caplog):
    assert _earlier_logits_move(causal=False)
    assert "each position can see the next token" in caplog.text
