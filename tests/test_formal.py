"""Formal languages (data/formal.py), explicit per-position targets, evaluation splits and sequence accuracy.

The recognizers here are written apart from the generator (regular expressions and counting), so a
generator bug cannot hide behind its own definition of the language.
"""
from __future__ import annotations

import json
import re
from collections import Counter

import pytest
import torch

from nested_learning.data.formal import LANGUAGES, example, formal_tasks
from nested_learning.data.vocab import Vocabulary
from nested_learning.errors import UserError
from nested_learning.run.lit_module import sequence_accuracy, token_accuracy
from tests.conftest import run_cli


def _counter(string: str, letters: str) -> bool:
    match = re.fullmatch("".join(f"({c}+)" for c in letters), string)
    return bool(match) and len({len(g) for g in match.groups()}) == 1


def _shuffle2(string: str) -> bool:
    depth = {"(": 0, "[": 0}
    for char in string:
        kind = {")": "(", "]": "["}.get(char, char)
        if kind not in depth:
            return False
        depth[kind] += 1 if char in "([" else -1
        if depth[kind] < 0:
            return False
    return not any(depth.values())


MEMBER = {
    "parity": lambda s: bool(re.fullmatch(r"0*(10*10*)*", s)),  # an even number of 1s
    "aa": lambda s: bool(re.fullmatch(r"(aa)*", s)),
    "abab": lambda s: bool(re.fullmatch(r"(abab)*", s)),
    "anbn": lambda s: _counter(s, "ab"),
    "anbncn": lambda s: _counter(s, "abc"),
    "shuffle2": _shuffle2,
}
SIZE = {"anbn": lambda s: len(s) // 2, "anbncn": lambda s: len(s) // 3}  # the bins of counter languages are over n


def _string(pair: tuple[str, str]) -> str:
    return pair[0].replace(" ", "")


@pytest.mark.parametrize("language", list(LANGUAGES))
def test_every_generated_string_is_a_member_with_consistent_targets_and_disjoint_bins(language):
    assert set(MEMBER) == set(LANGUAGES)
    task = formal_tasks(language, train_size=60, eval_size=20, train_lengths=[1, 12], bin1_lengths=[13, 20], seed=3).tasks[0]
    assert list(task.splits) == ["bin0", "bin1"]
    ranges = {"train": (1, 12), "bin0": (1, 12), "bin1": (13, 20)}
    for split, pairs in (("train", task.train), *task.splits.items()):
        assert pairs and (len(set(pairs)) == len(pairs) or split == "train" and LANGUAGES[language].one_per_size)
        for pair in pairs:
            string, targets = _string(pair), pair[1].split()
            assert MEMBER[language](string), (split, string)
            low, high = ranges[split]
            assert low <= SIZE.get(language, len)(string) <= high, (split, string)
            assert len(targets) == len(string)
            for t, target in enumerate(targets):
                # `$` exactly where the prefix is a member; the character that follows is always allowed
                assert ("$" in target) == MEMBER[language](string[: t + 1]), (string, t, target)
                if t + 1 < len(string):
                    assert string[t + 1] in target, (string, t, target)
    train, bin0, bin1 = ({_string(p) for p in ps} for ps in (task.train, task.splits["bin0"], task.splits["bin1"]))
    assert not bin0 & bin1
    if LANGUAGES[language].one_per_size:  # one member per length or n: nothing to hold out (documented)
        assert bin0 == train and not task.heldout
        # an epoch of train_size strings: every member, each as often as the others (to within one)
        counts = Counter(_string(p) for p in task.train)
        assert len(task.train) == max(60, len(bin0)) and max(counts.values()) - min(counts.values()) <= 1
    else:
        assert not train & bin0 and task.heldout and len(train) == 60 and len(bin0) == len(bin1) == 20


def test_per_position_targets_on_hand_examples():
    assert example("0110", "parity") == ("0 1 1 0", "<01$> <01> <01$> <01$>")
    assert example("aaaa", "aa") == ("a a a a", "<a> <a$> <a> <a$>")
    assert example("abab", "abab") == ("a b a b", "<b> <a> <b> <a$>")
    assert example("aabb", "anbn") == ("a a b b", "<ab> <ab> <b> <$>")
    assert example("abc", "anbncn") == ("a b c", "<ab> <c> <$>")
    assert example("([)]", "shuffle2") == ("( [ ) ]", "<()[> <()[]> <([]> <([$>")


def _conflicting_prefixes(sequence) -> list[tuple[str, ...]]:
    """Input prefixes that some task's strings give one target and another task's a different one."""
    targets: dict[tuple[str, ...], set[str]] = {}
    for task in sequence.tasks:
        for inputs, goals in (*task.train, *task.splits["bin1"]):
            words, goals = inputs.split(), goals.split()
            for t in range(len(words)):
                targets.setdefault(tuple(words[: t + 1]), set()).add(goals[t])
    return [prefix for prefix, seen in targets.items() if len(seen) > 1]


def test_language_markers_give_every_input_one_target_across_a_sequence():
    assert example("abab", "abab", marker=True) == ("#abab a b a b", "<a> <b> <a> <b> <a$>")
    assert example("01", "parity", marker=True) == ("#parity 0 1", "<01> <01$> <01>")
    assert example("[]", "shuffle2", marker=True) == ("#shuffle2 [ ]", "<([> <([]> <([$>")
    languages = list(LANGUAGES)
    make = lambda marker: formal_tasks(languages, train_size=40, eval_size=10, train_lengths=[1, 8],  # noqa: E731
                                       bin1_lengths=[9, 12], marker=marker)
    # Without markers (aa)*, (abab)*, a^n b^n, a^n b^n c^n disagree after the very first `a`.
    assert ("a",) in _conflicting_prefixes(make(False))
    assert _conflicting_prefixes(make(True)) == []


def test_generation_is_seeded():
    make = lambda seed: formal_tasks("shuffle2", train_size=30, eval_size=10, train_lengths=[2, 10], bin1_lengths=[11, 14], seed=seed)  # noqa: E731
    assert make(1) == make(1) and make(1).tasks[0].train != make(2).tasks[0].train


def test_explicit_targets_are_encoded_as_given():
    seq = formal_tasks("anbn", train_lengths=[1, 2], bin1_lengths=[3, 3])
    vocab = Vocabulary(seq)
    assert vocab.seq_len == 7  # the longest input, a^3 b^3, fills seq_len - 1 positions
    inputs, targets = vocab.encode([("a b", "<ab> <$>")])
    assert vocab.decode(inputs[0]) == "a b" and vocab.decode(targets[0]) == "<ab> <$>"


def test_sequence_accuracy_on_a_hand_made_batch():
    targets = torch.tensor([[5, 6, 7, 0],   # all three right
                            [5, 6, 7, 0],   # one wrong
                            [5, 0, 0, 0],   # right; its padding is predicted wrong, which counts only with count_padding
                            [0, 0, 0, 0]])  # nothing counted: not a sequence
    predicted = torch.tensor([[5, 6, 7, 0], [5, 9, 7, 0], [5, 3, 3, 3], [0, 0, 0, 0]])
    logits = torch.nn.functional.one_hot(predicted, 10).float()
    assert sequence_accuracy(logits, targets, pad_id=0, count_padding=False) == (2, 3)
    assert token_accuracy(logits, targets, pad_id=0, count_padding=False) == (6, 7)
    assert sequence_accuracy(logits, targets, pad_id=0, count_padding=True) == (2, 4)


@pytest.mark.parametrize("kwargs, message", [
    ({"language": "dyck"}, "task.language='dyck': give one of parity, aa, abab, anbn, anbncn, shuffle2, or a list of them"),
    ({"language": ["aa", "aa"]}, "a language may appear only once"),
    ({"train_lengths": [5, 2]}, r"task.train_lengths=\[5, 2\]: must be \[low, high\]"),
    ({"bin1_lengths": [40, 60]}, r"task.bin1_lengths=\[40, 60\]: must start above the training lengths"),
    ({"language": "abab", "train_lengths": [1, 3]}, r"task.train_lengths=\[1, 3\]: the language has no member"),
    ({"eval_size": 0}, "task.eval_size=0: must be an integer >= 1"),
    ({"language": "parity", "train_lengths": [1, 3], "train_size": 20}, "could not draw that many distinct strings"),
])
def test_bad_values_are_one_line_errors(kwargs, message):
    with pytest.raises(UserError, match=message):
        formal_tasks(**kwargs)


def test_a_continual_sequence_of_languages_shares_one_vocabulary():
    seq = formal_tasks(["parity", "anbn"], train_size=8, eval_size=4, train_lengths=[1, 6], bin1_lengths=[7, 8])
    assert seq.names == ["parity", "anbn"] and seq.split_names == ["bin0", "bin1"]
    assert {"0", "1", "a", "b", "<ab>", "<01$>"} <= set(Vocabulary(seq).words)


@pytest.mark.slow
def test_formal_run_through_the_cli_records_every_split_and_metric(tmp_path):
    bad = run_cli("task=formal", "eval.split=eval", f"paths.output_root={tmp_path}")
    assert bad.returncode == 2
    assert bad.stderr.strip() == "error: eval.split='eval': task sequence 'formal' has the splits bin0, bin1"
    out = run_cli("model=rnn", "task=formal", "task.language=parity", "task.train_size=48", "task.eval_size=12",
                  "task.train_lengths=[1,6]", "task.bin1_lengths=[7,9]", "epochs_per_task=2", "batch_size=16",
                  "eval.split=bin1", "eval.metric=sequence", "logger=none", f"paths.output_root={tmp_path}")
    assert out.returncode == 0, out.stderr
    assert "sequence accuracy (every position right), padding excluded, on split bin1" in out.stdout
    (run_dir,) = (tmp_path / "runs").iterdir()
    result = json.loads((run_dir / "results.json").read_text())
    assert result["status"] == "complete" and result["eval_splits"] == ["bin0", "bin1"]
    assert (result["eval_split"], result["eval_metric"]) == ("bin1", "sequence")
    assert result["accuracy_matrix"] == result["accuracy_matrices"]["bin1"]["sequence"]
    assert result["loss_matrix"] == result["loss_matrices"]["bin1"]
    assert result["initial_accuracy"] == result["initial_accuracies"]["bin1"]["sequence"]
    for split in ("bin0", "bin1"):  # a sequence is right only if all its positions are
        assert result["accuracy_matrices"][split]["sequence"][0][0] <= result["accuracy_matrices"][split]["token"][0][0]


def test_tables_and_summaries_name_the_accuracy_they_show(tmp_path):
    from nested_learning.analysis.report import retention_table
    from nested_learning.analysis.results import accuracy_shown
    from nested_learning.analysis.summary import Sweep, write_summary

    run = {"model": "rnn", "seed": 1, "tasks": ["parity"], "eval_split": "bin1", "eval_metric": "sequence",
           "accuracy_matrix": [[0.5]], "initial_accuracy": [0.0], "heldout": [True], "overrides": ["model=rnn"],
           "metrics": {"acc": 0.5, "bwt": None, "fwt": None, "forgetting": None}, "final_minus_first": [0.0]}
    assert accuracy_shown([run]) == "sequence accuracy (every position right) on split bin1"
    assert retention_table(run).caption.startswith("sequence accuracy (every position right), padding excluded, on split bin1")
    assert accuracy_shown([{}]) == "next-token accuracy on split eval"  # results written before splits existed
    write_summary(tmp_path, Sweep(runs=[run], failures=[]))
    assert "Accuracy: sequence accuracy (every position right) on split bin1 (the runs' eval.metric and eval.split, or summarize.py's --metric and --split)." in (
        tmp_path / "summary.md").read_text()


def test_formal_table_lays_out_bins_by_model_and_language_beside_the_paper(tmp_path):
    from .conftest import call_script

    def job(i, model, language, seed, bin0, bin1):
        run = {"model": model, "seed": seed, "status": "complete", "epochs_taken": [3 + seed],
               "overrides": [f"model={model}", f"task.language={language}", f"seed={seed}"],
               "config": {"task": {"_target_": "nested_learning.data.formal.formal_tasks", "language": language},
                          "optimizer": {"lr": 1e-3}},
               "accuracy_matrices": {"bin0": {"sequence": [[bin0]], "token": [[1.0]]},
                                     "bin1": {"sequence": [[bin1]], "token": [[1.0]]}}}
        (tmp_path / f"{i}_job").mkdir()
        (tmp_path / f"{i}_job" / "results.json").write_text(json.dumps(run))

    for seed, (b0, b1) in enumerate([(1.0, 0.5), (1.0, 0.7), (1.0, 0.6)]):
        job(seed, "rnn", "parity", seed, b0, b1)
        job(3 + seed, "transformer", "anbn", seed, 0.2, 0.0)
    out = call_script("formal_table.py", tmp_path)
    assert out.returncode == 0, out.stderr
    table = (tmp_path / "formal_table.md").read_text().splitlines()
    assert table[0] == "| model | Parity Bin0 | Parity Bin1 | a^n b^n Bin0 | a^n b^n Bin1 |"
    # Bin1 of rnn on parity: mean 60, t(0.975, 2) * std 10 / sqrt(3) = 24.84
    assert table[2] == "| `rnn` | 100.0 | 60.0 [35.2, 84.8] | — | — |"
    assert table[3] == "| paper: LSTM | 100.0 | 100.0 | 100.0 | 100.0 |"
    assert table[4] == "| `transformer` | — | — | 20.0 | 0.0 |"
    assert table[5] == "| paper: Transformer | 46.4 | 0.0 | 100.0 | 100.0 |"
    assert "| `rnn` | 4.0 | — |" in table  # epochs taken, mean over seeds
    assert (tmp_path / "formal_table.png").stat().st_size > 0
    bad = call_script("formal_table.py", tmp_path / "0_job")
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and len(bad.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_continual_formal_experiment_runs_as_a_sweep_of_marked_languages(tmp_path):
    # The experiment's own config, scaled down: one model, one strategy, one seed, a few strings.
    out = run_cli("experiment=continual_formal", "model=rnn", "strategy=naive", "seed=0", "task.train_size=12",
                  "task.eval_size=4", "task.train_lengths=[1,6]", "task.bin1_lengths=[7,8]", "epochs_per_task=2",
                  "logger=none", f"paths.output_root={tmp_path}")
    assert out.returncode == 0, out.stderr
    (sweep,) = (tmp_path / "multiruns").iterdir()
    (job,) = [p for p in sweep.iterdir() if p.is_dir() and p.name[0].isdigit()]
    result = json.loads((job / "results.json").read_text())
    assert result["status"] == "complete" and result["tasks"] == ["parity", "aa", "abab", "anbn", "anbncn", "shuffle2"]
    assert result["config"]["task"]["marker"] is True and result["config"]["model"]["cell"] == "lstm"
    assert (result["eval_split"], result["eval_metric"]) == ("bin0", "sequence")
    assert all(1 <= e <= 2 for e in result["epochs_taken"]) and len(result["epochs_taken"]) == 6
    assert result["metrics"]["la"] == pytest.approx(sum(result["accuracy_matrix"][i][i] for i in range(6)) / 6)
    assert "la_mean" in (sweep / "summary.csv").read_text().splitlines()[0]
