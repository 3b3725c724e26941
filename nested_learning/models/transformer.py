"""The seed's tiny Transformer, made causal.

The seed demo (Keras) stacks post-LN encoder blocks (attention, residual + LayerNorm, feed-forward,
residual + LayerNorm) over token embeddings with neither a causal mask nor positions. Trained on
next-token prediction, position t then attends to token t+1, which is its own target: accuracy
measures copying, not prediction. Here the mask and learned positional embeddings are on by default;
`causal=False, positional=False` rebuilds the seed's leaky variant so the leak can be measured.
"""
from __future__ import annotations

import logging
from typing import Callable

import torch
from torch import nn

from nested_learning.errors import UserError
from nested_learning.models.mixer_stack import check_heads

log = logging.getLogger(__name__)


class TinyTransformerLM(nn.Module):
    def __init__(
        self,
        vocab_size: int,
        max_len: int,
        d_model: int = 64,
        n_heads: int = 2,
        d_ff: int = 128,
        n_layers: int = 2,
        dropout: float = 0.1,
        causal: bool = True,
        positional: bool = True,
        make_block: Callable[[], nn.Module] | None = None,
    ):
        """`make_block`: builds one layer; it is called n_layers times, so every layer is constructed
        and initialised independently (hope_attention.py passes one whose MLP is CMS). Default: the
        seed's post-LN encoder layer built from n_heads, d_ff and dropout."""
        super().__init__()
        check_heads(d_model, n_heads)
        if n_layers < 1:
            raise UserError(f"model.n_layers={n_layers}: must be an integer >= 1")
        if not causal:
            log.warning(
                "model.causal=false: no causal mask, so each position can see the next token, which is its "
                "target (the seed's leak); next-token accuracy will overstate what the model learned"
            )
        self.causal = causal
        self.embed = nn.Embedding(vocab_size, d_model)
        self.position = nn.Embedding(max_len, d_model) if positional else None
        if make_block is None:
            make_block = lambda: nn.TransformerEncoderLayer(  # noqa: E731
                d_model, n_heads, dim_feedforward=d_ff, dropout=dropout, batch_first=True, norm_first=False
            )
        layers = [make_block() for _ in range(n_layers)]
        # nn.TransformerEncoder deep-copies the layer it is given, so every copy would start with the
        # same weights (unlike the seed's Keras model); keep its forward (mask, is_causal, fast-path
        # checks) but replace the copies with the independently built layers.
        self.blocks = nn.TransformerEncoder(layers[0], n_layers, enable_nested_tensor=False)
        self.blocks.layers = nn.ModuleList(layers)
        self.head = nn.Linear(d_model, vocab_size)

    def embed_tokens(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(embeddings plus positions (B, T, D), the causal attention mask (T, T) or None)."""
        T = tokens.shape[1]
        h = self.embed(tokens)  # (B, T, D)
        if self.position is not None:
            h = h + self.position(torch.arange(T, device=tokens.device))  # (T, D) broadcast over B
        mask = nn.Transformer.generate_square_subsequent_mask(T, device=tokens.device) if self.causal else None
        return h, mask

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h, mask = self.embed_tokens(tokens)
        h = self.blocks(h, mask=mask, is_causal=self.causal)  # (B, T, D)
        return self.head(h)  # (B, T, V)
