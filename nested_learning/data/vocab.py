"""One word-level vocabulary over every task, and fixed-length encoding of examples with their targets."""
from __future__ import annotations

import torch

from nested_learning.data.tasks import EOS, PAD, Example, TaskSequence, example_words


class Vocabulary:
    """Words (inputs and explicit targets) in order of first appearance over all tasks (train, then
    each evaluation split), after <pad>=0, <eos>=1."""

    def __init__(self, sequence: TaskSequence):
        words: dict[str, int] = {PAD: 0, EOS: 1}
        longest = 0
        for task in sequence.tasks:
            for example in task.train + sum(task.splits.values(), ()):
                tokens, targets = example_words(example)
                longest = max(longest, len(tokens))
                for word in tokens + (targets or []):
                    words.setdefault(word, len(words))
        self.index = words
        self.words = list(words)
        # A sentence becomes its words then <eos>: the longest one fills seq_len exactly.
        self.seq_len = longest + 1

    pad_id = 0
    eos_id = 1

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, examples: tuple[Example, ...] | list[Example]) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (inputs, targets), each (N, seq_len - 1), <pad> after the end.

        A sentence's inputs are its words then <eos>, its targets the inputs shifted by one; a pair's targets are its target words.
        """
        inputs = torch.full((len(examples), self.seq_len - 1), self.pad_id, dtype=torch.long)
        targets = torch.full_like(inputs, self.pad_id)
        for row, example in enumerate(examples):
            words, target_words = example_words(example)
            if target_words is None:  # a sentence: <eos> is also an input (its target <pad>) when there is room
                words, target_words = (words + [EOS])[: self.seq_len - 1], words[1:] + [EOS]
            ids = [self.index[w] for w in words]
            inputs[row, : len(ids)] = torch.tensor(ids)
            targets[row, : len(target_words)] = torch.tensor([self.index[w] for w in target_words])
        return inputs, targets

    def decode(self, ids: torch.Tensor) -> str:
        return " ".join(self.words[i] for i in ids.tolist() if i != self.pad_id)
