"""Framework overhead on the seed comparison: nested_learning.train vs a plain PyTorch loop.

Both sides do the same work in this process, after imports: for each model of experiment=seed
(Transformer 5 epochs/task at lr 2e-3, HOPE 3 epochs/task at lr 7e-4, Adam, batch 64, seed 7),
build the data and network, evaluate every task before training and after every epoch, train on
the two commute tasks in sequence, and compute the metrics. The framework side also writes
results.json and TensorBoard events, as the main job does. Reported: median wall time of each side
over --repeats alternating rounds, their ratio (target <= 1.5x), the same for the process's CPU time
(which other work on a shared machine disturbs less: on an idle machine the wall times come close
to it), and the wall time of the whole main command `python -m nested_learning.train experiment=seed`
in a subprocess (target < 30 s).
`--ablate` instead times the framework with one of its per-run extras switched off at a time (what
each costs; docs/benchmarks.md), the same rounds alternating.

    python scripts/bench_framework.py [--repeats 5] [--skip-command] [--ablate]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from bench_paths import CONF, REPO
from nested_learning.train import run
from plain_loop import train_and_evaluate

MODELS = ("transformer", "hope")


def seed_config(model: str):
    """Composed once, outside the timings: config composition is a one-off like the imports."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=["experiment=seed", f"model={model}", "hydra.mode=RUN"])


CONFIGS = {model: seed_config(model) for model in MODELS}


def framework_once(out_dir: Path, tensorboard: bool = True) -> list[list[list[float]]]:
    matrices = []
    for model in MODELS:
        cfg = CONFIGS[model].copy()
        with open_dict(cfg):
            cfg.trainer.default_root_dir = cfg.logger.save_dir = str(out_dir / model)
            if not tensorboard:
                cfg.logger = None
        matrices.append(run(cfg, out_dir / model, [f"model={model}"], print_table=False)["accuracy_matrix"])
    return matrices


def plain_once(out_dir: Path) -> list[list[list[float]]]:
    return [train_and_evaluate(CONFIGS[model]) for model in MODELS]


def ablations() -> dict[str, dict]:
    """Each switches off one of the framework's extras, by replacing what it calls with a no-op."""
    from nested_learning.run import checkpoints, retention

    skip = lambda *args, **kwargs: None  # noqa: E731
    single = {
        "without results.json writes": {(retention, "write_results"): skip},
        "without checkpoints": {(checkpoints.EpochCheckpoint, "_save"): skip},
        "without the end-of-run TensorBoard summary (heatmap, HParams)": {(retention.RetentionCallback, "_log_summary"): skip},
    }
    return {**single, "without all three": {key: value for patches in single.values() for key, value in patches.items()}}


def ablate(repeats: int, tmp_dir: Path) -> None:
    variants = ablations()
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in ("as it runs", *variants, "logger=none", "plain loop")}
    for i in range(repeats):
        for j, name in enumerate(times):
            patches = variants.get(name, {})
            saved = {(owner, attr): getattr(owner, attr) for owner, attr in patches}
            for (owner, attr), value in patches.items():
                setattr(owner, attr, value)
            try:
                if name == "plain loop":
                    times[name].append(timed(plain_once, tmp_dir))
                else:
                    times[name].append(timed(lambda d: framework_once(d, tensorboard=name != "logger=none"), tmp_dir / f"round{i}_variant{j}"))
            finally:
                for (owner, attr), value in saved.items():
                    setattr(owner, attr, value)
    print(f"\nseed comparison, both models, median of {repeats} alternating rounds (wall, CPU):")
    for name, values in times.items():
        wall, cpu = medians(values)
        print(f"  {name:<64} {wall:.3f} s  {cpu:.3f} s")


def timed(fn, out_dir: Path) -> tuple[float, float]:
    """(wall, CPU) seconds of fn(out_dir); CPU counts every thread of this process."""
    start, start_cpu = time.perf_counter(), time.process_time()
    fn(out_dir)
    return time.perf_counter() - start, time.process_time() - start_cpu


def medians(times: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(t[0] for t in times), statistics.median(t[1] for t in times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="alternating rounds of each side (median reported)")
    parser.add_argument("--skip-command", action="store_true", help="do not time the whole main command")
    parser.add_argument("--ablate", action="store_true", help="time the framework with each extra switched off instead")
    args = parser.parse_args()
    if args.ablate:
        with tempfile.TemporaryDirectory() as tmp:
            framework_once(Path(tmp) / "warmup")
            ablate(args.repeats, Path(tmp))
        return

    with tempfile.TemporaryDirectory() as tmp:
        tmp_dir = Path(tmp)
        # The first call pays one-off costs (lazy imports, font cache); both sides must agree exactly.
        same = framework_once(tmp_dir / "warmup_fw") == plain_once(tmp_dir / "warmup_plain")
        fw, bare, plain = [], [], []
        for i in range(args.repeats):
            fw.append(timed(framework_once, tmp_dir / f"fw{i}"))
            bare.append(timed(lambda d: framework_once(d, tensorboard=False), tmp_dir / f"bare{i}"))
            plain.append(timed(plain_once, tmp_dir / f"plain{i}"))
            print(f"round {i + 1}/{args.repeats}: framework {fw[-1][0]:.3f} s, without TensorBoard {bare[-1][0]:.3f} s, "
                  f"plain loop {plain[-1][0]:.3f} s", flush=True)
    (fw_s, fw_cpu), (bare_s, bare_cpu), (plain_s, plain_cpu) = medians(fw), medians(bare), medians(plain)
    print(f"\nseed comparison, training + evaluation, imports excluded (median of {args.repeats}, torch threads {torch.get_num_threads()}; wall, CPU):")
    print(f"  framework, as the main job runs (Lightning, TensorBoard, results.json, checkpoints): {fw_s:.3f} s  {fw_cpu:.3f} s")
    print(f"  framework with logger=none:                                                         {bare_s:.3f} s  {bare_cpu:.3f} s")
    print(f"  plain PyTorch loop, same work:                                                      {plain_s:.3f} s  {plain_cpu:.3f} s")
    print(f"  ratio framework / plain: {fw_s / plain_s:.2f}x with TensorBoard, {bare_s / plain_s:.2f}x without   (target <= 1.5x)")
    print(f"  ratio of CPU times:      {fw_cpu / plain_cpu:.2f}x with TensorBoard, {bare_cpu / plain_cpu:.2f}x without")
    print(f"  same accuracy matrices on both sides: {'yes' if same else 'NO: the two sides did different work'}")
    if not args.skip_command:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "nested_learning.train", "experiment=seed", f"paths.output_root={tmp}"],
                cwd=REPO, check=True, capture_output=True,
            )
            print(f"  whole main command (python -m nested_learning.train experiment=seed), imports included: "
                  f"{time.perf_counter() - start:.1f} s   (target < 30 s)")


if __name__ == "__main__":
    main()
