"""The paper's optimizers (M3, Delta Momentum, DMGD) against hand computations, inside CMS, and through resume."""
import math
from functools import partial

import pytest
import torch
from hydra.utils import instantiate

from nested_learning.errors import UserError
from nested_learning.models.cms_lm import CMSLM
from nested_learning.optim.delta_momentum import DeltaMomentum
from nested_learning.optim.dmgd import DMGD
from nested_learning.optim.m3 import M3
from nested_learning.optim.newton_schulz import QUINTIC, newton_schulz

from .conftest import assert_resume_matches, compose_config, kill_at, run_cli

OPTIMIZERS = ("adam", "adamw", "sgd", "m3", "delta_momentum", "dmgd")


def _steps(optimizer, params, grads_per_step):
    """Apply prescribed gradients: the rule, not a loss, is what these tests check."""
    for grads in grads_per_step:
        for p, g in zip(params, grads):
            p.grad = g.clone()
        optimizer.step()


def _rotation_scaling(a, b):
    """[[a, -b], [b, a]] = r Q with Q orthogonal, r = sqrt(a^2 + b^2): a family closed under addition."""
    return torch.tensor([[a, -b], [b, a]], dtype=torch.float64)


def _quintic_on_orthogonal_family(steps):
    """Newton-Schulz of r Q by hand: normalising gives Q / sqrt(2), then each step maps the
    common singular value s to a s + b s^3 + c s^5."""
    a, b, c = QUINTIC
    s = 1 / math.sqrt(2)
    for _ in range(steps):
        s = a * s + b * s**3 + c * s**5
    return s


def test_m3_three_steps_by_hand_on_2x2():
    g = [_rotation_scaling(0.5, 0.2), _rotation_scaling(-0.1, 0.3), _rotation_scaling(0.2, 0.1)]
    bias_grads = [torch.tensor([0.3, -0.2], dtype=torch.float64), torch.tensor([0.1, 0.4], dtype=torch.float64),
                  torch.tensor([-0.5, 0.2], dtype=torch.float64)]
    w = torch.nn.Parameter(torch.zeros(2, 2, dtype=torch.float64))
    bias = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    lr, alpha, eps, aux_lr = 0.1, 0.5, 1e-8, 0.01
    opt = M3([w, bias], lr=lr, alpha=alpha, frequency=2, eps=eps, aux_lr=aux_lr, aux_betas=(0.9, 0.99))
    _steps(opt, [w, bias], zip(g, bias_grads))

    sigma = _quintic_on_orthogonal_family(5)

    def orthogonalised(m):  # NS(r Q) = sigma Q
        return sigma * m / math.sqrt(m[0, 0].item() ** 2 + m[1, 0].item() ** 2)

    expected = torch.zeros(2, 2, dtype=torch.float64)
    fast = torch.zeros(2, 2, dtype=torch.float64)
    second = torch.zeros(2, 2, dtype=torch.float64)
    slow_direction = torch.zeros(2, 2, dtype=torch.float64)  # O2 = NS(0) = 0 for the first chunk (steps 1, 2)
    for t in range(3):
        fast = fast + g[t]
        second = second + g[t] ** 2
        expected = expected - lr * (orthogonalised(fast) + alpha * slow_direction) / (second.sqrt() + eps)
        if t == 1:  # end of chunk 1: M2 = g1 + g2, used from step 3 on
            slow_direction = orthogonalised(g[0] + g[1])
    assert torch.allclose(w.detach(), expected, atol=1e-6)
    assert torch.allclose(opt.state[w]["slow"], g[0] + g[1])

    # The bias is not a matrix: bias-corrected Adam at aux_lr.
    m = v = torch.zeros(2, dtype=torch.float64)
    expected_bias = torch.zeros(2, dtype=torch.float64)
    for t, gb in enumerate(bias_grads, start=1):
        m, v = 0.9 * m + 0.1 * gb, 0.99 * v + 0.01 * gb**2
        expected_bias -= aux_lr * (m / (1 - 0.9**t)) / ((v / (1 - 0.99**t)).sqrt() + eps)
    assert torch.allclose(bias.detach(), expected_bias, atol=1e-12)


def test_delta_momentum_three_steps_by_hand_on_2x2():
    g = [torch.tensor([[0.5, -0.3], [0.2, 0.4]], dtype=torch.float64),
         torch.tensor([[0.1, 0.6], [-0.4, 0.2]], dtype=torch.float64),
         torch.tensor([[-0.3, 0.2], [0.5, 0.1]], dtype=torch.float64)]
    w = torch.nn.Parameter(torch.zeros(2, 2, dtype=torch.float64))
    lr, alpha = 0.1, 0.9
    _steps(DeltaMomentum([w], lr=lr, alpha=alpha), [w], [[x] for x in g])
    identity = torch.eye(2, dtype=torch.float64)
    m = torch.zeros(2, 2, dtype=torch.float64)
    expected = torch.zeros(2, 2, dtype=torch.float64)
    hebbian = torch.zeros(2, 2, dtype=torch.float64)  # plain momentum, for contrast
    expected_hebbian = torch.zeros(2, 2, dtype=torch.float64)
    for x in g:
        m = m @ (alpha * identity - x.T @ x) - lr * x  # Eq. 49, P = I
        expected = expected + m  # Eq. 48
        hebbian = alpha * hebbian - lr * x
        expected_hebbian = expected_hebbian + hebbian
    assert torch.allclose(w.detach(), expected, atol=1e-12)
    assert not torch.allclose(expected, expected_hebbian, atol=1e-3)  # the delta term matters here


def test_delta_momentum_treats_a_vector_as_one_row():
    b = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    grads = [torch.tensor([0.3, -0.4], dtype=torch.float64), torch.tensor([0.2, 0.1], dtype=torch.float64)]
    _steps(DeltaMomentum([b], lr=0.5, alpha=0.8), [b], [[x] for x in grads])
    m1 = -0.5 * grads[0]
    m2 = 0.8 * m1 - torch.dot(m1, grads[1]) * grads[1] - 0.5 * grads[1]  # m g^T g = (m . g) g for one row
    assert torch.allclose(b.detach(), m1 + m2, atol=1e-12)


def test_dmgd_three_steps_by_hand_on_2x2():
    g = [torch.tensor([[0.5, -0.3], [0.2, 0.4]], dtype=torch.float64),
         torch.tensor([[0.1, 0.6], [0.0, 0.0]], dtype=torch.float64),  # a zero row: its key stays zero
         torch.tensor([[-0.3, 0.2], [0.5, 0.1]], dtype=torch.float64)]
    hidden, lr, alpha = 3, 0.2, 0.9
    w = torch.nn.Parameter(torch.zeros(2, 2, dtype=torch.float64))
    _steps(DMGD([w], lr=lr, alpha=alpha, hidden=hidden), [w], [[x] for x in g])
    # The documented initial state: B = 0, W2 = 0, W1 from a generator seeded by the parameter's position (0).
    w1_init = torch.randn(hidden, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    b, w1, w2 = torch.zeros(2, 2, dtype=torch.float64), w1_init.clone(), torch.zeros(2, hidden, dtype=torch.float64)
    expected = torch.zeros(2, 2, dtype=torch.float64)
    for x in g:
        norms = torch.sqrt((x**2).sum(1, keepdim=True))
        k = torch.where(norms > 0, x / norms.clamp_min(1e-300), torch.zeros_like(x))
        a = torch.tanh(k @ w1.T)
        # gradients of <B + tanh(K W1^T) W2^T, G> with respect to B, W2, W1
        d_b, d_w2, d_w1 = x, x.T @ a, ((x @ w2) * (1 - a**2)).T @ k
        b = alpha * b - lr * d_b
        w2 = alpha * w2 - lr * d_w2
        w1 = w1_init + alpha * (w1 - w1_init) - lr * d_w1
        expected = expected + b + torch.tanh(k @ w1.T) @ w2.T
    assert torch.allclose(w.detach(), expected, atol=1e-12)
    # The inner gradients are those of the stated loss: compare the last step's with autograd.
    phi = [t.clone().requires_grad_() for t in (b, w1, w2)]
    loss = ((phi[0] + torch.tanh(k @ phi[1].T) @ phi[2].T) * x).sum()
    auto = torch.autograd.grad(loss, phi)
    a = torch.tanh(k @ w1.T)
    assert torch.allclose(auto[1], ((x @ w2) * (1 - a**2)).T @ k) and torch.allclose(auto[2], x.T @ a)


@pytest.mark.parametrize("shape", [(8, 5), (5, 8), (6, 6)])
def test_newton_schulz_is_close_to_orthogonal_and_keeps_singular_vectors(shape):
    torch.manual_seed(0)
    k = min(shape)
    u, _ = torch.linalg.qr(torch.randn(shape[0], k, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(shape[1], k, dtype=torch.float64))
    spectrum = 7 * torch.logspace(-1, 0, k, dtype=torch.float64)  # condition number 10
    o = newton_schulz(u @ torch.diag(spectrum) @ v.T, steps=5)
    singular = torch.linalg.svdvals(o)
    assert singular.min() > 0.65 and singular.max() < 1.15  # Muon's quintic: S' near I, not exactly I
    rotated = u.T @ o @ v  # U^T (U S' V^T) V = S': diagonal when the singular vectors are kept
    assert torch.allclose(rotated, torch.diag(torch.diagonal(rotated)), atol=1e-10)
    assert singular.max() / singular.min() < 1.7  # from a condition number of 10


def test_m3_slow_memory_changes_only_every_f_updates():
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.zeros(4, 3))
    opt = M3([w], lr=0.01, frequency=4)
    changed = []
    previous = None
    for step in range(1, 13):
        w.grad = torch.randn(4, 3)
        opt.step()
        slow = (opt.state[w]["slow"].clone(), opt.state[w]["slow_orthogonal"].clone())
        if previous is not None and not all(torch.equal(a, b) for a, b in zip(slow, previous)):
            changed.append(step)
        previous = slow
    assert changed == [4, 8, 12]


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_optimizer_keeps_the_cms_cadence(name):
    """Inside the multi-frequency optimizer a level changes exactly at multiples of its period."""
    torch.manual_seed(0)
    net = CMSLM(vocab_size=11, max_len=6, d_model=8, d_ff=16, n_layers=1, periods=[1, 3], dropout=0.0)
    optimizer = net.configure_optimizer(instantiate(compose_config(f"optimizer={name}").optimizer))
    slow_level = optimizer.levels[1].params
    changes = []
    for step in range(1, 10):
        before = [p.detach().clone() for p in slow_level]
        tokens = torch.randint(0, 11, (4, 6))
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(net(tokens[:, :-1]).flatten(0, 1), tokens[:, 1:].flatten()).backward()
        optimizer.step()
        if any(not torch.equal(b, p) for b, p in zip(before, slow_level)):
            changes.append(step)
    assert changes == [3, 6, 9]


def test_m3_inside_cms_refreshes_a_levels_slow_memory_on_the_levels_own_clock():
    torch.manual_seed(0)
    net = CMSLM(vocab_size=11, max_len=6, d_model=8, d_ff=16, n_layers=1, periods=[1, 3], dropout=0.0)
    optimizer = net.configure_optimizer(partial(M3, lr=1e-3, frequency=2))
    level_weight = next(p for p in optimizer.levels[1].params if p.ndim == 2)
    refreshed = []
    for step in range(1, 13):
        tokens = torch.randint(0, 11, (4, 6))
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(net(tokens[:, :-1]).flatten(0, 1), tokens[:, 1:].flatten()).backward()
        before = optimizer.state[level_weight].get("slow", torch.zeros(0)).clone()
        optimizer.step()
        after = optimizer.state[level_weight].get("slow", torch.zeros(0))
        if before.numel() and not torch.equal(before, after):
            refreshed.append(step)
    assert refreshed == [6, 12]  # period 3 x frequency 2: every 2nd of the level's updates


@pytest.mark.parametrize("cls,kwargs", [(M3, dict(lr=0.01, frequency=2)), (DeltaMomentum, dict(lr=0.05)), (DMGD, dict(lr=0.05))])
def test_state_dict_round_trip_continues_exactly(cls, kwargs):
    torch.manual_seed(0)
    grads = [[torch.randn(3, 4), torch.randn(4)] for _ in range(6)]

    def fresh():
        params = [torch.nn.Parameter(torch.ones(3, 4)), torch.nn.Parameter(torch.zeros(4))]
        return params, cls(params, **kwargs)

    whole, opt = fresh()
    _steps(opt, whole, grads)
    first, opt = fresh()
    _steps(opt, first, grads[:3])
    saved = opt.state_dict()
    second, opt = fresh()
    opt.load_state_dict(saved)
    with torch.no_grad():
        for a, b in zip(second, first):
            a.copy_(b)
    _steps(opt, second, grads[3:])
    for a, b in zip(second, whole):
        assert torch.equal(a, b)


@pytest.mark.parametrize("override,message", [
    ("optimizer.frequency=0", "optimizer.frequency=0: must be an integer >= 1 (steps between slow-memory updates)"),
    ("optimizer.alpha=-1", "optimizer.alpha=-1: must be a number >= 0 (weight of the slow memory)"),
    ("optimizer.aux_betas=[0.9,1.5]", "optimizer.aux_betas=[0.9, 1.5]: must be two numbers in [0, 1)"),
    ("optimizer.ns_steps=abc", "optimizer.ns_steps='abc': must be an integer (an argument of M3, optimizer)"),
])
def test_bad_m3_settings_stop_before_training_with_one_line(run_in_process, override, message):
    with pytest.raises(UserError) as err:
        run_in_process("optimizer=m3", override)
    assert str(err.value) == message


@pytest.mark.parametrize("override,message", [
    (["optimizer=delta_momentum", "optimizer.alpha=1.0"], "optimizer.alpha=1.0: must be a number in [0, 1) (the momentum's decay)"),
    (["optimizer=dmgd", "optimizer.hidden=0"], "optimizer.hidden=0: must be an integer >= 1 (the memory MLP's width)"),
    (["optimizer=adamw", "optimizer.weight_decay=-1"], "optimizer: ValueError: Invalid weight_decay value: -1; check the optimizer.* values"),
])
def test_bad_settings_of_other_optimizers_stop_with_one_line(run_in_process, override, message):
    with pytest.raises(UserError) as err:
        run_in_process(*override)
    assert str(err.value) == message


@pytest.mark.slow
def test_unknown_optimizer_key_is_one_line_on_the_command_line(tmp_path):
    out = run_cli("optimizer=m3", "+optimizer.beta1=0.9", "logger=none", f"hydra.run.dir={tmp_path}")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "error: optimizer.beta1: optimizer has no option 'beta1' (M3 takes lr, alpha, frequency, ns_steps, eps, aux_lr, aux_betas)"
    ]


def test_optimizers_experiment_is_2_models_x_4_optimizers_x_5_seeds_with_swept_rates():
    from tests.test_sweeps import compose_with_hydra

    cfg = compose_with_hydra("experiment=optimizers")
    params = cfg.hydra.sweeper.params
    assert params.model == "transformer,cms" and params.optimizer == "adam,m3,delta_momentum,sgd"
    assert params.seed == "range(0,5)" and cfg.summary.reference == "optimizer=adam"
    rates = cfg.optimizer_lrs
    assert set(rates) == {"transformer", "cms"} and all(set(r) == {"adam", "m3", "delta_momentum", "sgd"} for r in rates.values())
    assert all(r["sgd"] == r["delta_momentum"] for r in rates.values())  # the ablation: same rate, no delta term


@pytest.mark.slow
def test_m3_on_cms_killed_mid_task_resumes_to_the_same_matrix(tmp_path, run_in_process):
    # A checkpoint every epoch of 8 steps. Killed after epoch 4 and its checkpoint, two epochs into task 2
    # (of 4), at step 32: 2 past a multiple of the level periods 3 and 6 and of M3's f = 10, so the resume
    # starts inside a CMS chunk and inside M3's slow-memory chunk.
    job = ["model=cms", "optimizer=m3", "epochs_per_task=[2,4]", "task.repeats=32", "batch_size=16", "logger=none",
           "checkpoint_every_s=0"]
    # the uninterrupted run: in this process, to save a start-up
    assert run_in_process(*job, run_dir=tmp_path / "whole")["status"] == "complete"
    killed = tmp_path / "killed"
    cut = kill_at(job, killed, epoch=4, when="after")
    assert cut["status"] == "running" and cut["curves"][-1]["step"] == 32
    assert_resume_matches(killed, tmp_path / "whole")
