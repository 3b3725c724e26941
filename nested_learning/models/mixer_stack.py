"""The layer stack shared by the cms, titans, hope_nl, linear_attention and deltanet models: a token
mixer followed by CMS, in one of two layouts.

post-LN (norm_first=False; cms, titans, hope_nl):
    h = norm1(x + dropout(mixer(x)))      # mixer: causal conv | Titans memory | self-modifying Titans
    y = norm2(CMS(h))                     # CMS carries its own residuals (cms.py)
pre-LN (norm_first=True; linear_attention, deltanet, as in Irie et al. 2023's layers.py):
    h = x + dropout(mixer(norm1(x)))
    y = h + (CMS(z) - z),  z = norm2(h)   # what CMS adds to its normalised input goes onto the residual stream

The post-LN layout is the seed Transformer's (transformer.py) with attention replaced by the mixer
and the feed-forward by CMS, so the models differ only in the part under study. HOPE (Eq. 94-97) is
this block with the self-modifying Titans mixer. With one CMS level of period 1 the pre-LN block is
exactly Irie et al.'s fast-weight layer followed by its residual feed-forward layer.
"""
from __future__ import annotations

import logging
from typing import Callable

import torch
from torch import nn

from nested_learning.data.vocab import Vocabulary
from nested_learning.errors import UserError
from nested_learning.models.cms import CMS, CMSNet

log = logging.getLogger(__name__)


class CausalConv1d(nn.Module):
    """Depthwise convolution over time that sees tokens t-width+1..t only: (B, T, D) -> (B, T, D).

    The short local convolution of Titans and HOPE (§8.3: "local convolutions with window size of 4").
    """

    def __init__(self, channels: int, width: int):
        super().__init__()
        if width < 1:
            raise UserError(f"model.conv_width={width}: must be an integer >= 1 (1 = no mixing across tokens)")
        self.width = width
        self.conv = nn.Conv1d(channels, channels, width, groups=channels, padding=width - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T = x.shape[1]
        # contiguous (B, D, T): the convolution's backward on the transposed view takes 1.4x as long (one thread)
        return self.conv(x.transpose(1, 2).contiguous())[..., :T].transpose(1, 2)  # left padding only: causal


class MixerCMSBlock(nn.Module):
    def __init__(self, d_model: int, mixer: nn.Module, cms: CMS, dropout: float, norm_first: bool = False):
        super().__init__()
        self.mixer, self.cms, self.norm_first = mixer, cms, norm_first
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:  # (B, T, D) -> (B, T, D)
        if self.norm_first:
            h = x + self.dropout(self.mixer(self.norm1(x)))
            z = self.norm2(h)
            return h + (self.cms(z, valid) - z)
        h = self.norm1(x + self.dropout(self.mixer(x)))
        return self.norm2(self.cms(h, valid))


class MixerCMSLM(CMSNet, nn.Module):
    """embedding -> n_layers x MixerCMSBlock -> linear head; token ids (B, T) -> logits (B, T, V).

    No position table: every mixer here is causal and reads the sequence as a recurrence (or a
    convolution), which needs none; Irie et al. 2023 run their baselines without positional encodings.
    """

    def __init__(
        self,
        vocab_size: int,
        d_model: int,
        n_layers: int,
        make_mixer: Callable[[], nn.Module],
        make_cms: Callable[[], CMS],
        dropout: float,
        norm_first: bool = False,
    ):
        super().__init__()
        if n_layers < 1:
            raise UserError(f"model.n_layers={n_layers}: must be an integer >= 1")
        self.embed = nn.Embedding(vocab_size, d_model)
        self.blocks = nn.ModuleList(MixerCMSBlock(d_model, make_mixer(), make_cms(), dropout, norm_first) for _ in range(n_layers))
        self.head = nn.Linear(d_model, vocab_size)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.embed(tokens)  # (B, T, D)
        valid = tokens != Vocabulary.pad_id  # (B, T): padding writes nothing into a token-clock CMS
        for block in self.blocks:
            h = block(h, valid)
        return self.head(h)  # (B, T, V)


def check_heads(d_model: int, n_heads: int) -> int:
    """Width of one head; the memories of the recurrent mixers are per head."""
    if n_heads < 1 or d_model % n_heads:
        raise UserError(f"model.n_heads={n_heads}: must be >= 1 and divide model.d_model={d_model}")
    return d_model // n_heads


def check_chunk(chunk_size: int) -> None:
    if chunk_size < 1:
        raise UserError(f"model.chunk_size={chunk_size}: must be an integer >= 1 (tokens per memory update chunk)")


def warn_if_one_chunk(chunk_size: int, max_len: int) -> None:
    """Every write of a chunk takes its gradient at the state the chunk started from (Titans §3.2, NL Eq. 90),
    so a chunk that holds a whole input sequence turns the recurrence into a sum of writes that all saw the
    initial memory (positions still read those writes, TTT's dual form): say so."""
    positions = max_len - 1  # the inputs: every token of a sequence but its last (data/vocab.py)
    if chunk_size >= positions:
        log.warning(
            "model.chunk_size=%d holds every sequence of this task whole (inputs of at most %d tokens): every write "
            "takes its gradient at the sequence's initial memory, so the memory sums writes instead of following its "
            "recurrence; give model.chunk_size=1 (token "
            "by token) or another below %d", chunk_size, positions, positions)
