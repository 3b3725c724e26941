"""The chunk-parallel forms of the titans, hope_nl and deltanet memories against their token-by-token
reference loops (model.parallel=false), in float64: outputs and every parameter's gradient to 1e-10, for chunk
sizes 1, 2, 7, 16 and the whole sequence, over a length (23) that none of 2, 7, 16 divides.
There is no hand-written backward: autograd differentiates both forms."""
import pytest
import torch

from nested_learning.models.chunkwise import decay_matrix, delta_chunk, delta_tokens
from nested_learning.models.fast_weights import DeltaNetLM, DeltaRule
from nested_learning.models.hope_nl import HopeNLLM, SelfModifyingTitans
from nested_learning.models.titans import NeuralMemory, TitansLM

LENGTH = 23
CHUNKS = [1, 2, 7, 16, LENGTH]
TOLERANCE = dict(rtol=0.0, atol=1e-10)


def run(module: torch.nn.Module, inputs: torch.Tensor, parallel: bool) -> tuple[torch.Tensor, dict]:
    """Output and parameter gradients of a fixed random projection of the output."""
    for layer in module.modules():
        if hasattr(layer, "parallel"):
            layer.parallel = parallel
    module.zero_grad()
    out = module(inputs)
    cotangent = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=out.dtype)
    (out * cotangent).sum().backward()
    return out.detach(), {name: p.grad for name, p in module.named_parameters()}


def assert_forms_agree(module: torch.nn.Module, inputs: torch.Tensor) -> dict:
    fast, fast_grads = run(module, inputs, parallel=True)
    reference, reference_grads = run(module, inputs, parallel=False)
    torch.testing.assert_close(fast, reference, **TOLERANCE)
    for name, grad in reference_grads.items():
        assert grad is not None and grad.abs().sum() > 0, name  # the comparison is not vacuous: every parameter is trained
        torch.testing.assert_close(fast_grads[name], grad, **TOLERANCE, msg=lambda m: f"{name}: {m}")
    return reference_grads


def _inputs(width: int) -> torch.Tensor:
    return torch.randn(3, LENGTH, width, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


@pytest.mark.parametrize("chunk_size", CHUNKS)
@pytest.mark.parametrize("memory", ["linear", "mlp"])
def test_titans_chunk_parallel_equals_token_loop(memory, chunk_size):
    torch.manual_seed(0)
    layer = NeuralMemory(8, 2, memory, 6, chunk_size, 2).double()
    with torch.no_grad():
        layer.gates.bias.view(3, 2)[2] = -1.0  # alpha near 0.27: the forgetting gate matters
    assert_forms_agree(layer, _inputs(8))


@pytest.mark.parametrize("chunk_size", CHUNKS)
@pytest.mark.parametrize("momentum", [0.0, 0.6])
def test_hope_chunk_parallel_equals_token_loop(momentum, chunk_size):
    torch.manual_seed(0)
    layer = SelfModifyingTitans(8, 2, chunk_size, 2, momentum, 0.5).double()
    with torch.no_grad():
        for p in layer.initial.values():
            p.mul_(10)  # memories far from the identity, so every term of the update matters
        layer.alpha_bias.fill_(1.0)  # alpha near 0.73
    assert_forms_agree(layer, _inputs(8))  # the outputs read M_mem,t inside the chunk: every memory is trained at every chunk size


@pytest.mark.parametrize("chunk_size", CHUNKS)
@pytest.mark.parametrize("momentum,switches", [
    (0.0, dict(inner_rule="gd")), (0.6, dict(inner_rule="gd")), (0.0, dict(weight_decay=False)),
    (0.0, dict(static=["k"])), (0.6, dict(static=["v", "eta", "alpha"])),
], ids=["gd", "gd_momentum", "no_decay", "static_k", "static_v_eta_alpha_momentum"])
def test_hope_ablations_chunk_parallel_equal_token_loop(momentum, switches, chunk_size):
    """The Table 6 switches (docs/formal_languages.md) in both forms."""
    torch.manual_seed(0)
    layer = SelfModifyingTitans(8, 2, chunk_size, 2, momentum, 0.5, **switches).double()
    with torch.no_grad():
        for p in layer.initial.values():
            p.mul_(10)
        if layer.alpha_bias is not None:
            layer.alpha_bias.fill_(1.0)
    assert_forms_agree(layer, _inputs(8))


@pytest.mark.parametrize("chunk_size", CHUNKS)
def test_deltanet_chunk_parallel_equals_token_loop(chunk_size):
    torch.manual_seed(0)
    assert_forms_agree(DeltaRule(8, 2, chunk_size).double(), _inputs(8))


def _compare_updates(fast_update, reference_update, inputs: list[torch.Tensor]) -> None:
    """One chunk's update by both forms: results and gradients with respect to every input."""
    leaves = [t.detach().requires_grad_() for t in inputs]
    results = []
    for update in (fast_update, reference_update):
        out = [t for t in update(*leaves) if t is not None]
        cotangents = [torch.randn(t.shape, generator=torch.Generator().manual_seed(i), dtype=t.dtype) for i, t in enumerate(out)]
        loss = sum((t * c).sum() for t, c in zip(out, cotangents))
        results.append([t.detach() for t in out] + list(torch.autograd.grad(loss, leaves)))
    for fast, reference in zip(*results):
        torch.testing.assert_close(fast, reference, **TOLERANCE)


@pytest.mark.parametrize("momentum", [0.0, 0.6])
def test_delta_rule_whole_sequence_chunk_update(momentum):
    """The end-of-chunk state and momentum, which the forward uses only between chunks."""
    g = torch.Generator().manual_seed(0)
    N, R, d = 6, 3 * 4 + 2, 4

    def rand(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    k = torch.nn.functional.normalize(rand(N, LENGTH, d), dim=-1)
    eta, log_alpha = 0.5 * torch.sigmoid(rand(N, LENGTH)), torch.nn.functional.logsigmoid(rand(N, LENGTH))

    def update(form):
        def step(memory, q, k, eta, log_alpha, g, *surprise):
            out, memory, surprise = form(memory, surprise[0] if surprise else None, momentum, q, k, eta, log_alpha, g)
            return out, memory, surprise

        return step

    inputs = [rand(N, R, d), rand(N, LENGTH, d), k, eta, log_alpha, rand(N, LENGTH, R)] + ([rand(N, R, d)] if momentum else [])
    _compare_updates(update(delta_chunk), update(delta_tokens), inputs)


@pytest.mark.parametrize("memory", ["linear", "mlp"])
def test_titans_whole_sequence_chunk_update(memory):
    """The end-of-chunk state and momentum, which the forward uses only between chunks."""
    torch.manual_seed(0)
    layer = NeuralMemory(8, 2, memory, 6, LENGTH, 2).double()
    g = torch.Generator().manual_seed(0)
    N, d = 6, 4
    state = [w.detach() for w in layer.memory.initial_state(3)]
    surprise = [torch.randn(w.shape, generator=g, dtype=torch.float64) for w in state]
    k = torch.nn.functional.normalize(torch.randn(N, LENGTH, d, generator=g, dtype=torch.float64), dim=-1)
    v, q = (torch.randn(N, LENGTH, d, generator=g, dtype=torch.float64) for _ in range(2))
    logits = [torch.randn(N, LENGTH, generator=g, dtype=torch.float64) for _ in range(3)]
    n = len(state)

    def update(form):
        def step(*tensors):
            state, surprise, (k, v, q, *logits) = tensors[:n], tensors[n : 2 * n], tensors[2 * n :]
            factors = layer.memory.grad_factors(list(state), k, v)
            out, new_state, new_surprise = form(list(state), list(surprise), factors, q, *logits, last=False)
            return [out, *new_state, *new_surprise]

        return step

    _compare_updates(update(layer.chunk_parallel), update(layer.token_steps), [*state, *surprise, k, v, q, *logits])


@pytest.mark.parametrize("make", [
    lambda: TitansLM(12, 0, d_model=8, n_heads=2, memory="mlp", d_hidden=6, chunk_size=7, d_ff=8, n_layers=2, dropout=0.0),
    lambda: HopeNLLM(12, 0, d_model=8, n_heads=2, chunk_size=7, momentum=0.5, d_ff=8, n_layers=2, dropout=0.0),
    lambda: DeltaNetLM(12, 0, d_model=8, n_heads=2, chunk_size=7, d_ff=8, n_layers=2),
])
def test_models_take_the_parallel_option(make):
    torch.manual_seed(0)
    net = make().double()
    tokens = torch.randint(0, 12, (2, LENGTH), generator=torch.Generator().manual_seed(0))
    assert_forms_agree(net, tokens)


def test_decay_matrix_by_hand():
    a = torch.tensor([0.5, 0.25, 0.8], dtype=torch.float64)
    # [t, i] = prod_{i<s<=t} a_s below and on the diagonal
    inclusive = torch.tensor([[1, 0, 0], [0.25, 1, 0], [0.2, 0.8, 1]], dtype=torch.float64)
    torch.testing.assert_close(decay_matrix(a.log()), inclusive)
