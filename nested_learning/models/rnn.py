"""GRU and LSTM baselines: one shared hidden state, the "RNN" row of the seed's comparison table.

Built like the seed HOPE model so that only the recurrence differs: embedding (d_model 96, the HOPE
cell's width) -> GRU or LSTM -> LayerNorm(eps 1e-6) -> linear head.
"""
from __future__ import annotations

from torch import nn

from nested_learning.errors import UserError

CELLS = {"gru": nn.GRU, "lstm": nn.LSTM}


class RecurrentLM(nn.Module):
    def __init__(self, vocab_size: int, max_len: int, cell: str = "gru", d_model: int = 96, num_layers: int = 1):
        super().__init__()
        del max_len  # a recurrence needs no position table
        if cell not in CELLS:
            raise UserError(f"model.cell={cell}: choose one of {', '.join(CELLS)}")
        if num_layers < 1:
            raise UserError(f"model.num_layers={num_layers}: must be an integer >= 1")
        self.embed = nn.Embedding(vocab_size, d_model)
        self.rnn = CELLS[cell](d_model, d_model, num_layers=num_layers, batch_first=True)
        self.norm = nn.LayerNorm(d_model, eps=1e-6)
        self.head = nn.Linear(d_model, vocab_size)

    def forward(self, tokens):
        h, _ = self.rnn(self.embed(tokens))  # (B, T, D); the final state is not needed
        return self.head(self.norm(h))  # (B, T, V)
