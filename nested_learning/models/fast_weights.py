"""model=linear_attention and model=deltanet: the fast-weight baselines of NL Table 5.

Table 5's Linear attention and DeltaNet rows come from Irie et al. 2023 ("Practical computational
power of linear transformers and their recurrent and self-referential extensions", code
IDSIA/fwp-formal-lang); these are the layers of its `layers.py`, in this framework's pre-LN stack
(mixer_stack.py, norm_first=True: x + dropout(out(mixer(LayerNorm(x)))), then a residual
feed-forward, no positional encoding). Per head, from q_t, k_t, v_t, bias-free projections of x_t,
and the feature map phi(z) = elu(z) + 1 (Katharopoulos et al. 2020, §3.2):

linear attention (Katharopoulos et al. 2020, §3.2-3.3; the sum rule of a fast weight programmer):
    W_t = W_{t-1} + v_t phi(k_t)^T,   o_t = W_t phi(q_t) = sum_{i<=t} (phi(q_t) . phi(k_i)) v_i,   W_0 = 0
  Irie et al.'s layer has no denominator (denominator=false, the default); denominator=true divides
  o_t by phi(q_t) . sum_{i<=t} phi(k_i), Katharopoulos et al.'s normalised form. Computed as the
  causally masked (T x T) product, which is exact.

DeltaNet (the delta rule, Schlag et al. 2021, §4.2):
    k_t, q_t = phi(.) / sum(phi(.)),   beta_t = sigmoid(x_t w_beta)      (Irie et al.: the sum
                                                                          normalisation keeps training stable)
    W_t = W_{t-1} + beta_t (v_t - W_{t-1} k_t) k_t^T = W_{t-1} (I - beta_t k_t k_t^T) + beta_t v_t k_t^T
    o_t = W_t q_t,   W_0 = 0
  chunkwise.delta_chunk computes each chunk with one triangular solve (the UT/WY form of Yang et al.
  2024, "Parallelizing Linear Transformers with the Delta Rule over Sequence Length"); parallel=false
  runs the tokens one by one (chunkwise.delta_tokens), the reference. Both are exact, so the chunk
  size changes only the speed.
"""
from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from nested_learning.models.chunkwise import delta_chunk, delta_tokens
from nested_learning.models.cms import CMS
from nested_learning.models.mixer_stack import MixerCMSLM, check_chunk, check_heads
from nested_learning.models.titans import merge_heads, split_heads


def elu_plus_one(z: torch.Tensor) -> torch.Tensor:
    """phi(z) = elu(z) + 1 > 0 (Katharopoulos et al. 2020)."""
    return F.elu(z) + 1.0


class FastWeightMixer(nn.Module):
    """q, k, v (and `extra` scalars per head) from one bias-free projection; one output projection."""

    def __init__(self, d_model: int, n_heads: int, extra: int = 0):
        super().__init__()
        check_heads(d_model, n_heads)
        self.n_heads, self.d_model = n_heads, d_model
        self.proj = nn.Linear(d_model, 3 * d_model + extra * n_heads, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, T, D) -> q, k, v (B H, T, d) and the extra scalars (B H, T, extra)."""
        B, T, D = x.shape
        q, k, v, rest = self.proj(x).split([D, D, D, self.proj.out_features - 3 * D], dim=-1)
        rest = rest.view(B, T, self.n_heads, -1).transpose(1, 2).reshape(B * self.n_heads, T, -1)  # head-minor like split_heads
        return (*(split_heads(t, self.n_heads) for t in (q, k, v)), rest)


class LinearAttention(FastWeightMixer):
    """Causal linear attention with phi = elu + 1: (B, T, D) -> (B, T, D)."""

    def __init__(self, d_model: int, n_heads: int, denominator: bool = False):
        super().__init__(d_model, n_heads)
        self.denominator = denominator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v, _ = self.project(x)
        scores = (elu_plus_one(q) @ elu_plus_one(k).transpose(1, 2)).tril()  # phi(q_t) . phi(k_i) for i <= t, (N, T, T)
        y = scores @ v  # W_t phi(q_t), (N, T, d)
        if self.denominator:
            y = y / scores.sum(-1, keepdim=True)  # phi(q_t) . sum_{i<=t} phi(k_i) > 0
        return self.out(merge_heads(y, x.shape[0]))


class DeltaRule(FastWeightMixer):
    """DeltaNet's fast-weight layer, chunk by chunk: (B, T, D) -> (B, T, D)."""

    def __init__(self, d_model: int, n_heads: int, chunk_size: int, parallel: bool = True):
        super().__init__(d_model, n_heads, extra=1)
        check_chunk(chunk_size)
        self.chunk_size, self.parallel = chunk_size, parallel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v, beta_logit = self.project(x)
        q, k = (phi / phi.sum(-1, keepdim=True) for phi in (elu_plus_one(q), elu_plus_one(k)))  # sum-normalised
        beta = torch.sigmoid(beta_logit.squeeze(-1))  # (N, T)
        N, _, d = v.shape
        memory = v.new_zeros(N, d, d)  # W_0 = 0
        update = delta_chunk if self.parallel else delta_tokens
        chunks = list(zip(*(t.split(self.chunk_size, dim=1) for t in (q, k, v, beta))))
        out = []
        for i, (q_c, k_c, v_c, beta_c) in enumerate(chunks):
            # The delta rule is chunkwise.py's recurrence with alpha = 1, eta = beta and write g = beta v.
            y, memory, _ = update(
                memory, None, 0.0, q_c, k_c, beta_c, torch.zeros_like(beta_c), beta_c.unsqueeze(-1) * v_c, last=i == len(chunks) - 1
            )
            out.append(y)
        return self.out(merge_heads(torch.cat(out, dim=1), x.shape[0]))


def feed_forward(d_model: int, d_ff: int, dropout: float) -> CMS:
    """One CMS level of period 1: a Transformer feed-forward, trained every step, with its residual."""
    return CMS(d_model, d_ff, (1,), dropout=dropout)


class LinearAttentionLM(MixerCMSLM):
    """embedding -> n_layers x pre-LN [linear attention, feed-forward] -> head."""

    def __init__(
        self,
        vocab_size: int,
        max_len: int,
        d_model: int = 64,
        n_heads: int = 2,
        denominator: bool = False,
        d_ff: int = 128,
        n_layers: int = 2,
        dropout: float = 0.0,
    ):
        del max_len  # no positional encoding, as in Irie et al.'s runs
        super().__init__(
            vocab_size,
            d_model,
            n_layers,
            make_mixer=partial(LinearAttention, d_model, n_heads, denominator),
            make_cms=partial(feed_forward, d_model, d_ff, dropout),
            dropout=dropout,
            norm_first=True,
        )


class DeltaNetLM(MixerCMSLM):
    """embedding -> n_layers x pre-LN [delta rule, feed-forward] -> head."""

    def __init__(
        self,
        vocab_size: int,
        max_len: int,
        d_model: int = 64,
        n_heads: int = 2,
        chunk_size: int = 16,
        parallel: bool = True,
        d_ff: int = 128,
        n_layers: int = 2,
        dropout: float = 0.0,
    ):
        del max_len  # no positional encoding, as in Irie et al.'s runs
        super().__init__(
            vocab_size,
            d_model,
            n_layers,
            make_mixer=partial(DeltaRule, d_model, n_heads, chunk_size, parallel),
            make_cms=partial(feed_forward, d_model, d_ff, dropout),
            dropout=dropout,
            norm_first=True,
        )
