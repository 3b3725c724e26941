"""Titans (Titans Eq. 13-14) and HOPE's self-modifying Titans (Eq. 90, 94-96) against hand
computations and independent token-by-token references; in-context updates, outer gradients."""
import pytest
import torch
import torch.nn.functional as F

from nested_learning.errors import UserError
from nested_learning.models.chunkwise import dgd_step
from nested_learning.models.hope_nl import MEMORY_NAMES, HopeNLLM, SelfModifyingTitans
from nested_learning.models.titans import NeuralMemory, TitansLM, fixed, merge_heads, split_heads
from nested_learning.analysis.results import load_results


def test_one_delta_rule_step_matches_hand_computation():
    W = torch.tensor([[[1.0, 2.0]]])  # one memory row, d = 2
    k = torch.tensor([[0.6, 0.8]])  # unit norm
    eta, alpha = torch.tensor([0.5]), torch.tensor([0.9])
    # W k = 2.2; W (alpha I - eta k k^T) = [0.9, 1.8] - 0.5 * 2.2 * [0.6, 0.8] = [0.24, 0.92]
    # target 1: grad of 1/2 ||W k - 1||^2 = (2.2 - 1) k^T = [0.72, 0.96]; minus eta grad = [-0.36, -0.48]
    step = -eta * torch.tensor([[2.2 - 1.0]])  # g = -eta (W k - 1)
    torch.testing.assert_close(dgd_step(W, k, eta, alpha, step), torch.tensor([[[-0.12, 0.44]]]))
    torch.testing.assert_close(dgd_step(W, k, eta, alpha), torch.tensor([[[0.24, 0.92]]]))


def _reference_hope(smt: SelfModifyingTitans, x: torch.Tensor) -> torch.Tensor:
    """Eq. 94-96 literally, memory by memory and token by token: keys, values, rates and gradients at
    the chunk's start state (Eq. 90), the output from the memory after the token's own update. The
    ablation switches as written: gd drops eta k k^T from the decay, no weight decay sets alpha = 1,
    a static memory stays at its W_0."""
    B, T, D = x.shape
    H, d, C = smt.n_heads, smt.d_head, smt.chunk_size
    xc = smt.conv(x)
    q = F.normalize(split_heads(smt.w_q(xc), H), dim=-1)
    xs = split_heads(xc, H)
    W = {n: smt.initial[n].repeat(B, 1, 1) for n in smt.initial}  # (B H, rows, d)
    S = {n: torch.zeros_like(w) for n, w in W.items()}

    def M(name, weights, z):  # M(z) = z + W z for the square memories, W z for eta and alpha
        return torch.einsum("nrd,nd->nr", weights, z) + (z if name in ("k", "v", "mem") else 0)

    out = []
    for t in range(T):
        if t % C == 0:
            start = {n: w.clone() for n, w in W.items()}
        x_t = xs[:, t]
        k = F.normalize(M("k", start["k"], x_t), dim=-1)
        v = F.normalize(M("v", start["v"], x_t), dim=-1)
        eta = smt.eta_max * torch.sigmoid(M("eta", start["eta"], x_t)[:, 0] + smt.eta_bias.repeat(B))
        alpha = torch.ones_like(eta) if smt.alpha_bias is None else torch.sigmoid(M("alpha", start["alpha"], x_t)[:, 0] + smt.alpha_bias.repeat(B))
        decay = alpha[:, None, None] * torch.eye(d) - (smt.inner_rule == "delta") * eta[:, None, None] * torch.einsum("ni,nj->nij", k, k)
        for n in smt.initial:
            if n in smt.static:
                continue
            vhat = M(n, start[n], v)  # the memory's own value for v_t (Eq. 95)
            grad = torch.einsum("nr,nd->nrd", M(n, start[n], k) - vhat, k)
            S[n] = smt.momentum * S[n] - eta[:, None, None] * grad
            W[n] = W[n] @ decay + S[n]
        out.append(M("mem", W["mem"], q[:, t]))  # o_t = M_mem,t(q_t)
    return merge_heads(torch.stack(out, dim=1), B)


SWITCHES = [{}, dict(inner_rule="gd"), dict(weight_decay=False), dict(static=["k"]), dict(static=["v", "eta", "alpha"])]


@pytest.mark.parametrize("switches", SWITCHES, ids=["default", "gd", "no_decay", "static_k", "static_v_eta_alpha"])
@pytest.mark.parametrize("parallel", [True, False])
@pytest.mark.parametrize("chunk_size,momentum", [(1, 0.0), (1, 0.9), (3, 0.0), (3, 0.5)])
def test_self_modifying_titans_matches_token_by_token_reference(chunk_size, momentum, parallel, switches):
    torch.manual_seed(0)
    smt = SelfModifyingTitans(8, 2, chunk_size, 2, momentum, 0.5, parallel, **switches)
    with torch.no_grad():
        for p in smt.initial.values():
            p.mul_(10)  # memories far from the identity, so every term of the update matters
    x = torch.randn(3, 7, 8)
    with torch.no_grad():
        torch.testing.assert_close(smt(x), _reference_hope(smt, x))


def _one_token(smt: SelfModifyingTitans, x: torch.Tensor):
    """q, k and eta of a one-token input (B, 1, D) at the initial state, per head in the mixer's
    head-major layout: (N, d), (N, d), (N,)."""
    xc = smt.conv(x)
    q = F.normalize(split_heads(smt.w_q(xc), smt.n_heads, head_major=True), dim=-1)[:, 0]
    memory = smt.initial_state(x.shape[0]) + smt.residual(smt.dynamic)  # W_0 + E: the memories' maps
    bias = smt.eta_bias.repeat_interleave(x.shape[0]), smt.alpha_bias.repeat_interleave(x.shape[0])
    k, eta, _, _ = smt.chunk_inputs(memory, split_heads(xc, smt.n_heads, head_major=True), {}, *bias)
    return q, k[:, 0], eta[:, 0]


def test_gd_drops_the_dgd_term_on_one_step():
    """One token: DGD's W_1 = W_0 (alpha I - eta k k^T) + g k^T, gd's W_1 = alpha W_0 + g k^T, so the
    outputs o = q + W_1 q differ by exactly -eta (W_0 k)(k . q), the DGD term, in the mem memory."""
    torch.manual_seed(0)
    dgd = SelfModifyingTitans(8, 2, 1, 2, 0.0, 0.5).double()
    gd = SelfModifyingTitans(8, 2, 1, 2, 0.0, 0.5, inner_rule="gd").double()
    gd.load_state_dict(dgd.state_dict())  # the same parameters: the switch adds none
    with torch.no_grad():
        dgd.initial["mem"].mul_(10)
        gd.initial["mem"].mul_(10)
        x = torch.randn(3, 1, 8, dtype=torch.float64)
        q, k, eta = _one_token(dgd, x)
        w_mem = dgd.initial_state(3)[:, 2 * 4 : 3 * 4]  # W_mem,0 per head, (N, d, d)
        term = -eta[:, None] * (w_mem @ k.unsqueeze(-1)).squeeze(-1) * (k * q).sum(-1, keepdim=True)  # (N, d)
        torch.testing.assert_close(dgd(x) - gd(x), merge_heads(term.unsqueeze(1), 3, head_major=True), rtol=0, atol=1e-12)
        assert term.abs().max() > 1e-3  # the term is not negligible here


def test_without_weight_decay_alpha_is_exactly_one():
    torch.manual_seed(0)
    smt = SelfModifyingTitans(8, 2, 4, 2, 0.0, 0.5, weight_decay=False)
    assert "alpha" not in smt.initial and smt.alpha_bias is None and smt.dynamic == ["k", "v", "mem", "eta"]
    memory = torch.randn(6, 3 * 4 + 1, 4)  # any state: alpha never reads it
    _, _, log_alpha, _ = smt.chunk_inputs(memory, torch.randn(6, 5, 4), {}, torch.zeros(6), None)
    assert torch.equal(log_alpha, torch.zeros(6, 5))


@pytest.mark.parametrize("name", ["k", "v"])
def test_a_static_projection_never_reads_the_in_context_state(name):
    """static=[k]: k_t = normalize(x_t + W_k,0 x_t) whatever the state, and the state holds no k rows;
    static=[v]: no v rows either, so the v memory cannot change along the sequence."""
    torch.manual_seed(0)
    smt = SelfModifyingTitans(8, 2, 4, 2, 0.0, 0.5, static=[name])
    assert smt.dynamic == [n for n in MEMORY_NAMES if n != name] and smt.initial_state(3).shape == (6, 2 * 4 + 2, 4)
    x = torch.randn(6, 5, 4)
    with torch.no_grad():
        fixed = smt.static_reads(x)
        torch.testing.assert_close(fixed[name], x + x @ smt.initial[name].repeat_interleave(3, dim=0).transpose(1, 2))  # head-major
        bias = smt.eta_bias.repeat(3), smt.alpha_bias.repeat(3)
        first, second = (smt.chunk_inputs(torch.randn(6, 2 * 4 + 2, 4), x, fixed, *bias) for _ in range(2))  # unrelated states
        if name == "k":
            torch.testing.assert_close(first[0], F.normalize(fixed["k"], dim=-1))
            torch.testing.assert_close(second[0], first[0])
        assert not torch.allclose(first[1], second[1])  # eta still comes from the in-context memory
        default = SelfModifyingTitans(8, 2, 4, 2, 0.0, 0.5)
        default.load_state_dict(smt.state_dict())
        assert not torch.allclose(default(x.view(3, 5, 8)), smt(x.view(3, 5, 8)))  # the switch changes the outputs


def _reference_titans(layer: NeuralMemory, x: torch.Tensor) -> torch.Tensor:
    """Titans Eq. 13-14 token by token, with the inner gradient from autograd at the chunk's first state."""
    B, T, _ = x.shape
    H, C = layer.n_heads, layer.chunk_size
    xc = layer.conv(x)
    q, k, v = (split_heads(t, H) for t in layer.qkv(xc).chunk(3, dim=-1))
    q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
    eta, theta, alpha = torch.sigmoid(layer.gates(xc)).view(B, T, 3, H).permute(2, 0, 3, 1).reshape(3, B * H, T)
    state = layer.memory.initial_state(B)
    surprise = [torch.zeros_like(w) for w in state]
    out = []
    for t in range(T):
        if t % C == 0:
            start = [w.detach().clone().requires_grad_() for w in state]
        with torch.enable_grad():
            loss = 0.5 * ((layer.memory.read(fixed(start), k[:, t : t + 1]) - v[:, t : t + 1]) ** 2).sum()
            grads = torch.autograd.grad(loss, start)
        shape = lambda a, w: a.view(-1, *([1] * (w.dim() - 1)))  # noqa: E731
        surprise = [shape(eta[:, t], s) * s - shape(theta[:, t], g) * g for s, g in zip(surprise, grads)]
        state = [shape(1 - alpha[:, t], w) * w + s for w, s in zip(state, surprise)]
        out.append(layer.memory.read(fixed(state), q[:, t : t + 1]))
    return merge_heads(torch.cat(out, dim=1), B)


@pytest.mark.parametrize("parallel", [True, False])
@pytest.mark.parametrize("memory", ["linear", "mlp"])
@pytest.mark.parametrize("chunk_size", [1, 3])
def test_titans_memory_matches_token_by_token_reference(memory, chunk_size, parallel):
    torch.manual_seed(0)
    layer = NeuralMemory(8, 2, memory, 6, chunk_size, 2, parallel)
    x = torch.randn(3, 7, 8)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), _reference_titans(layer, x))


def test_gradients_reach_the_initial_states_of_every_memory():
    torch.manual_seed(0)
    tokens = torch.randint(0, 12, (4, 9))
    hope = HopeNLLM(12, 9, d_model=16, n_heads=2, chunk_size=4, momentum=0.5, n_layers=1)  # 9 tokens: 3 chunks
    hope(tokens).logsumexp(-1).sum().backward()
    smt = hope.blocks[0].mixer
    outer = list(smt.initial.items()) + [("eta_bias", smt.eta_bias), ("alpha_bias", smt.alpha_bias), ("w_q", smt.w_q.weight)]
    for name, p in outer:
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    for memory in ("linear", "mlp"):
        titans = TitansLM(12, 9, d_model=16, n_heads=2, memory=memory, n_layers=1)
        titans(tokens).logsumexp(-1).sum().backward()
        for name, p in titans.blocks[0].mixer.memory.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, f"{memory} memory {name}"


def _recurrent(model: str, **kwargs):
    kw = dict(d_model=16, n_heads=2, chunk_size=2, n_layers=1, conv_width=1, dropout=0.0, **kwargs)
    return HopeNLLM(12, 9, **kw) if model == "hope_nl" else TitansLM(12, 9, **kw)


@pytest.mark.parametrize("model", ["titans", "hope_nl"])
def test_memory_carries_context_in_eval_mode(model):
    torch.manual_seed(0)
    net = _recurrent(model)
    tokens = torch.randint(1, 12, (2, 9))
    changed = tokens.clone()
    changed[:, 0] = tokens[:, 0] % 11 + 1
    with torch.no_grad():
        trained_mode = net.train()(tokens)
        before, after = net.eval()(tokens), net(changed)
    torch.testing.assert_close(before, trained_mode)  # no dropout: the same in-context updates in both modes
    # Without convolution, only the memory carries token 0 to position 5.
    assert not torch.allclose(before[:, 5], after[:, 5], atol=1e-6)


@pytest.mark.parametrize("parallel", [True, False])
@pytest.mark.parametrize("make", [
    lambda parallel: NeuralMemory(8, 2, "linear", 0, 16, 1, parallel),
    lambda parallel: SelfModifyingTitans(8, 2, 16, 1, 0.0, 0.5, parallel),
], ids=["titans", "hope_nl"])
def test_output_reads_writes_of_its_own_chunk(make, parallel):
    """Chunk 16, no convolution (width 1): the output at tokens 5-15 sees token 1 only through the
    memory, as written by the tokens of the same chunk (the dual form; a chunk-start read gives 0)."""
    torch.manual_seed(0)
    layer = make(parallel).double()
    x = torch.randn(2, 20, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    changed = x.clone()
    changed[:, 1] += 1.0
    with torch.no_grad():
        dy = (layer(changed) - layer(x)).abs().amax(dim=(0, 2))  # (T,)
    assert dy[0] == 0  # causal
    assert (dy[5:16] > 1e-6).all(), dy  # float64 rounding is ~1e-16; the old chunk-start read gave exactly 0


def test_titans_initial_theta_does_not_depend_on_the_chunk_size():
    for chunk_size in (1, 4, 16):
        gates = NeuralMemory(8, 2, "linear", 0, chunk_size, 4).gates
        theta = torch.sigmoid(gates.bias.view(3, 2)[1])  # with zero input, the gate is its bias
        torch.testing.assert_close(theta, torch.full((2,), 1 / 32))
    theta = torch.sigmoid(NeuralMemory(8, 2, "linear", 0, 16, 4, theta_init=0.5).gates.bias.view(3, 2)[1])
    torch.testing.assert_close(theta, torch.full((2,), 0.5))


@pytest.mark.parametrize("make,message", [
    (lambda: TitansLM(12, 9, memory="deep"), r"model.memory=deep: choose one of linear, mlp"),
    (lambda: TitansLM(12, 9, chunk_size=0), r"model.chunk_size=0: must be an integer >= 1"),
    (lambda: TitansLM(12, 9, theta_init=1.0), r"model.theta_init=1.0: the initial inner learning rate must lie in \(0, 1\)"),
    (lambda: HopeNLLM(12, 9, n_heads=3), r"model.n_heads=3: must be >= 1 and divide model.d_model=64"),
    (lambda: HopeNLLM(12, 9, momentum=1.0), r"model.momentum=1.0: must lie in \[0, 1\)"),
    (lambda: HopeNLLM(12, 9, conv_width=0), r"model.conv_width=0: must be an integer >= 1"),
    (lambda: HopeNLLM(12, 9, inner_rule="sgd"), r"model.inner_rule='sgd': must be one of delta, gd"),
    (lambda: HopeNLLM(12, 9, static=["mem"]), r"model.static=\['mem'\]: must list distinct names among k, v, eta, alpha"),
    (lambda: HopeNLLM(12, 9, static=["k", "k"]), r"model.static=\['k', 'k'\]: must list distinct"),
    (lambda: HopeNLLM(12, 9, weight_decay=False, static=["alpha"]), r"model.static contains alpha with model.weight_decay=false"),
])
def test_bad_memory_options_name_the_field(make, message):
    with pytest.raises(UserError, match=message):
        make()


@pytest.mark.parametrize("model,overrides,periods", [
    ("titans", ["model.memory=mlp", "model.chunk_size=2"], [1]),
    ("hope_nl", ["model.momentum=0.5"], [1, 3, 6]),
])
def test_memory_models_train_end_to_end(run_in_process, tmp_path, model, overrides, periods):
    run_in_process(f"model={model}", "epochs_per_task=[1,2]", *overrides)  # 6 optimizer steps
    saved = load_results(tmp_path / "run")
    assert saved["status"] == "complete" and saved["metrics"]["acc"] is not None
    assert [lv["updates"] for lv in saved["model_state"]["cms_levels"]] == [6 // p for p in periods]
