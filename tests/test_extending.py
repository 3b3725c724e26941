"""docs/extending.md: the code it shows is examples/extending/, its commands train those components
through the framework, and each component does what the page says (hand computations)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import torch

from .conftest import REPO
from .test_readme import doc_commands, split_env

GUIDE = REPO / "docs" / "extending.md"
EXAMPLES = REPO / "examples" / "extending"


@pytest.fixture(scope="module")
def user_modules():
    """The example modules, imported as the guide's commands import them (their folder on the path)."""
    sys.path.insert(0, str(EXAMPLES))
    import my_models
    import my_optimizers
    import my_strategies
    import my_tasks

    yield my_models, my_tasks, my_strategies, my_optimizers
    sys.path.remove(str(EXAMPLES))


def test_the_guide_shows_every_example_file_as_it_is():
    shown = dict(re.findall(r"`(examples/extending/[^`]+)`:\n\n```(?:python|yaml)\n(.*?)```", GUIDE.read_text(), flags=re.S))
    files = {str(p.relative_to(REPO)) for p in EXAMPLES.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert set(shown) == files
    for path, text in shown.items():
        assert (REPO / path).read_text() == text, path


@pytest.mark.slow
def test_the_guides_commands_train_the_users_components(tmp_path):
    commands = doc_commands(GUIDE)
    assert len(commands) == 2, commands
    runs = []
    for i, command in enumerate(commands):
        own_env, words = split_env(command.split())
        assert own_env == {"PYTHONPATH": "examples/extending"} and words[:3] == ["python", "-m", "nested_learning.train"]
        # The package itself comes from this checkout, as it does for a user whose venv installs it.
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([own_env["PYTHONPATH"], str(REPO)])}
        run_dir = tmp_path / str(i)
        out = subprocess.run([sys.executable, *words[1:], "logger=none", f"hydra.run.dir={run_dir}"], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
        runs.append(json.loads((run_dir / "results.json").read_text()))
    for result in runs:
        R = result["accuracy_matrix"]
        assert result["status"] == "complete" and result["model"] == "conv" and result["tasks"] == ["shift1", "shift2"]
        assert len(R) == 2 and all(len(row) == 2 for row in R)
        # The shifts disagree on every target of the same held-out words: one prediction is right for one task at most.
        assert R[1][0] + R[1][1] <= 1 + 1e-9 and result["metrics"]["acc"] <= 0.5 + 1e-9
        # 200 training words in batches of 64 (4 batches), 3 epochs per task, 2 tasks; evaluation batches do not count.
        assert result["model_state"] == {"training_batches": 24}
    assert runs[0]["strategy"] == {"name": "naive"} and runs[1]["strategy"] == {"name": "anchor", "lam": 1.0}
    assert runs[1]["config"]["optimizer"]["_target_"] == "my_optimizers.Signum"
    checkpoint = torch.load(tmp_path / "1" / "checkpoints" / "final.ckpt", weights_only=False)
    # The model's state travels in the checkpoint: the buffer counts the batches up to its step, the run's last.
    assert int(checkpoint["state_dict"]["net.training_batches"]) == checkpoint["global_step"] == 24
    # The strategy's anchor (every parameter after the first task) travels too.
    anchors = [state["anchor"] for state in checkpoint["callbacks"].values() if "anchor" in state]
    assert len(anchors) == 1
    assert set(anchors[0]) == {k.removeprefix("net.") for k in checkpoint["state_dict"] if k.startswith("net.")} - {"training_batches"}


def test_the_model_is_causal_and_counts_only_training_batches(user_modules):
    my_models = user_modules[0]
    torch.manual_seed(0)
    net = my_models.CausalConvLM(vocab_size=11, max_len=9, d_model=8, kernel=3)
    tokens = torch.randint(2, 11, (2, 8))
    changed = tokens.clone()
    changed[:, 5] = torch.where(tokens[:, 5] == 10, 2, tokens[:, 5] + 1)  # another word at position 5
    net.eval()
    logits, other = net(tokens), net(changed)
    assert logits.shape == (2, 8, 11)
    assert torch.equal(logits[:, :5], other[:, :5]) and not torch.equal(logits[:, 5], other[:, 5])
    assert int(net.training_batches) == 0
    net.train()
    net(tokens)
    assert net.extra_results(iter(())) == {"training_batches": 1}


def test_shift_tasks_give_explicit_targets_and_held_out_words(user_modules):
    my_tasks = user_modules[1]
    sequence = my_tasks.shift_tasks(shifts=[1, 3], letters="abcd", length=3, train_size=20, eval_size=5)
    assert sequence.names == ["shift1", "shift3"] and sequence.split_names == ["eval"]
    first, second = sequence.tasks
    assert first.heldout and len(first.train) == 20 and len(first.splits["eval"]) == 5
    assert [w for w, _ in first.train] == [w for w, _ in second.train]  # the same words in every task
    assert my_tasks.shifted("a b d", 1, "abcd") == "b c a" and my_tasks.shifted("a b d", 3, "abcd") == "d a c"
    assert all(target == my_tasks.shifted(word, 3, "abcd") for word, target in second.train)


def test_the_anchor_penalty_is_half_lam_times_the_squared_distance(user_modules):
    my_strategies = user_modules[2]
    from nested_learning.errors import UserError

    module = torch.nn.Module()
    module.net = torch.nn.Linear(2, 1)
    strategy = my_strategies.L2Anchor(lam=4.0)
    assert strategy.loss_term(module, None, None, None, 1.0) is None  # nothing to keep before the first task ends
    strategy.on_task_end(None, module, 0)

    def penalty(s):
        return s.loss_term(module, None, None, None, 1.0).item()

    assert penalty(strategy) == 0.0
    with torch.no_grad():
        module.net.weight += torch.tensor([[1.0, -2.0]])
        module.net.bias += 3.0
    assert penalty(strategy) == pytest.approx(4.0 / 2 * (1 + 4 + 9))
    restored = my_strategies.L2Anchor(lam=4.0)
    restored.load_state_dict(strategy.state_dict())
    assert penalty(restored) == pytest.approx(28.0)
    with pytest.raises(UserError, match="strategy.lam=-1"):
        my_strategies.L2Anchor(lam=-1)


def test_signum_steps_by_hand_and_skips_parameters_without_gradients(user_modules):
    my_optimizers = user_modules[3]
    w = torch.nn.Parameter(torch.tensor([1.0, 1.0]))
    idle = torch.nn.Parameter(torch.tensor([5.0]))
    opt = my_optimizers.Signum([{"params": [w]}, {"params": [idle], "lr": 1.0}], lr=0.1, beta=0.5)
    for grad, expected in (([2.0, -4.0], [0.9, 1.1]), ([-6.0, 2.0], [1.0, 1.1])):
        # m = 0.5 m + 0.5 g: (1, -2), then (-2.5, 0): sign 0 leaves the second weight where it is
        w.grad = torch.tensor(grad)
        opt.step()
        assert torch.allclose(w.detach(), torch.tensor(expected))
    assert idle.item() == 5.0 and not opt.state[idle]
    with pytest.raises(ValueError, match="beta=2"):
        my_optimizers.Signum([w], beta=2)
