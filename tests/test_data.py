"""Tasks, vocabulary, accuracy over padding, and the task schedule of the data module."""
import pytest
import torch

from nested_learning.cli.config_checks import epoch_schedule
from nested_learning.data.datamodule import TaskSequenceDataModule
from nested_learning.data.tasks import from_sentences
from nested_learning.data.vocab import Vocabulary
from nested_learning.errors import UserError
from nested_learning.run.lit_module import token_accuracy
from nested_learning.strategies.base import Naive

from .conftest import compose_config
from hydra.utils import instantiate


def commute():
    return instantiate(compose_config().task, _convert_="all")


def test_commute_tasks_are_the_seeds():
    seq = commute()
    assert seq.names == ["Task_0", "Task_1"]
    assert seq.tasks[0].train[2] == "i wait on the platform for the blue train"
    assert seq.tasks[1].train[1] == "i take a cab to the busy airport"
    assert all(len(t.train) == 4 for t in seq.tasks) and seq.repeats == 32
    assert not any(t.heldout for t in seq.tasks)  # the seed evaluates on its training sentences


def test_vocabulary_and_sequence_length():
    vocab = Vocabulary(commute())
    assert vocab.words[:3] == ["<pad>", "<eos>", "i"]
    assert vocab.seq_len == 10  # longest sentence has 9 words, +1 for <eos>
    inputs, targets = vocab.encode(["i take a cab"])
    assert inputs.shape == targets.shape == (1, 9)
    assert vocab.decode(inputs[0]) == "i take a cab <eos>"
    torch.testing.assert_close(targets[0, :-1], inputs[0, 1:])


def test_accuracy_skips_padding_unless_asked():
    targets = torch.tensor([[5, 6, 1, 0, 0]])  # two words, <eos>, two pads
    predicted = torch.tensor([[5, 9, 1, 0, 0]])
    logits = torch.nn.functional.one_hot(predicted, 10).float()
    assert token_accuracy(logits, targets, pad_id=0, count_padding=False) == (2, 3)
    assert token_accuracy(logits, targets, pad_id=0, count_padding=True) == (4, 5)  # the seed's count


def test_empty_task_and_empty_sentence_name_the_field():
    with pytest.raises(UserError, match=r"task\.tasks\.B: empty task"):
        from_sentences("x", {"A": ["a b"], "B": []})
    with pytest.raises(UserError, match=r"task\.tasks\.A\[1\]: empty sentence"):
        from_sentences("x", {"A": ["a b", "   "]})


def test_epochs_per_task_schedule_and_errors():
    assert epoch_schedule(3, 2) == [3, 3]
    assert epoch_schedule([1, 4], 2) == [1, 4]
    with pytest.raises(UserError) as err:
        epoch_schedule([1, 2, 3], 2)
    assert str(err.value) == "epochs_per_task=[1, 2, 3]: give one integer or 2 (one per task)"
    with pytest.raises(UserError) as err:
        epoch_schedule([0, 2], 2)
    assert str(err.value) == "epochs_per_task=[0, 2]: must be an integer >= 1, or a list of them, one per task"


def test_data_module_serves_the_task_of_the_epoch():
    dm = TaskSequenceDataModule(commute(), [2, 3], batch_size=64, seed=0, strategy=Naive())
    assert dm.task_of_epoch == [0, 0, 1, 1, 1]
    assert dm.last_epoch_of_task == [1, 4]
    assert len(dm.train_sets[0]) == 4 * 32
    assert {split: [len(ds) for ds in sets] for split, sets in dm.eval_sets.items()} == {"eval": [4, 4]}
