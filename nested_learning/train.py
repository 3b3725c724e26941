"""Train one model over a task sequence and measure what it retains.

    python -m nested_learning.train                              # HOPE (seed cell) on the commute tasks
    python -m nested_learning.train model=transformer seed=3     # any group or value can be overridden
    python -m nested_learning.train experiment=seed              # the seed comparison: both models + summary
    python -m nested_learning.train -m rates.fast=0.3,0.6,0.9 seed=0,1,2   # a sweep
    python -m nested_learning.train --help                       # groups, options and the composed config

Each run writes into its Hydra run directory: `.hydra/` (the config that reproduces it),
`results.json` (accuracy and loss matrices, metrics, config, versions, git commit) and `tb/`
(TensorBoard). Bad input stops with one line naming the value and what is allowed.
"""
from __future__ import annotations

import logging
import os
import shutil
import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from nested_learning.errors import UserError
from nested_learning.models.rates import check_rates
from nested_learning.overrides import without_key
from nested_learning.rerun import replayed_overrides

log = logging.getLogger("nested_learning")
STARTED = time.time()  # before Hydra creates the run directory: what this process wrote is newer
METRIC_NAMES = ("acc", "bwt", "fwt", "forgetting")


_MISSING = object()


def apply_model_overrides(cfg: DictConfig) -> None:
    """`model_overrides.<model name>` holds dotted keys to set for that model only (e.g. its seed budget).

    Each key must already exist, so a misspelt one is an error rather than a setting that does nothing.
    """
    name = cfg.model.name
    specific = (cfg.get("model_overrides") or {}).get(name) or {}
    with open_dict(cfg):
        for key, value in specific.items():
            if OmegaConf.select(cfg, key, default=_MISSING) is _MISSING:
                raise UserError(f"model_overrides.{name}: {key!r} is not a config key; give dotted keys such as optimizer.lr")
            OmegaConf.update(cfg, key, value, merge=True)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# Top-level settings whose type Hydra cannot check (they are plain YAML): key, test, what is allowed.
CHECKS = (
    ("seed", _is_int, "an integer"),
    ("batch_size", lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    ("epochs_per_task", lambda v: _is_int(v) or (isinstance(v, list) and all(_is_int(e) for e in v)),
     "an integer or a list of integers, one per task"),
    ("optimizer.lr", lambda v: _is_number(v) and v > 0, "a number > 0"),
    ("threads", lambda v: v is None or (_is_int(v) and v >= 1), "null or an integer >= 1"),
    ("checkpoint_every_s", lambda v: v is None or (_is_number(v) and v >= 0), "null or a number of seconds >= 0"),
    ("stopping.target", lambda v: v is None or (_is_number(v) and 0 < v <= 1), "null or a number in (0, 1]"),
    ("stopping.patience", lambda v: v is None or (_is_int(v) and v >= 1), "null or an integer >= 1"),
    ("stopping.metric", lambda v: v in (None, "token", "sequence"), "null (eval.metric), token or sequence"),
    ("stopping.min_delta", lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1)"),
    ("eval.count_padding", lambda v: isinstance(v, bool), "true or false"),
    ("eval.every_epoch", lambda v: isinstance(v, bool), "true or false"),
    ("eval.metric", lambda v: v in ("token", "sequence"), "token or sequence"),
    ("eval.split", lambda v: v is None or isinstance(v, str), "null (the tasks' first split) or a split name"),
    ("objective", lambda v: isinstance(v, list) and len(v) >= 1 and all(m in METRIC_NAMES for m in v),
     f"a list of metrics from {', '.join(METRIC_NAMES)}"),
    ("resume", lambda v: isinstance(v, bool) or v == "auto", "true, false or auto"),
)


def validate(cfg: DictConfig) -> None:
    for key, ok, allowed in CHECKS:
        value = OmegaConf.select(cfg, key)
        if OmegaConf.is_config(value):
            value = OmegaConf.to_container(value)
        if not ok(value):
            raise UserError(f"{key}={value!r}: must be {allowed}")
    if cfg.model.get("rates") is not None:
        check_rates(OmegaConf.to_container(cfg.model.rates))


def quiet_lightning() -> None:
    """Keep the terminal for the retention tables: Lightning's banners and tiny-data hints add nothing here."""
    import pytorch_lightning  # noqa: F401  (its import sets its loggers' levels: set ours after it)

    for name in ("pytorch_lightning", "pytorch_lightning.utilities.rank_zero", "lightning_fabric", "lightning.pytorch"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    # One process per run: `srun` only matters for multi-process jobs, and Slurm sweeps go through submitit.
    warnings.filterwarnings("ignore", message=".*`srun` command is available on your system but is not used.*")


@contextmanager
def constructor_errors() -> Iterator[None]:
    """Hydra wraps errors raised inside constructors; surface the user's mistake itself.

    A type or value error there comes from a config value of the wrong kind (e.g. strategy.lam=abc).
    """
    try:
        yield
    except InstantiationException as err:
        if isinstance(err.__cause__, UserError):
            raise err.__cause__ from None
        if isinstance(err.__cause__, (TypeError, ValueError)):
            where = str(err).splitlines()[0].rstrip(":")
            raise UserError(f"{where}: {type(err.__cause__).__name__}: {err.__cause__}; check that config's values") from None
        raise


def build(cfg: DictConfig, run_dir: Path, record: dict[str, Any], print_table: bool = True, progress: bool = False,
          sequence: Any = None, purge_step: int | None = None):
    """Instantiate data, network, module, callbacks, logger and trainer from a resolved config.

    `sequence`: the config's task sequence when the caller has built it already (run() does, to check it early).
    `purge_step`: TensorBoard hides the events an interrupted run logged from this step on (0 when
    it starts over; None for a new run).
    """
    import pytorch_lightning as pl
    import torch

    from nested_learning.data.datamodule import StoppingRule, TaskSequenceDataModule
    from nested_learning.lit_module import ContinualLM
    from nested_learning.optim.checks import check_factory
    from nested_learning.resume import EpochCheckpoint
    from nested_learning.retention import RetentionCallback

    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    if sequence is None:
        sequence = instantiate(cfg.task, _convert_="all")
    strategy_cfg = {k: v for k, v in cfg.strategy.items() if k != "name"}
    strategy = instantiate(strategy_cfg, _convert_="all")
    # Stated apart from `config` so a reader of results.json sees at once how the model was trained.
    record["strategy"] = {"name": cfg.strategy.name, **{k: v for k, v in strategy_cfg.items() if k != "_target_"}}
    stopping = StoppingRule(**cfg.stopping)
    datamodule = TaskSequenceDataModule(sequence, cfg.epochs_per_task, int(cfg.batch_size), int(cfg.seed), strategy, stopping)
    net_cfg = {k: v for k, v in cfg.model.items() if k != "name"}
    net = instantiate(net_cfg, vocab_size=len(datamodule.vocab), max_len=datamodule.vocab.seq_len, _convert_="all")
    optimizer = instantiate(cfg.optimizer)
    check_factory(optimizer)
    module = ContinualLM(net, optimizer, pad_id=datamodule.vocab.pad_id)
    retention = RetentionCallback(run_dir, record, cfg.eval.count_padding, cfg.eval.every_epoch, cfg.eval.split,
                                  cfg.eval.metric, print_table)
    logger = False
    if cfg.get("logger"):
        logger = instantiate(cfg.logger, **({} if purge_step is None else {"purge_step": purge_step}))
    # The strategy's end-of-task work (e.g. EWC's Fisher) runs before the checkpoint that must keep it.
    callbacks: list[pl.Callback] = [retention, strategy]
    if cfg.reset_optimizer:
        from nested_learning.task_boundary import ResetOptimizerAtTaskStart

        callbacks.append(ResetOptimizerAtTaskStart())
    if cfg.checkpoint_every_s is not None:
        # after the retention callback, so a checkpoint holds the rows it just measured
        callbacks.append(EpochCheckpoint(run_dir, float(cfg.checkpoint_every_s)))
    if progress:
        from nested_learning.progress import TaskProgressBar

        callbacks.append(TaskProgressBar())
    trainer = instantiate(cfg.trainer, max_epochs=datamodule.total_epochs, logger=logger, callbacks=callbacks,
                          enable_progress_bar=progress)
    if logger:
        hparams = {"model": cfg.model.name, "strategy": cfg.strategy.name, "seed": int(cfg.seed), "lr": float(cfg.optimizer.lr)}
        hparams.update({f"rates/{k}": v for k, v in cfg.rates.items()})
        hparams["overrides"] = " ".join(record.get("overrides", []))
        # Kept by the logger; written to the HParams tab with the final metrics when the run ends
        # (placeholder metrics now would draw a ramp from 0 in every hp/* scalar).
        logger.log_hyperparams(hparams)
    return trainer, module, datamodule, retention


def task_arguments(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """What the task is built with beyond its config: a run resumed in a directory that keeps the
    tokenizer its task trained gets that file back (`task.tokenizer_file`, data/text.py)."""
    from nested_learning.data.subwords import TOKENIZER_FILE

    kept = run_dir / TOKENIZER_FILE
    resuming = cfg.get("resume") in (True, "auto")
    if resuming and "tokenizer_file" in cfg.task and cfg.task.tokenizer_file is None and kept.is_file():
        return {"tokenizer_file": str(kept)}
    return {}


def keep_files(sequence: Any, run_dir: Path) -> None:
    """Write the files a task sequence keeps with its runs (a trained tokenizer) into the run directory."""
    for name, text in sequence.files.items():
        path = run_dir / name
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def run(cfg: DictConfig, run_dir: Path, overrides: list[str], print_table: bool = True, progress: bool = False) -> dict[str, Any]:
    """One training run; returns the results record (also written to run_dir/results.json).

    Everything that can be checked without torch and Lightning (config values, rates, the task
    sequence) is checked before they are imported, so bad input fails in about a second.
    """
    apply_model_overrides(cfg)
    OmegaConf.resolve(cfg)
    validate(cfg)
    with constructor_errors():
        sequence = instantiate(cfg.task, _convert_="all", **task_arguments(cfg, run_dir))
    if cfg.eval.split is not None and cfg.eval.split not in sequence.split_names:
        raise UserError(f"eval.split={cfg.eval.split!r}: task sequence {sequence.name!r} has the splits "
                        f"{', '.join(sequence.split_names)}")
    from nested_learning import provenance

    quiet_lightning()
    from nested_learning.resume import describe_position, finished_epochs, plan_resume

    plan = plan_resume(run_dir, cfg.resume, cfg.checkpoint_every_s)
    if plan.complete is not None:
        print(f"{run_dir}: already complete, left as it is", flush=True)
        return plan.complete
    if plan.previous is not None:
        # The run is the one that was interrupted: keep its overrides (and so its group in a sweep).
        overrides = plan.previous.get("overrides", overrides)
    record = {
        "model": cfg.model.name,
        "seed": int(cfg.seed),
        "task_sequence": sequence.name,
        "overrides": overrides,
        "config": OmegaConf.to_container(cfg),
        "provenance": provenance.collect(),
    }
    log.info("%s on %s (%s), seed %s, epochs per task %s; writing to %s", cfg.model.name, cfg.task.name,
             ", ".join(t.name for t in sequence.tasks), cfg.seed, cfg.epochs_per_task, run_dir)
    keep_files(sequence, run_dir)
    with constructor_errors():
        trainer, module, datamodule, retention = build(cfg, run_dir, record, print_table, progress, sequence,
                                                       plan.tensorboard_purge_step)
    if plan.checkpoint is not None:
        if plan.schedule is not None:
            datamodule.load_state_dict(plan.schedule)  # Lightning restores it too; here it places the checkpoint's epoch
        print(f"resuming {run_dir} from its checkpoint {describe_position(plan, datamodule.task_of_epoch, datamodule.task_names)}", flush=True)
    elif plan.previous is not None:
        print(f"starting {run_dir} again from the beginning: it stopped after {finished_epochs(plan.previous)} "
              "finished epoch(s), before its first checkpoint", flush=True)
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=plan.checkpoint)
    except BaseException as err:
        retention.fail(err)
        raise
    return retention.result


def live_progress(multirun: bool) -> bool:
    """A progress bar only for one run on a terminal: sweeps, pipes, files and CI (CI=true) stay quiet."""
    ci = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
    return not multirun and not ci and sys.stdout.isatty()


def remove_if_unused(run_dir: Path) -> None:
    """Drop a run directory that bad input left holding only what Hydra wrote for this process.

    Never one that holds anything else (results, checkpoints, logs) or files from before this process.
    """
    if not run_dir.is_dir():
        return
    entries = {p.name for p in run_dir.iterdir()}
    written_now = all(p.stat().st_mtime >= STARTED - 1 for p in run_dir.rglob("*"))
    if entries <= {".hydra", "train.log"} and written_now:
        shutil.rmtree(run_dir)


def say_where(run_dir: Path) -> None:
    from nested_learning.report import make_console

    written = sorted(p.name + ("/" if p.is_dir() else "") for p in run_dir.iterdir() if not p.name.startswith("."))
    line = f"wrote {', '.join(written)} in {run_dir}"
    log.info(line)
    make_console().print(f"[dim]{line}[/]", highlight=False)


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> list[float] | float | None:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    if multirun:
        from nested_learning.sweep_progress import announce_job

        announce_job(hydra_cfg)
    try:
        # How a run was started (resume=...) is no part of what it is: not in its record, label or directory name.
        overrides = replayed_overrides(hydra_cfg.runtime.config_sources, without_key(list(hydra_cfg.overrides.task), "resume"))
        result = run(cfg, run_dir, overrides, print_table=not multirun, progress=live_progress(multirun))
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        if multirun:
            return sweeper_value({}, objective_names(cfg))  # the summary lists the job as failed
        remove_if_unused(run_dir)
        sys.exit(2)
    except Exception:
        if not multirun:
            raise
        # Any other failure of one job: its results.json says "failed"; the sweep and its summary go on.
        log.exception("job %s failed", run_dir.name)
        return sweeper_value({}, objective_names(cfg))
    if not multirun:
        say_where(run_dir)
    return sweeper_value(result, objective_names(cfg))


def objective_names(cfg: DictConfig) -> list[str]:
    objective = cfg.get("objective")
    return [str(m) for m in objective] if OmegaConf.is_list(objective) else [str(objective)]


def sweeper_value(result: dict[str, Any], objective: list[str]) -> list[float] | float:
    """What a sweeper (Optuna) optimises: the `objective` metrics of the run, NaN (a failed trial) where undefined.

    One metric gives a float (a single-objective search), several a list (one per sweeper direction).
    """
    metrics = result.get("metrics") or {}
    values = [float("nan") if metrics.get(m) is None else float(metrics[m]) for m in objective]
    return values[0] if len(values) == 1 else values


if __name__ == "__main__":
    main()
