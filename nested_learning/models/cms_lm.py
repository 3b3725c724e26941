"""model=cms: a causal short convolution for token mixing, then a CMS chain, per layer (Eq. 70-71).

The convolution only lets a position see the few tokens before it; everything the model stores
across training lives in the CMS levels, whose parameters update at their own periods. With
periods=[1,1,1] it is the same network as the default three levels, trained every step: the matched
control for the update rule. periods=[1] is the one-level case (one MLP per layer, Transformer-like),
a smaller network, not the same one.
"""
from __future__ import annotations

from functools import partial
from typing import Sequence

from nested_learning.models.cms import CMS
from nested_learning.models.mixer_stack import CausalConv1d, MixerCMSLM


class CMSLM(MixerCMSLM):
    def __init__(
        self,
        vocab_size: int,
        max_len: int,
        d_model: int = 64,
        d_ff: int = 128,
        n_layers: int = 2,
        conv_width: int = 4,
        periods: Sequence[int] = (1, 3, 6),
        level_lrs: Sequence[float | None] | None = None,
        cms_variant: str = "sequential",
        cms_clock: str = "step",
        cms_state: str = "reset",
        cms_inner_lr: float | Sequence[float] = 1e-3,
        dropout: float = 0.1,
    ):
        del max_len  # the convolution needs no position table
        super().__init__(
            vocab_size,
            d_model,
            n_layers,
            make_mixer=partial(CausalConv1d, d_model, conv_width),
            make_cms=partial(CMS, d_model, d_ff, periods, level_lrs, cms_variant, dropout, cms_clock, cms_state, cms_inner_lr),
            dropout=dropout,
        )
