"""The raw per-run results behind the docs' tables (docs/results/<experiment>/) and the commands that rebuild them."""
from __future__ import annotations

import gzip

import pytest

from nested_learning.analysis.metrics import record_metrics
from nested_learning.analysis.results import ARCHIVED_FILE, load_results, write_results
from nested_learning.analysis.summary import load_sweep
from nested_learning.errors import UserError

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
    write_results(tmp_path / "a" / "0_seed=0", _record(0.5))
    write_results(tmp_path / "b" / "0_seed=0", _record(0.25))
    write_results(tmp_path / "later" / "0_seed=1", _record(0.125))
    clash = call_script("archive_results.py", tmp_path / "a", tmp_path / "b", "--out", tmp_path / "out")
    assert clash.returncode == 2 and clash.stderr.count("\n") == 1
    assert "0_seed=0: in both" in clash.stderr and not (tmp_path / "out").exists()
    assert call_script("archive_results.py", tmp_path / "a", "--out", tmp_path / "out").returncode == 0
    first = (tmp_path / "out" / "0_seed=0" / ARCHIVED_FILE).read_bytes()
    other = call_script("archive_results.py", tmp_path / "b", "--out", tmp_path / "out")
    assert other.returncode == 2 and "0_seed=0: already archived in" in other.stderr and "with other results" in other.stderr
    same = call_script("archive_results.py", tmp_path / "a", "--out", tmp_path / "out")  # the same run again: kept, no error
    assert same.returncode == 0 and "archived 0 runs" in same.stdout and "1 already there with the same results" in same.stdout
    assert (tmp_path / "out" / "0_seed=0" / ARCHIVED_FILE).read_bytes() == first
    added = call_script("archive_results.py", tmp_path / "later", "--out", tmp_path / "out")
    assert added.returncode == 0, added.stderr
    assert [r["metrics"]["acc"] for r in load_sweep(tmp_path / "out").runs] == [0.5, 0.125]
    missing = call_script("archive_results.py", tmp_path / "nowhere", "--out", tmp_path / "new")
    assert missing.returncode == 2 and "nowhere: not a directory" in missing.stderr


def test_archive_takes_the_whole_seeds_of_a_running_sweep_and_later_seeds_after(tmp_path):
    sweep = tmp_path / "sweep"
    for job, (seed, acc, status) in enumerate([(0, 0.5, "complete"), (0, 0.25, "complete"), (1, 0.75, "complete"), (1, 0.0, "running")]):
        write_results(sweep / f"{job}_seed={seed}", {**_record(acc, status), "seed": seed})
    whole = call_script("archive_results.py", sweep, "--out", tmp_path / "out", "--seeds", "0")
    assert whole.returncode == 0 and "archived 2 runs" in whole.stdout and whole.stderr == ""  # seed 1's jobs not even named
    assert [(r["seed"], r["metrics"]["acc"]) for r in load_sweep(tmp_path / "out").runs] == [(0, 0.5), (0, 0.25)]
    early = call_script("archive_results.py", sweep, "--out", tmp_path / "out", "--seeds", "1")  # seed 1 still running
    assert early.returncode == 0 and "archived 1 runs" in early.stdout and "3_seed=1: status running" in early.stderr
    write_results(sweep / "3_seed=1", {**_record(0.125), "seed": 1})  # the sweep finished seed 1
    later = call_script("archive_results.py", sweep, "--out", tmp_path / "out", "--seeds", "1")  # adds only what is new
    assert later.returncode == 0 and "archived 1 runs" in later.stdout and "1 already there with the same results" in later.stdout
    assert [(r["seed"], r["metrics"]["acc"]) for r in load_sweep(tmp_path / "out").runs] == [(0, 0.5), (0, 0.25), (1, 0.75), (1, 0.125)]


def test_the_formal_languages_tables_are_rebuilt_from_their_archives(tmp_path):
    """docs/formal_languages.md's learning-rate grid and Table 5 are what its documented command makes of
    docs/results/formal_languages/ (the sweep at 1e-3) and docs/results/formal_languages_lr/ (the grid, the reruns)."""
    archives = [REPO / "docs" / "results" / name for name in ("formal_languages", "formal_languages_lr")]
    built = call_script("formal_table.py", *archives, "--tune-lr", "--out", tmp_path)
    assert built.returncode == 0, built.stderr
    doc = (REPO / "docs" / "formal_languages.md").read_text()
    grid = (tmp_path / "formal_lr_grid.md").read_text()
    assert grid.count("\n| `") == 16 and grid in doc  # 8 models x 2 families, every rate of the grid archived
    table = (tmp_path / "formal_table.md").read_text()
    assert table.count("\n| `") == 16  # 8 models x (accuracy row + epochs row): every row archived
    assert table in doc


def _formal_table():
    import importlib.util

    spec = importlib.util.spec_from_file_location("formal_table", REPO / "scripts" / "formal_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_rate_is_chosen_per_family_and_moves_from_the_default_only_by_more_than_the_margin():
    ft = _formal_table()

    def record(model, language, lr, bin0, seed=0):
        return {"model": model, "language": language, "lr": lr, "seed": seed, "epochs": 1,
                "accuracy": {"bin0": bin0, "bin1": 0.0}, "bin0_token": bin0}

    records = []
    for language, (low, default, high) in {"parity": (10.0, 10.0, 12.0), "aa": (0.0, 0.0, 0.0), "abab": (0.0, 0.0, 0.0),
                                           "anbn": (100.0, 99.0, 100.0), "anbncn": (100.0, 100.0, 100.0),
                                           "shuffle2": (100.0, 100.0, 100.0)}.items():
        records += [record("m", language, 3e-4, low), record("m", language, 1e-3, default), record("m", language, 3e-3, high)]
    records.append(record("m", "parity", 3e-3, 50.0, seed=1))
    # regular: 3e-3 leads 1e-3 by 2/3 of a point (mean over three languages), within the margin of 1: the default stays;
    # counter: 3e-4 and 3e-3 lead by 1/3 of a point: the default stays
    chosen, scores = ft.choose_rates(records, grid_seed=0, default_lr=1e-3, margin=1.0)
    assert chosen == {("m", "regular"): 1e-3, ("m", "counter"): 1e-3}
    assert scores[("m", "regular", 3e-3)][0] == 4.0
    # a margin below the lead moves the rate to the best one; ties go to the lower rate
    chosen, _ = ft.choose_rates(records, grid_seed=0, default_lr=1e-3, margin=0.25)
    assert chosen == {("m", "regular"): 3e-3, ("m", "counter"): 3e-4}
    kept, grid = ft.at_one_rate(records, tune_lr=True, grid_seed=0, margin=0.25)
    assert {(r["language"], r["lr"], r["seed"]) for r in kept if r["language"] == "parity"} == {("parity", 3e-3, 0), ("parity", 3e-3, 1)}
    assert "| `m` | regular | 3.3 (3.3) | 3.3 (3.3) | 4.0 (4.0) | 0.003 |" in grid
    with pytest.raises(UserError, match="m on aa: runs at learning rates 0.0003, 0.001, 0.003; pass --tune-lr"):
        ft.at_one_rate(records, tune_lr=False, grid_seed=0)
    with pytest.raises(UserError, match="m at lr 0.003: no seed-0 run of aa"):
        ft.choose_rates([r for r in records if not (r["language"] == "aa" and r["lr"] == 3e-3)], 0, 1e-3, 1.0)


def test_the_parity_ablation_table_is_rebuilt_from_its_archives(tmp_path):
    """docs/formal_languages.md's Table 6-style ablation is what scripts/ablation_table.py makes of the archives
    of the Table 5 sweep (the default row), the chunk runs and the ablation runs."""
    archives = [REPO / "docs" / "results" / name for name in ("formal_languages", "formal_languages_chunks", "formal_languages_ablation")]
    built = call_script("ablation_table.py", *archives, "--out", tmp_path)
    assert built.returncode == 0, built.stderr
    table = (tmp_path / "ablation_table.md").read_text()
    assert table.startswith("| variant |") and table in (REPO / "docs" / "formal_languages.md").read_text()
    for variant in ("HOPE (chunk 16)", "w/o DGD", "with momentum 0.9", "w/o weight decay", "w/o CMS", "w/o inner projection k",
                    "w/o inner projection v", "chunk 1", "chunk 4", "chunk 1 w/o DGD"):
        assert f"\n| {variant}" in table, variant  # every row of the ablation has archived runs


def _text_run(model: str, strategy: str, seed: int, diagonal: list[float], final: list[float], cell: str | None = None) -> dict:
    """A finished two-domain language-modelling run: R's diagonal and last row as given."""
    matrix = [[diagonal[0], 0.0], final]
    matrix[1][1] = diagonal[1]
    return {"status": "complete", "model": model, "seed": seed, "strategy": {"name": strategy}, "tasks": ["a", "b"],
            "overrides": [f"model={model}", f"strategy={strategy}", f"seed={seed}"], "config": {"model": {"cell": cell}},
            "accuracy_matrix": matrix, "initial_accuracy": [0.0, 0.0],
            "task_info": {"unigram_accuracy": [0.02, 0.05]},
            "metrics": {"acc": sum(final) / 2, "bwt": final[0] - diagonal[0], "fwt": 0.0, "forgetting": diagonal[0] - final[0],
                        "la": sum(diagonal) / 2, "ppl": 100.0 + seed}}


def test_the_continual_table_names_the_lstm_pairs_seeds_and_measures_the_weakest_task_against_its_unigram(tmp_path):
    for job, run in enumerate([
        _text_run("rnn", "naive", 0, [0.10, 0.20], [0.06, 0.20], cell="lstm"),
        _text_run("rnn", "naive", 1, [0.12, 0.22], [0.08, 0.22], cell="lstm"),
        _text_run("hope_nl", "naive", 0, [0.08, 0.30], [0.07, 0.30]),
        _text_run("hope_nl", "naive", 1, [0.10, 0.32], [0.08, 0.32]),
        _text_run("rnn", "replay", 0, [0.10, 0.20], [0.10, 0.20], cell="lstm"),
        _text_run("rnn", "replay", 1, [0.12, 0.22], [0.12, 0.22], cell="lstm"),
    ]):
        write_results(tmp_path / "sweep" / f"{job}_{run['model']}_{run['seed']}", run)
    built = call_script("continual_table.py", tmp_path / "sweep", "--references", "lstm")
    assert built.returncode == 0, built.stderr
    table = (tmp_path / "sweep" / "continual_table.md").read_text()
    # the weakest task is b for both LSTM seeds (seed 0: a 0.10 / 0.02 = 5x, b 0.20 / 0.05 = 4x; seed 1: 6x, 4.4x): mean 4.2x
    assert "| naive | `lstm` | 2 | 0.160 [0.033, 0.287] | 0.140 [0.013, 0.267] | +0.040 [+0.040, +0.040] | 4.2x | 100 |" in table
    # hope_nl - LSTM, paired by seed: ACC (0.185 - 0.13, 0.20 - 0.15) = 0.055, 0.05; forgetting (0.01 - 0.04, 0.02 - 0.04)
    assert "| naive | `hope_nl` | `lstm` | +0.053 [+0.021, +0.084] | -0.025 [-0.089, +0.039] | paired by seed |" in table
    # replay - naive for the LSTM, paired by seed: ACC 0.15 - 0.13 and 0.17 - 0.15, forgetting 0 - 0.04 both times
    assert "| replay | `lstm` | naive | +0.020 [+0.020, +0.020] | -0.040 [-0.040, -0.040] | paired by seed |" in table
    bad = call_script("continual_table.py", tmp_path / "sweep", "--references", "transformer")
    assert bad.returncode == 2 and bad.stderr.strip() == "error: --references transformer: no such model in the runs; they have hope_nl, lstm"


def test_class_incremental_runs_are_measured_against_each_tasks_majority_class(tmp_path):
    for seed, first in enumerate([0.8, 0.6]):  # task b has one class: its baseline is 1 and it is left out of the minimum
        run = _text_run("transformer", "naive", seed, [first, 1.0], [0.0, 1.0])
        run["task_info"] = {"majority_accuracy": [0.5, 1.0]}
        del run["metrics"]["ppl"]
        write_results(tmp_path / "sweep" / f"{seed}_transformer", run)
    built = call_script("continual_table.py", tmp_path / "sweep", "--references", "transformer")
    assert built.returncode == 0, built.stderr
    table = (tmp_path / "sweep" / "continual_table.md").read_text()
    assert "| strategy | model | n | LA | ACC | forgetting | weakest LA / majority class |\n" in table  # no perplexity
    assert "| naive | `transformer` | 2 | 0.850 [0.215, 1.485] | 0.500 [0.500, 0.500] | +0.700 [-0.571, +1.971] | 1.4x |" in table


def _formal_run(seed: int, bin0: list[list[float]], bin1: list[list[float]]) -> dict:
    """A finished two-language run measured on two splits; its own choice is bin0."""
    splits = {"bin0": bin0, "bin1": bin1}
    return {"status": "complete", "model": "transformer", "seed": seed, "strategy": {"name": "naive"}, "tasks": ["parity", "aa"],
            "overrides": ["model=transformer", f"seed={seed}"], "config": {"model": {}}, "eval_split": "bin0", "eval_metric": "sequence",
            "accuracy_matrices": {split: {"sequence": m, "token": m} for split, m in splits.items()},
            "initial_accuracies": {split: {"sequence": [0.0, 0.0], "token": [0.0, 0.0]} for split in splits},
            "loss_matrices": {split: [[1.0, 1.0], [1.0, 1.0]] for split in splits}, "initial_losses": {split: [1.0, 1.0] for split in splits},
            "accuracy_matrix": bin0, "initial_accuracy": [0.0, 0.0], **record_metrics(bin0, [0.0, 0.0])}


def test_the_continual_table_reads_another_split_and_shows_each_task_learned_and_kept(tmp_path):
    write_results(tmp_path / "sweep" / "0_seed=0", _formal_run(0, [[1.0, 0.0], [0.5, 0.75]], [[0.5, 0.0], [0.25, 0.5]]))
    write_results(tmp_path / "sweep" / "1_seed=1", _formal_run(1, [[1.0, 0.0], [0.25, 1.0]], [[0.25, 0.0], [0.25, 0.0]]))
    own = call_script("continual_table.py", tmp_path / "sweep", "--references", "transformer", "--out", tmp_path / "out")
    assert own.returncode == 0, own.stderr
    table = (tmp_path / "out" / "continual_table.md").read_text()
    assert table.startswith("Accuracy: sequence accuracy (every position right) on split bin0.")
    # LA (1 + 0.75) / 2 and (1 + 1) / 2; ACC (0.5 + 0.75) / 2 and (0.25 + 1) / 2; forgetting of parity 0.5 and 0.75
    assert "| naive | `transformer` | 2 | 0.938 [0.143, 1.732] | 0.625 [0.625, 0.625] | +0.625 [-0.963, +2.213] |" in table
    # parity: learned 1 and 1, kept 0.5 and 0.25; aa: learned 0.75 and 1, its last row is its diagonal
    assert "| strategy | model | parity | aa |\n|---|---|---|---|\n| naive | `transformer` | 1.000 / 0.375 | 0.875 / 0.875 |" in table
    longer = call_script("continual_table.py", tmp_path / "sweep", "--references", "transformer", "--split", "bin1", "--out", tmp_path / "out")
    assert longer.returncode == 0, longer.stderr
    table = (tmp_path / "out" / "continual_table_bin1.md").read_text()
    assert table.startswith("Accuracy: sequence accuracy (every position right) on split bin1.")
    # bin1: LA (0.5 + 0.5) / 2 and (0.25 + 0) / 2, ACC 0.375 and 0.125, forgetting 0.25 and 0
    assert "| naive | `transformer` | 2 | 0.312 [-2.070, 2.695] | 0.250 [-1.338, 1.838] | +0.125 [-1.463, +1.713] |" in table
    assert "| naive | `transformer` | 0.375 / 0.250 | 0.250 / 0.250 |" in table
    assert (tmp_path / "out" / "continual_table_bin1.png").is_file() and (tmp_path / "out" / "continual_table.png").is_file()
    bad = call_script("continual_table.py", tmp_path / "sweep", "--references", "transformer", "--split", "bin2")
    assert bad.returncode == 2 and "split 'bin2': not measured by this run; its splits: bin0, bin1" in bad.stderr
    assert bad.stderr.count("\n") == 1


def test_the_continual_text_tables_are_rebuilt_from_their_archive(tmp_path):
    """docs/continual_text.md's tables are what scripts/continual_table.py makes of docs/results/continual_text."""
    built = call_script("continual_table.py", REPO / "docs" / "results" / "continual_text", "--out", tmp_path)
    assert built.returncode == 0, built.stderr
    table = (tmp_path / "continual_table.md").read_text()
    assert table in (REPO / "docs" / "continual_text.md").read_text()
    for strategy in ("naive", "replay", "joint"):  # every model under every strategy has archived runs
        for model in ("lstm", "transformer", "linear_attention", "deltanet", "hope", "cms", "titans", "hope_nl", "hope_attention"):
            assert f"\n| {strategy} | `{model}` | " in table, (strategy, model)


CURVE_RUNS = ("transformer_lr3e-3", "hope_nl_lr3e-3", "hope_nl_lr1e-3", "hope_nl_chunk1_lr3e-3", "hope_nl_conv1_lr3e-3",
              "titans_lr3e-3", "titans_conv1_lr3e-3")


def test_the_class_incremental_tables_are_rebuilt_from_their_archives(tmp_path):
    """docs/continual_text_classes.md's tables: scripts/continual_table.py on the sweep's archive, scripts/plot_curves.py
    on the archived runs of the longer single-task check."""
    built = call_script("continual_table.py", REPO / "docs" / "results" / "continual_text_classes", "--out", tmp_path / "sweep")
    assert built.returncode == 0, built.stderr
    table = (tmp_path / "sweep" / "continual_table.md").read_text()
    page = (REPO / "docs" / "continual_text_classes.md").read_text()
    assert table in page
    for strategy in ("naive", "replay", "joint"):  # every model under every strategy has archived runs
        for model in ("lstm", "transformer", "linear_attention", "deltanet", "hope", "cms", "titans", "hope_nl", "hope_attention"):
            assert f"\n| {strategy} | `{model}` | 3 | " in table, (strategy, model)
    curves = REPO / "docs" / "results" / "continual_text_classes_curves"
    runs = [curves / name for name in CURVE_RUNS]
    built = call_script("plot_curves.py", *runs, "--out", tmp_path / "curves")
    assert built.returncode == 0, built.stderr
    assert (tmp_path / "curves" / "curves.md").read_text() in page


def test_the_continual_formal_tables_are_rebuilt_from_their_archive(tmp_path):
    """docs/continual_formal.md's tables: scripts/continual_table.py on docs/results/continual_formal, on Bin0
    (the runs' own split: every table) and on Bin1 (its results and task-by-task tables)."""
    archive = REPO / "docs" / "results" / "continual_formal"
    page = (REPO / "docs" / "continual_formal.md").read_text()
    built = call_script("continual_table.py", archive, "--out", tmp_path)
    assert built.returncode == 0, built.stderr
    table = (tmp_path / "continual_table.md").read_text()
    assert table in page
    seeds = {int(job.name.split("seed=")[1].split(",")[0]) for job in archive.iterdir() if job.is_dir()}
    for strategy in ("naive", "replay", "joint"):  # every model under every strategy has a run of every archived seed
        for model in ("lstm", "transformer", "linear_attention", "deltanet", "hope", "cms", "titans", "hope_nl", "hope_attention"):
            assert f"\n| {strategy} | `{model}` | {len(seeds)} | " in table, (strategy, model)
    built = call_script("continual_table.py", archive, "--split", "bin1", "--out", tmp_path)
    assert built.returncode == 0, built.stderr
    blocks = (tmp_path / "continual_table_bin1.md").read_text().rstrip("\n").split("\n\n")
    assert blocks[0].startswith("Accuracy: sequence accuracy (every position right) on split bin1.")
    for block in (blocks[1], blocks[-2], blocks[-1]):  # the results table, the task-by-task heading and table
        assert block in page


def test_the_baselines_tables_are_rebuilt_from_their_archive(tmp_path):
    """docs/baselines.md's tables: scripts/continual_table.py on docs/results/baselines, against the Transformer and
    the GRU, with every model under all five strategies at 5 seeds."""
    built = call_script("continual_table.py", REPO / "docs" / "results" / "baselines", "--references", "transformer", "rnn",
                        "--out", tmp_path)
    assert built.returncode == 0, built.stderr
    table = (tmp_path / "continual_table.md").read_text()
    assert table in (REPO / "docs" / "baselines.md").read_text()
    for strategy in ("naive", "replay", "joint", "ewc", "lwf"):
        for model in ("rnn", "transformer", "linear_attention", "deltanet", "hope", "cms", "titans", "hope_nl", "hope_attention"):
            assert f"\n| {strategy} | `{model}` | 5 | " in table, (strategy, model)
