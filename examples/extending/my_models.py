"""A model outside the package: a causal convolution language model.

Each position reads itself and the `kernel - 1` tokens before it (a causal depthwise convolution,
zero-padded on the left), so no position sees its own target. A buffer counts the training batches
the model has seen: state kept in parameters or buffers travels in the checkpoint, so a resumed run
continues with it, and `extra_results` puts it in results.json under `model_state`.
"""
from __future__ import annotations

from typing import Any, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from nested_learning.errors import UserError


class CausalConvLM(nn.Module):
    def __init__(self, vocab_size: int, max_len: int, d_model: int = 64, kernel: int = 3):
        super().__init__()
        del max_len  # a convolution needs no position table
        if kernel < 1:
            raise UserError(f"model.kernel={kernel}: must be an integer >= 1")
        self.kernel = kernel
        self.embed = nn.Embedding(vocab_size, d_model)
        self.conv = nn.Conv1d(d_model, d_model, kernel, groups=d_model)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)
        self.register_buffer("training_batches", torch.zeros((), dtype=torch.long))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.training_batches += 1
        x = self.embed(tokens).transpose(1, 2)  # (B, D, T)
        x = self.conv(F.pad(x, (self.kernel - 1, 0))).transpose(1, 2)  # (B, T, D): position t reads t-k+1..t
        return self.head(self.norm(F.gelu(x)))  # (B, T, V)

    def extra_results(self, eval_batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, Any]:
        return {"training_batches": int(self.training_batches)}
