"""Decay and momentum coefficients for the chunk-parallel forms of the titans and hope_nl memories.

Inside a chunk of C tokens, a memory that decays by a gate a_t per token keeps, at token t, the
fraction prod_{i<s<=t} a_s of what was written at token i. Collected for all pairs (t, i) of a chunk
this is a (C x C) lower-triangular matrix, and the token recurrence becomes matrix products with it
(Titans §3.2, Eq. 16-18; DeltaNet's chunk-wise form, Yang et al. 2024). The products are taken as
differences of cumulative sums of log-gates (as Mamba-2 and GLA do): a ratio of cumulative products
would underflow to 0/0 over long chunks.
"""
from __future__ import annotations

import torch


def decay_matrix(log_gate: torch.Tensor, strict: bool = False) -> torch.Tensor:
    """(..., C) log-gates -> (..., C, C) with entry [t, i] = prod_{i<s<=t} a_s for i <= t, else 0.

    strict: entry [t, i] = prod_{i<s<t} a_s for i < t (the decay up to just before token t), else 0.
    """
    C = log_gate.shape[-1]
    total = log_gate.cumsum(-1)
    until = total - log_gate if strict else total  # log prod_{s<t} or log prod_{s<=t}
    keep = torch.ones(C, C, dtype=torch.bool, device=log_gate.device).tril(-1 if strict else 0)
    # Mask before exp: above the diagonal the differences are positive and may overflow.
    return (until[..., :, None] - total[..., None, :]).masked_fill(~keep, float("-inf")).exp()

