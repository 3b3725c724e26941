"""The fast HOPE cell and the token-only scan against their plain step-by-step references."""
import pytest
import torch

from nested_learning.errors import UserError
from nested_learning.models.seed_hope import (
    SeedHopeCell,
    SeedHopeLM,
    _TrackRecurrence,
    ema_mean_loop,
    ema_mean_scan,
)

# five base rates per setting; k tracks take the k - 1 fastest and the slowest, so k = 3 is the setting itself
SETTINGS = {"seed": [0.6, 0.3, 0.1, 0.05, 0.02], "seed_bad": [0.95, 0.5, 0.3, 0.2, 0.1]}
EXACT = {"rtol": 1e-10, "atol": 1e-12}  # float64: the two paths differ only by rounding


def _rates(setting: str, k: int) -> dict[str, float]:
    values = SETTINGS[setting]
    return {f"r{i}": r for i, r in enumerate(values[: k - 1] + values[-1:])}


def _cell(k: int, setting: str = "seed", margin: float = 0.05, protect: bool = True, **kw) -> SeedHopeCell:
    torch.manual_seed(k)
    cell = SeedHopeCell(4, 3, _rates(setting, k), clamp_margin=margin, protect_slowest=protect, **kw).double()
    with torch.no_grad():  # larger weights than the default init, so tanh and sigmoid leave their linear range
        for p in cell.parameters():
            p.mul_(4.0)
    return cell


def _outputs_and_grads(cell: SeedHopeCell, forward, x: torch.Tensor) -> list[torch.Tensor]:
    """Output, then the gradients of every parameter and of the input, for a fixed random loss."""
    x = x.detach().requires_grad_()
    cell.zero_grad()
    y = forward(x)  # (B, T, U)
    weights = torch.linspace(-1.0, 1.0, y.numel(), dtype=y.dtype).view_as(y)
    (y * weights).sum().backward()
    return [y.detach()] + [p.grad.clone() for p in cell.parameters()] + [x.grad]


def _assert_same(fast, reference, **tol):
    names = ["output", "controller.weight", "controller.bias", "rate_adapter.weight", "rate_adapter.bias", "input"]
    for name, a, b in zip(names, fast, reference, strict=True):
        torch.testing.assert_close(a, b, **tol, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("protect", [True, False])
@pytest.mark.parametrize("margin", [0.05, 1.0])
@pytest.mark.parametrize("setting", ["seed", "seed_bad"])
@pytest.mark.parametrize("length", [1, 7, 33])
@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_fast_path_matches_reference(k, length, setting, margin, protect):
    cell = _cell(k, setting, margin, protect)
    x = torch.randn(3, length, 4, dtype=torch.float64)
    _assert_same(_outputs_and_grads(cell, cell, x), _outputs_and_grads(cell, cell.forward_reference, x), **EXACT)


def test_fast_path_matches_reference_in_float32():
    cell = _cell(3).float()
    x = torch.randn(8, 33, 4)
    _assert_same(_outputs_and_grads(cell, cell, x), _outputs_and_grads(cell, cell.forward_reference, x))


@pytest.mark.parametrize("change", ["clamp_margin", "protect_slowest", "base_rates"])
def test_comparison_sees_a_changed_setting(change):
    """The inputs above exercise the clip, the protection and the rates: changing one shows."""
    cell = _cell(3, "seed", 0.05, True)
    x = torch.randn(3, 7, 4, dtype=torch.float64)
    reference = _outputs_and_grads(cell, cell.forward_reference, x)
    if change == "clamp_margin":
        cell.clamp_margin = 0.1
    elif change == "protect_slowest":
        cell.protect_slowest = False
    else:
        cell.base_rates[0] = 0.61
    with pytest.raises(AssertionError):
        _assert_same(_outputs_and_grads(cell, cell, x), reference, **EXACT)


def test_rate_tie_splits_the_gradient_like_torch_minimum():
    # r = 0.5, a = sigmoid(0) = 0.5, margin 0.25: r + (1 - r) a = 0.75 = r + margin exactly, at every step
    cell = SeedHopeCell(2, 2, {"fast": 0.5, "slow": 0.1}, clamp_margin=0.25).double()
    with torch.no_grad():
        cell.rate_adapter.weight.zero_()
        cell.rate_adapter.bias.zero_()
    x = torch.randn(2, 5, 2, dtype=torch.float64)
    fast = _outputs_and_grads(cell, cell, x)
    _assert_same(fast, _outputs_and_grads(cell, cell.forward_reference, x), **EXACT)
    assert fast[3].abs().sum() > 0  # the tie does pass gradient to the adapter


def test_hand_written_backward_matches_finite_differences():
    torch.manual_seed(0)
    T, B, U, k = 4, 2, 3, 2
    proj = torch.randn(T, B, U + k, dtype=torch.float64, requires_grad=True)
    w_state = torch.randn(U + k, k * U, dtype=torch.float64, requires_grad=True)
    base = torch.tensor([0.6, 0.1], dtype=torch.float64)
    cap = torch.tensor([0.9, 0.1], dtype=torch.float64)
    assert torch.autograd.gradcheck(_TrackRecurrence.apply, (proj, w_state, base, cap))


def test_language_model_logits_match_reference():
    torch.manual_seed(0)
    net = SeedHopeLM(vocab_size=11, max_len=9, rates={"fast": 0.6, "medium": 0.3, "slow": 0.02}, d_model=8).double()
    tokens = torch.randint(0, 11, (4, 9))
    fast = net(tokens)
    net.cell.forward = net.cell.forward_reference
    torch.testing.assert_close(fast, net(tokens), **EXACT)


# --- controller_input="token": the tracks are a linear recurrence, computed by a chunked scan


@pytest.mark.parametrize("margin, protect", [(0.05, True), (1.0, False)])
@pytest.mark.parametrize("setting", ["seed", "seed_bad"])
@pytest.mark.parametrize("length", [1, 7, 33])
@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_token_scan_matches_reference(k, length, setting, margin, protect):
    cell = _cell(k, setting, margin, protect, controller_input="token")
    x = torch.randn(3, length, 4, dtype=torch.float64)
    _assert_same(_outputs_and_grads(cell, cell, x), _outputs_and_grads(cell, cell.forward_reference, x), **EXACT)


@pytest.mark.parametrize("chunk", [1, 3, 16, 64])
def test_scan_matches_loop_for_any_chunk(chunk):
    cell = _cell(3, "seed_bad", controller_input="token")
    x = torch.randn(3, 50, 4, dtype=torch.float64)  # several chunks and a shorter last one
    scan = _outputs_and_grads(cell, lambda x: ema_mean_scan(*cell.token_gates(x), chunk=chunk), x)
    loop = _outputs_and_grads(cell, lambda x: ema_mean_loop(*cell.token_gates(x)), x)
    _assert_same(scan, loop, **EXACT)


def test_scan_survives_rates_of_one_and_underflowing_decays():
    """float32, rate exactly 1 (1 - rate = 0) and 1 - rate = 0.05 over 64-step chunks (0.05^64 underflows)."""
    torch.manual_seed(0)
    h = torch.randn(2, 200, 3).tanh().requires_grad_()
    logits = torch.randn(2, 200, 2, requires_grad=True)
    rate = torch.cat([torch.ones(2, 200, 1), 0.95 + 0.05 * torch.sigmoid(logits)], dim=2)  # (B, T, 3)
    rate = torch.where(torch.rand(2, 200, 3) < 0.1, 1.0, rate)
    results = []
    for run in (lambda: ema_mean_scan(h, rate, chunk=64), lambda: ema_mean_loop(h, rate)):
        h.grad = logits.grad = None
        y = run()
        (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward(retain_graph=True)
        results.append([y.detach(), h.grad.clone(), logits.grad.clone()])
    for a, b in zip(*results):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b)


def test_token_option_changes_the_parameters():
    tracks = SeedHopeCell(4, 3, {"fast": 0.6, "slow": 0.02})
    token = SeedHopeCell(4, 3, {"fast": 0.6, "slow": 0.02}, controller_input="token")
    assert tracks.controller.weight.shape == (3, 4 + 2 * 3)
    assert token.controller.weight.shape == (3, 4)
    assert token.rate_adapter.weight.shape == (2, 4)


def test_bad_controller_input_names_the_field_and_the_choices():
    with pytest.raises(UserError) as err:
        SeedHopeLM(10, 5, {"fast": 0.6, "slow": 0.02}, controller_input="foo")
    assert str(err.value) == "model.controller_input=foo: must be one of tracks, token"
