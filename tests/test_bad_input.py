"""Bad input through the command a user runs: one line that names the value, before anything is built.

Top-level values, the task's options and a misplaced option fail before torch is imported (checked
with `python -X importtime`, which lists every module a process imports); a sweep checks every job
before the first one starts.
"""
import json
import subprocess
import sys

import pytest

from .conftest import REPO, run_cli


def _imported(stderr: str) -> set[str]:
    """The modules `python -X importtime` reports (one 'import time: self | cumulative | name' line each)."""
    return {line.rsplit("|", 1)[1].strip() for line in stderr.splitlines() if line.startswith("import time:")}


@pytest.mark.parametrize("args, message", [
    (["epochs_per_task=-1"], "epochs_per_task=-1: must be an integer >= 1, or a list of them, one per task"),
    (["epochs_per_task=[1,2,3]"], "epochs_per_task=[1, 2, 3]: give one integer or 2 (one per task)"),
    (["resume=maybe"], "resume='maybe': must be true, false or auto"),
    (["task.language=parity"], "task.language: the chosen task config has no option 'language'; task=formal has it "
                               "(add task=formal)"),
    (["+task.language=parity"], "task.language: task=commute has no option 'language' (from_sentences takes name, "
                                "tasks, repeats, eval); task=formal has it (add task=formal)"),
    (["-m", "rates.fast=0.6,2"], "job 2 of 2 (rates.fast=2): rates.fast=2: a rate must lie in (0, 1]; no job was started"),
    # the real-text tasks: their data and tokenizer are checked before torch too (a task.source=hf path is
    # checked by `datasets`, which imports torch: tests/test_text.py)
    (["task=text_domains", "task.source=jsonl", "task.path=conf"], "task.path=conf: a directory; task.source=jsonl "
                                                                  "reads a JSONL file"),
    (["task=text_domains", "task.vocab_size=100"], "task.vocab_size=100: too small for BPE, which starts from the 256 "
                                                   "byte tokens; give at least 257 (or task.tokenizer=byte)"),
    (["task=text_classes", "task.incremental=domain"], "task.incremental='domain': give class (labels of every task so "
                                                       "far) or task (the task's own)"),
    (["task=text_classes", "task.classes=[business,music]"], "task.classes: unknown label 'music'; the data has "
                                                             "business, entertainment, politics, sports, tech"),
    (["task=text_classes", "task.classes=[tech]", "task.tokenizer=byte", "task.cache_dir=null", "eval.count_padding=true"],
     "eval.count_padding=true: task sequence 'text_classes (class-incremental)' is scored on its labels only; every "
     "other target is <pad>, so counting padding would swamp the labels in its accuracy; leave eval.count_padding=false"),
])
def test_bad_input_fails_with_one_line_before_torch_is_imported(tmp_path, args, message):
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "nested_learning.train", *args,
                          f"paths.output_root={tmp_path}"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    errors = [line for line in out.stderr.splitlines() if not line.startswith("import time:")]
    assert errors == [f"error: {message}"]
    imported = _imported(out.stderr)
    assert "omegaconf" in imported  # the listing works: what train.py itself needs is in it
    assert not {"torch", "pytorch_lightning"} & imported
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]  # no run or sweep directory written
    assert "job 1/2" not in out.stdout


def test_a_misplaced_model_option_names_the_model_that_has_it(tmp_path):
    out = run_cli("model.cell=lstm", f"paths.output_root={tmp_path}")
    assert out.returncode == 2
    assert out.stderr.strip() == ("error: model.cell: the chosen model config has no option 'cell'; model=rnn has it "
                                  "(add model=rnn)")


@pytest.mark.parametrize("overrides, message", [
    (["model=transformer", "model.d_model=abc"],
     "model.d_model='abc': must be an integer (an argument of TinyTransformerLM, model=transformer)"),
    (["model=hope", "model.d_model=1.5"], "model.d_model=1.5: must be an integer (an argument of SeedHopeLM, model=hope)"),
    (["model=cms", "model.periods=[1,x]"], "model.periods=[1, 'x']: must be a list of integers (an argument of CMSLM, model=cms)"),
    (["model=titans", "model.parallel=maybe"], "model.parallel='maybe': must be true or false (an argument of TitansLM, model=titans)"),
    (["model._target_=nested_learning.models.nope.Net"], "model._target_='nested_learning.models.nope.Net': cannot be "
                                                         "imported (No module named 'nested_learning.models.nope')"),
    (["strategy=ewc", "strategy.online=2"], "strategy.online=2: must be true or false (an argument of EWC, strategy=ewc)"),
    (["strategy=replay", "+strategy.size=5"], "strategy.size: strategy=replay has no option 'size' (Replay takes "
                                              "buffer_size, fraction)"),
])
def test_a_wrong_option_of_a_model_or_strategy_names_the_key_and_the_type(run_in_process, overrides, message):
    from nested_learning.errors import UserError

    with pytest.raises(UserError) as err:
        run_in_process(*overrides)
    assert str(err.value) == message


@pytest.mark.slow
def test_a_wrong_model_option_type_is_one_line_from_the_command(tmp_path):
    out = run_cli("model=transformer", "model.d_model=abc", f"paths.output_root={tmp_path}")
    assert out.returncode == 2
    assert out.stderr.strip() == ("error: model.d_model='abc': must be an integer (an argument of TinyTransformerLM, "
                                  "model=transformer)")
    assert list((tmp_path / "runs").iterdir()) == []


@pytest.mark.slow
def test_a_memory_whose_chunk_holds_every_sequence_says_so(tmp_path, run_in_process, caplog):
    warning = "model.chunk_size=16 holds every sequence of this task whole (inputs of at most 10 tokens)"
    job = ["task=commute4", "+trainer.max_steps=1"]
    # printed once by the command (Hydra's logging), ...
    out = run_cli("model=titans", *job, "logger=none", f"hydra.run.dir={tmp_path / 'titans'}")
    assert out.returncode == 0, out.stderr
    assert out.stdout.count(warning) == 1, "titans"
    # ... and warned once by the other memory; not for a chunk shorter than the inputs (in this process, to save start-ups)
    run_in_process("model=hope_nl", *job, run_dir=tmp_path / "hope_nl")
    assert caplog.text.count(warning) == 1, "hope_nl"
    caplog.clear()
    shorter = run_in_process("model=titans", *job, "model.chunk_size=9", run_dir=tmp_path / "shorter")
    assert shorter["status"] == "running" and "holds every sequence" not in caplog.text  # stopped by max_steps, no warning


@pytest.mark.slow
def test_a_task_stopped_early_says_which_accuracy_reached_what_after_how_many_epochs(tmp_path):
    out = run_cli("model=rnn", "epochs_per_task=[8,1]", "stopping.target=0.2", "logger=none", f"hydra.run.dir={tmp_path}")
    assert out.returncode == 0, out.stderr
    saved = json.loads((tmp_path / "results.json").read_text())
    taken = saved["epochs_taken"][0]
    assert taken < 8 and saved["epochs_taken"][1] == 1
    reached = saved["curves"][taken]["accuracy"][0]  # curves[0] is before training, curves[k] after epoch k
    assert (f"rnn stopped Task_0 after {taken} of its 8 epochs: token accuracy on eval reached {reached:.3f} "
            "(stopping.target=0.2)") in out.stdout.splitlines()
    assert out.stdout.count("rnn stopped") == 1  # Task_1 ran its one epoch, its cap: no line
