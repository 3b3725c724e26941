"""One word-level vocabulary over every task, and fixed-length next-token encoding."""
from __future__ import annotations

import torch

from nested_learning.data.tasks import TaskSequence

PAD, EOS = "<pad>", "<eos>"


class Vocabulary:
    """Words in order of first appearance over all tasks (train, then eval), after <pad>=0, <eos>=1."""

    def __init__(self, sequence: TaskSequence):
        words: dict[str, int] = {PAD: 0, EOS: 1}
        longest = 0
        for task in sequence.tasks:
            for sentence in task.train + task.eval:
                tokens = sentence.split()
                longest = max(longest, len(tokens))
                for word in tokens:
                    words.setdefault(word, len(words))
        self.index = words
        self.words = list(words)
        # A sentence becomes its words then <eos>: the longest one fills seq_len exactly.
        self.seq_len = longest + 1

    pad_id = 0
    eos_id = 1

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, sentences: tuple[str, ...] | list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (inputs, targets), each (N, seq_len - 1): targets are inputs shifted by one."""
        ids = torch.full((len(sentences), self.seq_len), self.pad_id, dtype=torch.long)
        for row, sentence in enumerate(sentences):
            tokens = [self.index[w] for w in sentence.split()] + [self.eos_id]
            ids[row, : len(tokens)] = torch.tensor(tokens)
        return ids[:, :-1], ids[:, 1:]

    def decode(self, ids: torch.Tensor) -> str:
        return " ".join(self.words[i] for i in ids.tolist() if i != self.pad_id)
