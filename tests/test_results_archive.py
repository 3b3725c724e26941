"""The raw per-run results behind the docs' tables (docs/results/<experiment>/) and the commands that rebuild them."""
from __future__ import annotations

import gzip

from nested_learning.analysis.results import ARCHIVED_FILE, load_results, write_results
from nested_learning.analysis.summary import load_sweep

from .conftest import REPO, call_script


def _record(acc: float, status: str = "complete") -> dict:
    return {"status": status, "model": "rnn", "seed": 0, "overrides": [], "accuracy_matrix": [[acc]],
            "initial_accuracy": [0.0], "metrics": {"acc": acc, "bwt": None, "fwt": None, "forgetting": None}}


def test_archive_holds_each_complete_run_and_reads_like_its_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    write_results(sweep / "0_seed=0", _record(0.25))
    write_results(sweep / "1_seed=1", _record(0.75))
    write_results(sweep / "2_seed=2", _record(0.5, status="running"))
    out = tmp_path / "archive"
    done = call_script("archive_results.py", sweep, "--out", out)
    assert done.returncode == 0, done.stderr
    assert "archived 2 runs" in done.stdout and "2_seed=2: status running" in done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["0_seed=0", "1_seed=1"]
    # byte-for-byte the run's file, compressed without a timestamp (the same archive twice is the same bytes)
    packed = (out / "1_seed=1" / ARCHIVED_FILE).read_bytes()
    assert gzip.decompress(packed) == (sweep / "1_seed=1" / "results.json").read_bytes()
    assert packed == gzip.compress((sweep / "1_seed=1" / "results.json").read_bytes(), mtime=0)
    assert load_results(out / "1_seed=1") == load_results(sweep / "1_seed=1")
    archived, original = load_sweep(out), load_sweep(sweep)
    assert [r["job"] for r in archived.runs] == [r["job"] for r in original.runs] == ["0_seed=0", "1_seed=1"]
    assert [r["metrics"]["acc"] for r in archived.runs] == [0.25, 0.75]


def test_archive_grows_by_later_sweeps_and_never_overwrites(tmp_path):
    for name in ("a", "b"):
        write_results(tmp_path / name / "0_seed=0", _record(0.5))
    write_results(tmp_path / "later" / "0_seed=1", _record(0.125))
    clash = call_script("archive_results.py", tmp_path / "a", tmp_path / "b", "--out", tmp_path / "out")
    assert clash.returncode == 2 and clash.stderr.count("\n") == 1
    assert "0_seed=0: in both" in clash.stderr and not (tmp_path / "out").exists()
    assert call_script("archive_results.py", tmp_path / "a", "--out", tmp_path / "out").returncode == 0
    first = (tmp_path / "out" / "0_seed=0" / ARCHIVED_FILE).read_bytes()
    again = call_script("archive_results.py", tmp_path / "b", "--out", tmp_path / "out")
    assert again.returncode == 2 and "0_seed=0: already archived" in again.stderr
    assert (tmp_path / "out" / "0_seed=0" / ARCHIVED_FILE).read_bytes() == first
    added = call_script("archive_results.py", tmp_path / "later", "--out", tmp_path / "out")
    assert added.returncode == 0, added.stderr
    assert [r["metrics"]["acc"] for r in load_sweep(tmp_path / "out").runs] == [0.5, 0.125]
    missing = call_script("archive_results.py", tmp_path / "nowhere", "--out", tmp_path / "new")
    assert missing.returncode == 2 and "nowhere: not a directory" in missing.stderr


def test_the_formal_languages_table_is_rebuilt_from_its_archive(tmp_path):
    """docs/formal_languages.md's table is what its documented command makes of docs/results/formal_languages/."""
    built = call_script("formal_table.py", REPO / "docs" / "results" / "formal_languages", "--out", tmp_path)
    assert built.returncode == 0, built.stderr
    table = (tmp_path / "formal_table.md").read_text()
    assert table.count("\n| `") == 16  # 8 models x (accuracy row + epochs row): every row archived
    assert table in (REPO / "docs" / "formal_languages.md").read_text()
