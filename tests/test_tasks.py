"""The task library: commute4, generated stories, synthetic rules and tasks from a folder of text files."""
import pytest
from hydra.utils import instantiate

from nested_learning.data.folder import folder_tasks
from nested_learning.data.stories import POOLS, story_tasks
from nested_learning.data.synthetic import synthetic_tasks
from nested_learning.data.vocab import Vocabulary
from nested_learning.errors import UserError

from .conftest import compose_config


def task_config(name, *overrides):
    return instantiate(compose_config(f"task={name}", *overrides).task, _convert_="all")


def assert_heldout_never_trained(sequence):
    trained = {s for task in sequence.tasks for s in task.train}
    for task in sequence.tasks:
        assert task.heldout and task.splits["eval"], task.name
        assert not set(task.splits["eval"]) & trained, task.name


def test_commute4_is_four_trips_with_heldout_sentences():
    seq = task_config("commute4")
    assert seq.names == ["bus", "flight", "metro", "boat"]
    assert all(len(t.train) == 4 and len(t.splits["eval"]) == 3 for t in seq.tasks)
    assert seq.tasks[1].train[1] == "i take a cab to the busy airport"  # the seed's flight
    assert_heldout_never_trained(seq)
    vocab = Vocabulary(seq)
    trained_words = {w for t in seq.tasks for s in t.train for w in s.split()}
    # held-out sentences recombine trained words: a new word could not be predicted at all
    assert {w for t in seq.tasks for s in t.splits["eval"] for w in s.split()} <= trained_words
    assert vocab.seq_len == 11


@pytest.mark.parametrize("name", ["stories", "synthetic"])
def test_generated_heldout_never_appears_in_training(name):
    assert_heldout_never_trained(task_config(name))
    assert_heldout_never_trained(task_config(name, "task.seed=5", "task.num_tasks=6"))


def test_stories_sizes_and_split():
    seq = story_tasks(num_tasks=3, sentences_per_task=20, heldout_fraction=0.25)
    assert seq.names == ["bus", "flight", "metro"]
    for task in seq.tasks:
        assert len(task.train) == 15 and len(task.splits["eval"]) == 5
        assert len(set(task.train + task.splits["eval"])) == 20  # distinct
    assert not any(t.heldout for t in story_tasks(sentences_per_task=8, heldout_fraction=0.0).tasks)


def test_stories_are_deterministic_for_a_seed_and_differ_across_seeds():
    assert story_tasks(seed=1) == story_tasks(seed=1)
    assert story_tasks(seed=1).tasks[0].train != story_tasks(seed=2).tasks[0].train
    assert synthetic_tasks(seed=1) == synthetic_tasks(seed=1)
    assert synthetic_tasks(seed=1).tasks[0].train != synthetic_tasks(seed=2).tasks[0].train


def pool_words(task) -> set[str]:
    pooled = {w for pool in POOLS.values() for w in pool}
    return {w for s in task.train + task.splits["eval"] for w in s.split()} & pooled


def test_stories_overlap_sets_the_shared_slot_words():
    apart = story_tasks(num_tasks=4, sentences_per_task=150, overlap=0.0)
    words = [pool_words(t) for t in apart.tasks]
    assert all(not words[i] & words[j] for i in range(4) for j in range(i + 1, 4))
    together = story_tasks(num_tasks=4, sentences_per_task=150, overlap=1.0)
    assert len({frozenset(pool_words(t)) for t in together.tasks}) == 1
    half = story_tasks(num_tasks=2, sentences_per_task=150, overlap=0.5)
    shared = pool_words(half.tasks[0]) & pool_words(half.tasks[1])
    assert len(shared) == 3 * 2  # colour, object and time: 2 of 4 words each


def test_stories_refuse_more_sentences_than_the_templates_give():
    with pytest.raises(UserError, match=r"task.sentences_per_task=5000: the templates of task 'bus' give only \d+ distinct"):
        story_tasks(sentences_per_task=5000)
    with pytest.raises(UserError, match=r"task.overlap=0.0: 8 tasks .* need 32 words per pool, the pools have 24"):
        story_tasks(num_tasks=8, overlap=0.0)
    with pytest.raises(UserError, match=r"task.num_tasks=9: must lie in 1..8"):
        story_tasks(num_tasks=9)
    with pytest.raises(UserError, match=r"task.heldout_fraction=0.5 of 1 sentences"):
        story_tasks(sentences_per_task=1, heldout_fraction=0.5)


def test_synthetic_tasks_follow_different_rules():
    seq = synthetic_tasks(num_tasks=3, vocab_size=16, length=6, branching=1, sequences_per_task=12)
    assert seq.names == ["rule0", "rule1", "rule2"]
    successors = []
    for task in seq.tasks:
        rule = {}
        for sentence in task.train + task.splits["eval"]:
            tokens = sentence.split()
            assert len(tokens) == 6 and all(t[0] == "t" and 0 <= int(t[1:]) < 16 for t in tokens)
            for a, b in zip(tokens, tokens[1:]):
                assert rule.setdefault(a, b) == b  # branching 1: one successor per token
        successors.append(rule)
    assert successors[0] != successors[1] and successors[1] != successors[2] and successors[0] != successors[2]
    with pytest.raises(UserError, match=r"task.sequences_per_task=5: 4 tokens, length 2 and branching 1 give only 4"):
        synthetic_tasks(vocab_size=4, length=2, branching=1, sequences_per_task=5)
    with pytest.raises(UserError, match=r"task.branching=9: must lie in 1..vocab_size \(8\)"):
        synthetic_tasks(vocab_size=8, branching=9)


def test_synthetic_scales_without_listing_its_space():
    seq = synthetic_tasks(num_tasks=2, vocab_size=500, length=40, branching=4, sequences_per_task=300)
    assert len(Vocabulary(seq)) > 400 and len(seq.tasks[0].train) == 225


def write(folder, name, content):
    path = folder / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def test_folder_tasks_in_name_order_with_optional_heldout_files(tmp_path):
    write(tmp_path, "2_boat.txt", "i wait on the dock\n\ni watch waves go by\n")
    write(tmp_path, "1_bus.txt", "i wait at the stop\n")
    write(tmp_path, "1_bus.eval.txt", "i wait at the dock\n")
    write(tmp_path, ".DS_Store", b"\0\1")
    seq = folder_tasks(str(tmp_path), repeats=2)
    assert seq.names == ["1_bus", "2_boat"] and seq.repeats == 2
    assert seq.tasks[0].splits["eval"] == ("i wait at the dock",) and seq.tasks[0].heldout
    assert seq.tasks[1].train == ("i wait on the dock", "i watch waves go by") and not seq.tasks[1].heldout
    assert task_config("folder").names == ["1_taxi", "2_tram"]  # the bundled example


@pytest.mark.parametrize(
    "name,content,message",
    [
        ("b.txt", "  \n\n", "empty file"),
        ("b.txt", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", "not a text file"),
        ("b.txt", "caf\xe9 au lait\n".encode("latin-1"), "not UTF-8 text"),
        ("b.eval.txt", "a b\n", "held-out file without a task file b.txt"),
        ("b.csv", "a,b\n", "not a <task>.txt"),
    ],
)
def test_folder_errors_name_the_file(tmp_path, name, content, message):
    write(tmp_path, "a.txt", "a fine sentence\n")
    bad = write(tmp_path, name, content)
    with pytest.raises(UserError, match=message) as err:
        folder_tasks(str(tmp_path))
    assert str(bad) in str(err.value) and "\n" not in str(err.value)


def test_folder_missing_or_without_tasks_names_the_folder(tmp_path):
    with pytest.raises(UserError, match=rf"task.path={tmp_path / 'nope'}: no such folder"):
        folder_tasks(str(tmp_path / "nope"))
    with pytest.raises(UserError, match=rf"task.path={tmp_path}: no <task>.txt files"):
        folder_tasks(str(tmp_path))


def test_folder_heldout_file_may_not_repeat_a_training_sentence(tmp_path):
    from nested_learning.data.folder import folder_tasks

    (tmp_path / "1_bus.txt").write_text("i ride the bus\ni see the town\n")
    (tmp_path / "2_boat.txt").write_text("i sail the boat\n")
    (tmp_path / "2_boat.eval.txt").write_text("i  ride the bus\n")  # bus training sentence, spacing aside
    with pytest.raises(UserError, match=r"2_boat.eval.txt: 'i  ride the bus' is also a training sentence"):
        folder_tasks(str(tmp_path))
