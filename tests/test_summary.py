"""Sweep summaries: statistics by hand, failed jobs listed, files written, the sweeper's objective."""
import json
import math
import re

import pandas as pd
import pytest

from nested_learning.analysis.summary import (
    CLIPPED_NOTE, aggregate, axis_table, difference_interval, load_sweep, pareto_front, reference_differences, t_interval, write_summary,
)
from nested_learning.train import sweeper_value

from .conftest import REPO, call_script


def test_t_interval_by_hand():
    mean, std, low, high = t_interval([1.0, 2.0, 3.0])
    half = 4.302652729911275 / math.sqrt(3)  # t(0.975, df=2) * std / sqrt(n), std = 1
    assert (mean, std) == pytest.approx((2.0, 1.0))
    assert (low, high) == pytest.approx((2.0 - half, 2.0 + half))
    assert math.isnan(t_interval([0.5])[1])


def _run(model, seed, forgetting, acc=0.5, fast=0.6, slow=0.02, extra=()):
    return {
        "model": model, "seed": seed, "status": "complete", "overrides": [f"model={model}", f"seed={seed}", *extra],
        "metrics": {"acc": acc, "bwt": -forgetting, "fwt": 0.1, "forgetting": forgetting},
        "config": {"rates": {"fast": fast, "medium": 0.3, "slow": slow}},
    }


def test_groups_differ_only_by_seed_and_paired_difference():
    runs = [_run("hope", s, f) for s, f in enumerate([0.1, 0.2, 0.3])] + [_run("rnn", s, f) for s, f in enumerate([0.3, 0.5, 0.4])]
    table = aggregate(runs).set_index("model")
    assert table.loc["hope", "n"] == 3 and table.loc["hope", "forgetting_mean"] == pytest.approx(0.2)
    diff, low, high, how = difference_interval(runs[:3], runs[3:], "forgetting")
    # per-seed differences -0.2, -0.3, -0.1: mean -0.2, std 0.1
    half = 4.302652729911275 * 0.1 / math.sqrt(3)
    assert how == "paired by seed" and diff == pytest.approx(-0.2)
    assert (low, high) == pytest.approx((-0.2 - half, -0.2 + half))


def test_reference_can_be_an_option_of_another_group():
    # optimizer=adam as the reference: m3 is compared with adam on the same model, never across models.
    runs = [_run(m, s, f, extra=[f"optimizer={o}"]) for m, o, fs in
            [("cms", "adam", [0.1, 0.2]), ("cms", "m3", [0.3, 0.1]), ("rnn", "adam", [0.5, 0.5]), ("rnn", "m3", [0.4, 0.6])]
            for s, f in enumerate(fs)]
    diffs = reference_differences(runs, "optimizer=adam").set_index("group")
    assert list(diffs.index) == ["model=cms optimizer=m3", "model=rnn optimizer=m3"]
    assert diffs.loc["model=cms optimizer=m3", "reference"] == "model=cms optimizer=adam"
    assert diffs.loc["model=cms optimizer=m3", "forgetting_diff"] == pytest.approx(0.05)  # (0.2 + -0.1) / 2
    assert diffs.loc["model=rnn optimizer=m3", "forgetting_diff"] == pytest.approx(0.0)
    assert list(reference_differences(runs, "cms")["reference"].unique()) == ["model=cms optimizer=adam", "model=cms optimizer=m3"]


def test_axis_table_averages_over_other_axes():
    runs = [_run("hope", 0, 0.1, fast=0.3, slow=0.01), _run("hope", 1, 0.3, fast=0.3, slow=0.01), _run("hope", 0, 0.5, fast=0.9, slow=0.01)]
    table = axis_table(runs, "rates.fast", "rates.slow", "forgetting")
    assert table.loc[0.01, 0.3] == pytest.approx(0.2) and table.loc[0.01, 0.9] == pytest.approx(0.5)


def test_failed_and_unfinished_jobs_are_listed_not_fatal(tmp_path):
    for i, (job, content) in enumerate([
        ("0_ok", _run("hope", 0, 0.1)),
        ("1_failed", {**_run("hope", 1, 0.1), "status": "failed", "error": "NonFiniteLossError: nan"}),
        ("2_garbled", "{not json"),
        ("3_never_started", None),
    ]):
        (tmp_path / job / ".hydra").mkdir(parents=True)
        if content is not None:
            (tmp_path / job / "results.json").write_text(content if isinstance(content, str) else json.dumps(content))
    sweep = load_sweep(tmp_path)
    assert [r["job"] for r in sweep.runs] == ["0_ok"]
    assert [job for job, _ in sweep.failures] == ["1_failed", "2_garbled", "3_never_started"]
    assert "NonFiniteLossError" in sweep.failures[0][1]
    written = write_summary(tmp_path, sweep)
    assert {p.name for p in written} == {"summary.csv", "summary.md"}
    assert "1_failed" in (tmp_path / "summary.md").read_text()


def test_summary_writes_heatmap_over_varying_rates(tmp_path):
    runs = [_run("hope", s, 0.1 * s, fast=f, slow=sl) for f in (0.3, 0.9) for sl in (0.01, 0.05) for s in (0, 1)]
    for i, run in enumerate(runs):
        (tmp_path / str(i)).mkdir()
        (tmp_path / str(i) / "results.json").write_text(json.dumps(run))
    names = {p.name for p in write_summary(tmp_path, load_sweep(tmp_path))}
    assert names == {"summary.csv", "summary.md", "summary_heatmap.png"}


def test_summarize_script_rejects_a_non_sweep_directory(tmp_path):
    out = call_script("summarize.py", tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip().startswith(f"error: {tmp_path}: no job directories")


def test_sweeper_value_is_the_objective_metrics_in_order():
    result = {"metrics": {"acc": 0.4, "bwt": -0.05, "fwt": 0.1, "forgetting": 0.05}}
    assert sweeper_value(result, ["acc", "forgetting"]) == [0.4, 0.05]
    assert sweeper_value(result, ["forgetting"]) == 0.05
    assert all(math.isnan(v) for v in sweeper_value({"metrics": None}, ["acc", "forgetting"]))


def test_pareto_front_by_hand():
    # (ACC, forgetting): b dominates d (higher ACC, same forgetting); a and c trade off; e is undefined
    points = [(0.9, 0.2), (0.7, 0.0), (0.5, -0.1), (0.6, 0.0), (math.nan, math.nan)]
    assert pareto_front(points) == [True, True, True, False, False]


def _write_jobs(tmp_path, runs):
    for i, run in enumerate(runs):
        (tmp_path / f"{i}_job").mkdir()
        (tmp_path / f"{i}_job" / "results.json").write_text(json.dumps(run))
    return load_sweep(tmp_path)


def test_accuracy_intervals_are_clipped_to_their_range_and_said_so(tmp_path):
    runs = [_run("hope", 0, 0.0, acc=0.99), _run("hope", 1, 0.0, acc=1.0)]  # t interval at n = 2: about [0.93, 1.06]
    row = aggregate(runs).iloc[0]
    assert row["acc_ci_high"] == 1.0 and 0.9 < row["acc_ci_low"] < 0.99
    write_summary(tmp_path, _write_jobs(tmp_path, runs))
    assert CLIPPED_NOTE in (tmp_path / "summary.md").read_text()


def test_every_report_labels_groups_alike_without_what_all_runs_share(tmp_path):
    runs = [_run(m, s, 0.1 * s, extra=("experiment=fair",)) for m in ("hope", "transformer") for s in (0, 1)]
    runs[0]["metrics"]["bwt"] = runs[1]["metrics"]["bwt"] + 5.551115123125783e-17  # float noise in a std
    sweep = _write_jobs(tmp_path, runs)
    write_summary(tmp_path, sweep, reference="transformer")
    summary = (tmp_path / "summary.csv").read_text()
    vs_reference = (tmp_path / "summary_vs_reference.csv").read_text()
    markdown = (tmp_path / "summary.md").read_text()
    for text in (summary, vs_reference, markdown):
        assert "experiment=" not in text and "e-1" not in text
    assert [line.split(",")[0] for line in summary.splitlines()[1:]] == ["model=hope", "model=transformer"]
    assert "| model=hope " in markdown and "| model=transformer " in markdown
    assert vs_reference.splitlines()[1].startswith("model=hope,model=transformer,")
    out = call_script("summarize.py", tmp_path)
    assert out.returncode == 0, out.stderr
    assert "│ model=hope " in out.stdout and "experiment=" not in out.stdout


def test_a_failing_figure_costs_no_other_file(tmp_path, monkeypatch):
    import nested_learning.analysis.plots

    def broken(*args, **kwargs):
        raise RuntimeError("no fonts")

    monkeypatch.setattr(nested_learning.analysis.plots, "sweep_heatmap_figure", broken)
    runs = [_run("hope", s, 0.1 * s, fast=f, slow=sl) for f in (0.3, 0.9) for sl in (0.01, 0.05) for s in (0, 1)]
    written = write_summary(tmp_path, _write_jobs(tmp_path, runs))
    assert {p.name for p in written} == {"summary.csv", "summary.md"}
    markdown = (tmp_path / "summary.md").read_text()
    assert "## Not written" in markdown and "RuntimeError: no fonts" in markdown
    assert "0.500 ± 0.000" in markdown  # the table itself is there
    assert (tmp_path / "summary.csv").read_text().splitlines()[1].startswith("model=hope,hope,8,")


def test_sampled_axes_are_drawn_as_a_scatter_a_grid_as_a_heatmap(tmp_path):
    sampled = [_run("hope", 0, 0.01 * i, fast=0.3 + 0.05 * i, slow=0.001 * (i + 1) ** 2) for i in range(14)]
    names = {p.name for p in write_summary(tmp_path, _write_jobs(tmp_path, sampled))}
    assert "summary_scatter.png" in names and "summary_heatmap.png" not in names
    assert "summary_scatter.png" in (tmp_path / "summary.md").read_text()


def test_summarize_names_a_reference_model_that_is_not_in_the_sweep(tmp_path):
    _write_jobs(tmp_path, [_run("hope", s, 0.1) for s in (0, 1)])
    out = call_script("summarize.py", tmp_path, "--reference", "transformer")
    assert out.returncode == 2
    assert out.stderr.strip() == "error: --reference transformer: no run with model=transformer in the sweep; model here: hope"
    assert not (tmp_path / "summary.md").exists()


def test_summarize_out_writes_elsewhere_and_leaves_an_archive_as_it_was(tmp_path):
    archive = tmp_path / "docs" / "results" / "study"
    archive.mkdir(parents=True)
    _write_jobs(archive, [_run(m, s, 0.1 * s) for m in ("hope", "transformer") for s in (0, 1)])
    before = sorted(p.relative_to(archive) for p in archive.rglob("*"))
    out = call_script("summarize.py", archive, "--reference", "transformer", "--out", tmp_path / "table")
    assert out.returncode == 0, out.stderr
    assert sorted(p.relative_to(archive) for p in archive.rglob("*")) == before  # nothing written into the archive
    assert {p.name for p in (tmp_path / "table").iterdir()} == {"summary.csv", "summary.md", "summary_vs_reference.csv"}
    assert (tmp_path / "table" / "summary.md").read_text().startswith("# Summary of study\n")  # named after the sweep read


def test_undefined_metrics_and_text_axes_do_not_crash_the_summary(tmp_path):
    one_task = [{**_run(m, s, 0.0), "metrics": {"acc": 0.5, "bwt": None, "fwt": None, "forgetting": None}}
                for m in ("hope", "rnn") for s in (0, 1)]
    diff, low, high, how = difference_interval(one_task[:2], one_task[2:], "forgetting")
    assert how == "undefined" and math.isnan(diff)
    runs = [{**_run(m, s, 0.1 * s), "config": {"model": {"name": m}, "seed": s}} for m in ("hope", "rnn") for s in (0, 1)]
    for i, run in enumerate(runs):
        (tmp_path / str(i)).mkdir()
        (tmp_path / str(i) / "results.json").write_text(json.dumps(run))
    written = write_summary(tmp_path, load_sweep(tmp_path), axes=("model.name", "seed"), reference="hope")
    assert "summary_heatmap.png" in {p.name for p in written}


def test_console_summary_keeps_each_interval_on_one_line(tmp_path):
    def long(g):  # as Optuna samples them
        return (f"rates.fast=0.{g + 4}841694527491273", f"rates.medium=0.{g + 1}2879734159310489", f"rates.slow=0.0{g + 1}0570046446158271")

    runs = [_run("hope", s, 0.1 * s + 0.01 * g, extra=long(g)) for g in range(3) for s in (0, 1)]
    _write_jobs(tmp_path, runs)
    out = call_script("summarize.py", tmp_path)
    assert out.returncode == 0, out.stderr
    cell = r"[+-]?\d\.\d{3} ± \d\.\d{3} \[[+-]?\d\.\d{3}, [+-]?\d\.\d{3}\]"
    assert len(re.findall(cell, out.stdout)) == 3 * 4  # three groups, four metrics, no cell split across lines
    assert "rates.fast=0.4842" in out.stdout and "0.4841694527491273" not in out.stdout


def test_plot_baselines_writes_into_the_sweep_directory_by_default(tmp_path):
    runs = [{**_run(m, s, 0.1), "strategy": {"name": st}} for m in ("hope", "rnn") for st in ("naive", "replay") for s in (0, 1)]
    for run in runs:
        run["overrides"].append(f"strategy={run['strategy']['name']}")
    _write_jobs(tmp_path, runs)
    figure = REPO / "docs" / "baselines.png"
    before = figure.stat().st_mtime_ns
    out = call_script("plot_baselines.py", tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"wrote {tmp_path / 'baselines.png'}"
    assert (tmp_path / "baselines.png").stat().st_size > 0 and figure.stat().st_mtime_ns == before


def test_reference_can_be_one_override_that_also_chooses_the_model():
    from nested_learning.analysis.summary import reference_differences

    def arm(name, model, seed, forgetting, task="commute4"):
        run = _run(model, seed, forgetting, extra=(f"+cms_arm={name}", f"task={task}"))
        run["overrides"] = run["overrides"][1:]  # the arm, not a model= override, chooses the model
        return run

    runs = [arm("step", "cms", s, f) for s, f in enumerate([0.1, 0.2, 0.3])]
    runs += [arm("token_carry", "cms", s, f) for s, f in enumerate([0.0, 0.0, 0.0])]
    runs += [arm("transformer", "transformer", s, f) for s, f in enumerate([0.4, 0.4, 0.7])]
    runs += [arm("step", "cms", s, 0.9, task="stories") for s in range(3)]  # other task: no partner
    diffs = reference_differences(runs, "cms_arm=step").set_index("group")
    assert set(diffs.index) == {"model=cms +cms_arm=token_carry task=commute4", "model=transformer +cms_arm=transformer task=commute4"}
    assert diffs.loc["model=cms +cms_arm=token_carry task=commute4", "forgetting_diff"] == pytest.approx(-0.2)
    assert diffs.loc["model=transformer +cms_arm=transformer task=commute4", "forgetting_diff"] == pytest.approx(0.3)
    assert set(diffs["pairing"]) == {"paired by seed"}


def test_summary_csv_has_learning_accuracy_also_for_runs_written_before_it(tmp_path):
    old = [{**_run("rnn", s, 0.1), "accuracy_matrix": [[0.8, 0.0], [0.5, 0.6 + 0.2 * s]]} for s in (0, 1)]
    sweep = _write_jobs(tmp_path, old)  # metrics without "la", as results.json had them before
    assert [r["metrics"]["la"] for r in sweep.runs] == pytest.approx([0.7, 0.8])  # the diagonal's mean
    write_summary(tmp_path, sweep)
    import csv

    (row,) = csv.DictReader((tmp_path / "summary.csv").open())
    assert float(row["la_mean"]) == pytest.approx(0.75)


def test_runs_written_to_other_places_are_one_setting():
    from nested_learning.analysis.summary import group_runs

    runs = [_run("rnn", 0, 0.1, extra=("paths.output_root=/a",)), _run("rnn", 1, 0.2, extra=("paths.output_root=/b", "hydra.launcher.n_jobs=1"))]
    assert list(group_runs(runs)) == ["model=rnn"] and len(group_runs(runs)["model=rnn"]) == 2
    runs += [_run("hope", 0, 0.4, extra=("paths.output_root=/c",)), _run("hope", 1, 0.4, extra=("paths.output_root=/c",))]
    diffs = reference_differences(runs, "rnn")  # paired with the rnn runs although written elsewhere
    assert diffs["forgetting_diff"].tolist() == pytest.approx([0.25]) and diffs["pairing"].tolist() == ["paired by seed"]


def test_summary_shows_learning_accuracy_per_task_by_hand(tmp_path):
    from nested_learning.analysis.summary import learning_accuracy_per_task

    def run(model, seed, diagonal, tasks=("parity", "aa")):
        R = [[diagonal[0], 0.0], [0.1, diagonal[1]]]
        return {**_run(model, seed, 0.1), "tasks": list(tasks), "accuracy_matrix": R}

    runs = [run("rnn", 0, (1.0, 0.5)), run("rnn", 1, (0.8, 0.7)), run("hope", 0, (0.2, 0.4), tasks=("aa", "aa"))]
    table = learning_accuracy_per_task(runs).set_index("runs")
    assert table.loc["model=rnn", ["n", "parity", "aa"]].tolist() == pytest.approx([2, 0.9, 0.6])
    assert table.loc["model=hope", ["1:aa", "2:aa"]].tolist() == pytest.approx([0.2, 0.4])  # a task visited twice
    assert math.isnan(table.loc["model=hope", "parity"])
    write_summary(tmp_path, _write_jobs(tmp_path, runs))
    text = (tmp_path / "summary.md").read_text()
    assert "## Learning accuracy per task" in text and "nan" not in text  # untrained tasks are empty cells
    assert re.search(r"\| model=rnn +\| +2 \| +0\.90 \| +0\.60 \| +\| +\|", text)


def _run_with_splits(seed):
    """A finished two-task run whose own choice is bin0 sequence accuracy; bin1 holds other matrices."""
    matrices = {
        "bin0": {"sequence": [[1.0, 0.0], [1.0, 1.0]], "token": [[1.0, 0.5], [1.0, 1.0]]},
        "bin1": {"sequence": [[0.8, 0.1], [0.4, 0.9]], "token": [[0.9, 0.5], [0.7, 1.0]]},
    }
    initial = {split: {"sequence": [0.0, 0.2], "token": [0.3, 0.3]} for split in matrices}
    return {
        **_run("rnn", seed, 0.0, acc=1.0), "tasks": ["parity", "aa"], "eval_split": "bin0", "eval_metric": "sequence",
        "accuracy_matrix": matrices["bin0"]["sequence"], "initial_accuracy": initial["bin0"]["sequence"],
        "accuracy_matrices": matrices, "initial_accuracies": initial,
        "loss_matrices": {s: [[0.1, 2.0], [0.1, 0.1]] for s in matrices}, "initial_losses": {s: [3.0, 3.0] for s in matrices},
    }


def test_summarize_reads_another_split_and_names_its_files_after_it(tmp_path):
    _write_jobs(tmp_path, [_run_with_splits(0), _run_with_splits(1)])
    out = call_script("summarize.py", tmp_path, "--split", "bin1")
    assert out.returncode == 0, out.stderr
    assert not (tmp_path / "summary.md").exists()  # the sweep's own summary is not overwritten
    row = pd.read_csv(tmp_path / "summary_bin1.csv").iloc[0]
    # bin1 sequence: R = [[0.8, 0.1], [0.4, 0.9]], b = [0.0, 0.2]
    assert (row["acc_mean"], row["bwt_mean"], row["fwt_mean"], row["forgetting_mean"], row["la_mean"]) == pytest.approx(
        (0.65, -0.4, -0.1, 0.4, 0.85))
    text = (tmp_path / "summary_bin1.md").read_text()
    assert "sequence accuracy (every position right) on split bin1" in text
    assert re.search(r"\|\s*model=rnn\s*\|\s*2\s*\|\s*0\.80\s*\|\s*0\.90\s*\|", text)  # LA per task from bin1's diagonal

    out = call_script("summarize.py", tmp_path, "--split", "bin1", "--metric", "token")
    assert out.returncode == 0, out.stderr
    assert pd.read_csv(tmp_path / "summary_bin1_token.csv").iloc[0]["acc_mean"] == pytest.approx(0.85)

    out = call_script("summarize.py", tmp_path, "--split", "bin2")
    assert out.returncode == 2
    assert out.stderr.strip() == "error: 0_job: split 'bin2': not measured by this run; its splits: bin0, bin1"


def test_plot_baselines_reads_another_split_and_its_title_says_which(tmp_path):
    import runpy

    runs = [{**_run_with_splits(s), "strategy": {"name": "naive"}} for s in (0, 1)]
    _write_jobs(tmp_path, runs)
    plot = runpy.run_path(str(REPO / "scripts" / "plot_baselines.py"))
    table, finished = plot["model_strategy_table"](tmp_path, "bin1")
    assert table.iloc[0]["acc_mean"] == pytest.approx(0.65) and table.iloc[0]["forgetting_mean"] == pytest.approx(0.4)
    title = plot["baselines_figure"](table, finished)._suptitle.get_text()
    assert title.endswith("sequence accuracy (every position right) on split bin1")
    own = plot["baselines_figure"](*plot["model_strategy_table"](tmp_path))._suptitle.get_text()
    assert own.endswith("on split bin0")
