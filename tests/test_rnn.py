"""The GRU / LSTM baseline."""
import pytest
import torch

from nested_learning.errors import UserError
from nested_learning.models.rnn import RecurrentLM


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_rnn_maps_tokens_to_logits(cell):  # causality: test_models.py::test_earlier_logits_ignore_later_tokens
    torch.manual_seed(0)
    net = RecurrentLM(vocab_size=11, max_len=7, cell=cell).eval()
    tokens = torch.randint(0, 11, (3, 7))  # (B, T)
    assert net(tokens).shape == (3, 7, 11)
    assert net.rnn.hidden_size == 96  # the seed HOPE cell's width


def test_rnn_rejects_an_unknown_cell():
    with pytest.raises(UserError, match="model.cell=rnn: choose one of gru, lstm"):
        RecurrentLM(vocab_size=5, max_len=4, cell="rnn")
