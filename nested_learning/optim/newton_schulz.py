"""Newton-Schulz orthogonalisation (NL Eq. 42-44) and the matrix view of a parameter.

NL §4.2 reads Muon's `NewtonSchulz_k(m)` as a learned map of the momentum onto an orthogonal space:
one gradient step on `||O^T O - I||_F^2` from `O_0 = g` (Eq. 43-44) is the cubic iteration
`O <- 1.5 O - 0.5 O O^T O`. Following Muon (Jordan et al. 2024), as Algorithm 1 (M3) says it does, we
use Muon's quintic iteration instead: with its coefficients five steps push every singular value of a
Frobenius-normalised matrix into roughly [0.7, 1.2] (not exactly 1: the result is U S' V^T with S'
near I, which Muon found trains as well as U V^T), while the cubic needs many more steps for small
singular values. The singular vectors are kept: only the spectrum is flattened.
"""
from __future__ import annotations

import torch

# Muon's quintic p(x) = a x + b x^3 + c x^5, chosen for a steep slope at 0 (KellerJordan/Muon).
QUINTIC = (3.4445, -4.7750, 2.0315)


def as_matrix(tensor: torch.Tensor) -> torch.Tensor:
    """A view of a parameter (or its gradient) as a matrix: (out, in...) -> (out, prod(in)); vectors are one row."""
    if tensor.ndim >= 2:
        return tensor.reshape(tensor.shape[0], -1)
    return tensor.reshape(1, -1)


def newton_schulz(matrix: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """Approximately orthogonalise a (r, c) matrix: U S V^T -> U S' V^T with S' close to I."""
    a, b, c = QUINTIC
    x = matrix / (matrix.norm() + 1e-7)  # spectral norm <= Frobenius norm <= 1: inside p's basin
    wide = x.shape[0] <= x.shape[1]
    if not wide:
        x = x.T  # iterate on the (small, small) Gram matrix
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x if wide else x.T
