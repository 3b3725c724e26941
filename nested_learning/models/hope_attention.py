"""model=hope_attention: the causal Transformer with every MLP replaced by a CMS chain (§8.3, Eq. 70-71).

The paper's Hope-Attention: HOPE with softmax attention in place of self-modifying Titans. The
embedding, positions, causal mask and stacking are TinyTransformerLM's; only the layer differs.
With periods=[1] the layer computes exactly what nn.TransformerEncoderLayer computes (tested).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from nested_learning.data.vocab import Vocabulary
from nested_learning.models.cms import CMS, CMSNet
from nested_learning.models.transformer import TinyTransformerLM


class HopeAttentionBlock(nn.Module):
    """Post-LN: h = norm1(x + dropout(attention(x))); y = norm2(CMS(h)). (B, T, D) -> (B, T, D).

    Written against the interface nn.TransformerEncoder calls (src, src_mask, src_key_padding_mask,
    is_causal; a `self_attn` attribute). Not a subclass of nn.TransformerEncoderLayer on purpose: that
    class's inference fast path reads its own linear1/linear2 and would bypass the CMS.
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float, cms: CMS):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout, batch_first=True)
        self.cms = cms
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        src: torch.Tensor,
        src_mask: torch.Tensor | None = None,
        src_key_padding_mask: torch.Tensor | None = None,
        is_causal: bool = False,
        valid: torch.Tensor | None = None,
    ) -> torch.Tensor:
        attended, _ = self.self_attn(
            src, src, src, attn_mask=src_mask, key_padding_mask=src_key_padding_mask,
            need_weights=False, is_causal=is_causal,
        )
        h = self.norm1(src + self.dropout(attended))
        return self.norm2(self.cms(h, valid))


class HopeAttentionLM(CMSNet, TinyTransformerLM):
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
        periods: Sequence[int] = (1, 3, 6),
        level_lrs: Sequence[float | None] | None = None,
        cms_variant: str = "sequential",
        cms_clock: str = "step",
        cms_state: str = "reset",
        cms_inner_lr: float | Sequence[float] = 1e-3,
    ):
        def make_block() -> HopeAttentionBlock:
            cms = CMS(d_model, d_ff, periods, level_lrs, cms_variant, dropout, cms_clock, cms_state, cms_inner_lr)
            return HopeAttentionBlock(d_model, n_heads, dropout, cms)

        super().__init__(
            vocab_size, max_len, d_model, n_heads, d_ff, n_layers, dropout, causal, positional, make_block=make_block
        )

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        # TinyTransformerLM's forward, with the padding mask handed to every layer for the CMS.
        h, mask = self.embed_tokens(tokens)
        valid = tokens != Vocabulary.pad_id  # (B, T): padding writes nothing into a token-clock CMS
        for layer in self.blocks.layers:
            h = layer(h, src_mask=mask, is_causal=self.causal, valid=valid)
        return self.head(h)  # (B, T, V)
