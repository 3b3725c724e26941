"""The raw per-run results behind the docs' tables (docs/results/<experiment>/) and the commands that rebuild them."""
from __future__ import annotations

import gzip
import subprocess
import sys

from nested_learning.results import ARCHIVED_FILE, load_results, write_results
from nested_learning.summary import load_sweep

from .conftest import REPO


def _record(acc: float, status: str = "complete") -> dict:
    return {"status": status, "model": "rnn", "seed": 0, "overrides": [], "accuracy_matrix": [[acc]],
            "initial_accuracy": [0.0], "metrics": {"acc": acc, "bwt": None, "fwt": None, "forgetting": None}}


def _archive(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "scripts" / "archive_results.py"), *args], cwd=REPO,
                          capture_output=True, text=True)


def test_archive_holds_each_complete_run_and_reads_like_its_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    write_results(sweep / "0_seed=0", _record(0.25))
    write_results(sweep / "1_seed=1", _record(0.75))
    write_results(sweep / "2_seed=2", _record(0.5, status="running"))
    out = tmp_path / "archive"
    done = _archive(str(sweep), "--out", str(out))
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
    clash = _archive(str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "out"))
    assert clash.returncode == 2 and clash.stderr.count("\n") == 1
    assert "0_seed=0: in both" in clash.stderr and not (tmp_path / "out").exists()
    assert _archive(str(tmp_path / "a"), "--out", str(tmp_path / "out")).returncode == 0
    first = (tmp_path / "out" / "0_seed=0" / ARCHIVED_FILE).read_bytes()
    again = _archive(str(tmp_path / "b"), "--out", str(tmp_path / "out"))
    assert again.returncode == 2 and "0_seed=0: already archived" in again.stderr
    assert (tmp_path / "out" / "0_seed=0" / ARCHIVED_FILE).read_bytes() == first
    added = _archive(str(tmp_path / "later"), "--out", str(tmp_path / "out"))
    assert added.returncode == 0, added.stderr
    assert [r["metrics"]["acc"] for r in load_sweep(tmp_path / "out").runs] == [0.5, 0.125]
    missing = _archive(str(tmp_path / "nowhere"), "--out", str(tmp_path / "new"))
    assert missing.returncode == 2 and "nowhere: not a directory" in missing.stderr


def test_the_formal_languages_table_is_rebuilt_from_its_archive(tmp_path):
    """docs/formal_languages.md's table is what its documented command makes of docs/results/formal_languages/."""
    built = subprocess.run([sys.executable, str(REPO / "scripts" / "formal_table.py"),
                            str(REPO / "docs" / "results" / "formal_languages"), "--out", str(tmp_path)],
                           cwd=REPO, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    table = (tmp_path / "formal_table.md").read_text()
    assert table.count("\n| `") == 16  # 8 models x (accuracy row + epochs row): every row archived
    assert table in (REPO / "docs" / "formal_languages.md").read_text()


def test_the_parity_ablation_table_is_rebuilt_from_its_archives(tmp_path):
    """docs/formal_languages.md's Table 6-style ablation is what scripts/ablation_table.py makes of the archives
    of the Table 5 sweep (the default row), the chunk runs and the ablation runs."""
    archives = [REPO / "docs" / "results" / name for name in ("formal_languages", "formal_languages_chunks", "formal_languages_ablation")]
    built = subprocess.run([sys.executable, str(REPO / "scripts" / "ablation_table.py"), *map(str, archives), "--out", str(tmp_path)],
                           cwd=REPO, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    table = (tmp_path / "ablation_table.md").read_text()
    assert table.startswith("| variant |") and table in (REPO / "docs" / "formal_languages.md").read_text()
    for variant in ("HOPE (chunk 16)", "w/o DGD", "with momentum 0.9", "w/o weight decay", "w/o CMS", "w/o inner projection k",
                    "w/o inner projection v", "chunk 1", "chunk 4", "chunk 1 w/o DGD"):
        assert f"\n| {variant}" in table, variant  # every row of the ablation has archived runs
