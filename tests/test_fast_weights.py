"""linear_attention and deltanet (the fast-weight baselines of NL Table 5, Irie et al. 2023) against
hand computations and literal token loops; the pre-LN block; bad options."""
import pytest
import torch
import torch.nn.functional as F

from nested_learning.errors import UserError
from nested_learning.models.chunkwise import delta_chunk, delta_tokens
from nested_learning.models.fast_weights import DeltaNetLM, DeltaRule, LinearAttention, LinearAttentionLM
from nested_learning.models.titans import merge_heads
from nested_learning.analysis.results import load_results

X = torch.randn(3, 11, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def _heads(layer, x):
    q, k, v, rest = layer.project(x)
    return q, k, v, rest.squeeze(-1)


def test_linear_attention_is_the_sum_rule_token_by_token():
    for denominator in (False, True):
        layer = LinearAttention(8, 2, denominator).double()
        q, k, v, _ = _heads(layer, X)
        phi_q, phi_k = F.elu(q) + 1, F.elu(k) + 1
        W = torch.zeros(q.shape[0], 4, 4, dtype=torch.float64)
        z = torch.zeros(q.shape[0], 4, dtype=torch.float64)
        out = []
        for t in range(X.shape[1]):
            W = W + torch.einsum("nv,nk->nvk", v[:, t], phi_k[:, t])  # W_t = W_{t-1} + v_t phi(k_t)^T
            z = z + phi_k[:, t]
            y = torch.einsum("nvk,nk->nv", W, phi_q[:, t])
            out.append(y / (z * phi_q[:, t]).sum(-1, keepdim=True) if denominator else y)
        expected = layer.out(merge_heads(torch.stack(out, dim=1), X.shape[0]))
        torch.testing.assert_close(layer(X), expected, rtol=0, atol=1e-12)


def test_one_delta_rule_step_by_hand():
    # One head, d = 2, W_0 = 0. Token 1: k = q = [0.25, 0.75] (sum-normalised), v = [1, 2], beta = 0.5:
    # W_1 = 0.5 [1, 2]^T [0.25, 0.75] = [[0.125, 0.375], [0.25, 0.75]]; o_1 = W_1 q = [0.3125, 0.625].
    # Token 2: k = [1, 0], v = [0, 0], beta = 1: W_1 k = [0.125, 0.25]; W_2 = W_1 - [0.125, 0.25]^T [1, 0]
    # = [[0, 0.375], [0, 0.75]]; q = [0.5, 0.5]: o_2 = [0.1875, 0.375].
    k = torch.tensor([[[0.25, 0.75], [1.0, 0.0]]], dtype=torch.float64)
    q = torch.tensor([[[0.25, 0.75], [0.5, 0.5]]], dtype=torch.float64)
    v = torch.tensor([[[1.0, 2.0], [0.0, 0.0]]], dtype=torch.float64)
    beta = torch.tensor([[0.5, 1.0]], dtype=torch.float64)
    for form in (delta_chunk, delta_tokens):
        out, W, _ = form(torch.zeros(1, 2, 2, dtype=torch.float64), None, 0.0, q, k, beta, torch.zeros_like(beta), beta[..., None] * v)
        torch.testing.assert_close(out, torch.tensor([[[0.3125, 0.625], [0.1875, 0.375]]], dtype=torch.float64))
        torch.testing.assert_close(W, torch.tensor([[[0.0, 0.375], [0.0, 0.75]]], dtype=torch.float64))


@pytest.mark.parametrize("chunk_size", [1, 4, 11])
def test_deltanet_layer_is_the_delta_rule_of_irie_et_al(chunk_size):
    """Literal loop: q, k = sum-normalised elu + 1, beta = sigmoid, W_t = W_{t-1} + beta (v - W_{t-1} k) k^T."""
    torch.manual_seed(0)
    layer = DeltaRule(8, 2, chunk_size).double()
    q, k, v, beta_logit = _heads(layer, X)
    q, k = ((F.elu(t) + 1) / (F.elu(t) + 1).sum(-1, keepdim=True) for t in (q, k))
    beta = torch.sigmoid(beta_logit)
    W = torch.zeros(q.shape[0], 4, 4, dtype=torch.float64)
    out = []
    for t in range(X.shape[1]):
        error = v[:, t] - torch.einsum("nvk,nk->nv", W, k[:, t])
        W = W + beta[:, t, None, None] * torch.einsum("nv,nk->nvk", error, k[:, t])
        out.append(torch.einsum("nvk,nk->nv", W, q[:, t]))
    expected = layer.out(merge_heads(torch.stack(out, dim=1), X.shape[0]))
    torch.testing.assert_close(layer(X), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("make", [lambda: LinearAttentionLM(12, 9, d_model=8, d_ff=16, n_layers=1),
                                  lambda: DeltaNetLM(12, 9, d_model=8, d_ff=16, n_layers=1)])
def test_pre_layer_norm_block(make):
    """x + out(mixer(LN(x))), then h + FF(LN(h)) with Irie et al.'s feed-forward (relu, residual)."""
    torch.manual_seed(0)
    net = make().double()
    block = net.blocks[0]
    x = X
    h = x + block.mixer(block.norm1(x))
    level = block.cms.levels[0]
    expected = h + level.linear2(torch.relu(level.linear1(block.norm2(h))))
    torch.testing.assert_close(block(x), expected)


@pytest.mark.parametrize("make,message", [
    (lambda: DeltaNetLM(12, 9, chunk_size=0), r"model.chunk_size=0: must be an integer >= 1"),
    (lambda: LinearAttentionLM(12, 9, n_heads=3), r"model.n_heads=3: must be >= 1 and divide model.d_model=64"),
    (lambda: DeltaNetLM(12, 9, n_layers=0), r"model.n_layers=0: must be an integer >= 1"),
])
def test_bad_options_name_the_field(make, message):
    with pytest.raises(UserError, match=message):
        make()


@pytest.mark.parametrize("model", ["linear_attention", "deltanet"])
def test_fast_weight_models_train_end_to_end(run_in_process, tmp_path, model):
    run_in_process(f"model={model}", "epochs_per_task=[1,1]")
    saved = load_results(tmp_path / "run")
    assert saved["status"] == "complete" and saved["metrics"]["acc"] is not None
    assert saved["config"]["model"]["name"] == model
