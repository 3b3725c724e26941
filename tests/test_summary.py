"""Sweep summaries: statistics by hand, failed jobs listed, files written, the sweeper's objective."""
import json
import math

import pytest

from nested_learning.summary import (
    aggregate, axis_table, difference_interval, load_sweep, t_interval, write_summary,
)
from nested_learning.train import objective

from .conftest import REPO

import subprocess
import sys


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
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "summarize.py"), str(tmp_path)], capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip().startswith(f"error: {tmp_path}: no job directories")


def test_objective_penalises_accuracy_below_the_floor():
    result = {"metrics": {"acc": 0.4, "forgetting": 0.05}}
    assert objective(result, acc_floor=0.0) == pytest.approx(0.05)
    assert objective(result, acc_floor=0.5) == pytest.approx(0.05 + 10 * 0.1)
    assert math.isnan(objective({"metrics": None}, 0.5))


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


def test_reference_can_be_one_override_that_also_chooses_the_model():
    from nested_learning.summary import reference_differences

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
