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
from omegaconf import DictConfig, OmegaConf

from nested_learning.cli.config_checks import apply_model_overrides, check_options, epoch_schedule, validate
from nested_learning.errors import FAILURE_LOG, SweepError, UserError
from nested_learning.cli.overrides import without_key
from nested_learning.cli.rerun import replayed_overrides, replayed_run

log = logging.getLogger("nested_learning")
STARTED = time.time()  # before Hydra creates the run directory: what this process wrote is newer


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


def build_model(cfg: DictConfig, sequence: Any) -> tuple[Any, Any, Any]:
    """(strategy, data module, ContinualLM around the untrained network) for a resolved config and its task sequence."""
    from nested_learning.data.datamodule import StoppingRule, TaskSequenceDataModule
    from nested_learning.run.lit_module import ContinualLM
    from nested_learning.optim.checks import check_factory

    strategy = instantiate({k: v for k, v in cfg.strategy.items() if k != "name"}, _convert_="all")
    stopping = StoppingRule(**cfg.stopping)
    datamodule = TaskSequenceDataModule(sequence, cfg.epochs_per_task, int(cfg.batch_size), int(cfg.seed), strategy, stopping)
    net_cfg = {k: v for k, v in cfg.model.items() if k != "name"}
    net = instantiate(net_cfg, vocab_size=len(datamodule.vocab), max_len=datamodule.vocab.seq_len, _convert_="all")
    optimizer = instantiate(cfg.optimizer)
    check_factory(optimizer)
    return strategy, datamodule, ContinualLM(net, optimizer, pad_id=datamodule.vocab.pad_id)


def build(cfg: DictConfig, run_dir: Path, record: dict[str, Any], print_table: bool = True, progress: bool = False,
          sequence: Any = None, purge_step: int | None = None, tag: str | None = None):
    """Instantiate data, network, module, callbacks, logger and trainer from a resolved config.

    `sequence`: the config's task sequence when the caller has built it already (run() does, to check it early).
    `purge_step`: TensorBoard hides the events an interrupted run logged from this step on (0 when
    it starts over; None for a new run).
    `tag`: what starts the run's progress lines (a sweep's "job 3").
    """
    import pytorch_lightning as pl
    import torch

    from nested_learning.run.checkpoints import EpochCheckpoint
    from nested_learning.run.retention import RetentionCallback

    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    if sequence is None:
        sequence = instantiate(cfg.task, _convert_="all")
    strategy, datamodule, module = build_model(cfg, sequence)
    # Stated apart from `config` so a reader of results.json sees at once how the model was trained.
    record["strategy"] = {"name": cfg.strategy.name, **{k: v for k, v in cfg.strategy.items() if k not in ("name", "_target_")}}
    retention = RetentionCallback(run_dir, record, cfg.eval.count_padding, cfg.eval.every_epoch, cfg.eval.split,
                                  cfg.eval.metric, print_table, tag=tag)
    logger = False
    if cfg.get("logger"):
        logger = instantiate(cfg.logger, **({} if purge_step is None else {"purge_step": purge_step}))
    # The strategy's end-of-task work (e.g. EWC's Fisher) runs before the checkpoint that must keep it.
    callbacks: list[pl.Callback] = [retention, strategy]
    if cfg.reset_optimizer:
        from nested_learning.run.task_boundary import ResetOptimizerAtTaskStart

        callbacks.append(ResetOptimizerAtTaskStart())
    # after the retention callback, so a checkpoint holds the rows it just measured
    every = cfg.checkpoint_every_s
    callbacks.append(EpochCheckpoint(run_dir, None if every is None else float(every)))
    if progress:
        from nested_learning.run.progress import TaskProgressBar

        callbacks.append(TaskProgressBar())
    # The data module splits every global batch between the ranks itself (distributed.py): no DistributedSampler.
    # Objects go to the constructor, not through instantiate: Hydra would merge them into a config
    # first, deep-copying every callback (the run's record with it), a fifth of a seed run's set-up.
    trainer = instantiate(cfg.trainer, _partial_=True)(max_epochs=datamodule.total_epochs, logger=logger, callbacks=callbacks,
                                                       enable_progress_bar=progress, use_distributed_sampler=False)
    if logger:
        hparams = {"model": cfg.model.name, "strategy": cfg.strategy.name, "seed": int(cfg.seed), "lr": float(cfg.optimizer.lr)}
        hparams.update({f"rates/{k}": v for k, v in cfg.rates.items()})
        hparams["overrides"] = " ".join(record.get("overrides", []))
        # Kept by the logger; written to the HParams tab with the final metrics when the run ends
        # (placeholder metrics now would draw a ramp from 0 in every hp/* scalar).
        logger.log_hyperparams(hparams)
    return trainer, module, datamodule, retention


def task_arguments(cfg: DictConfig, run_dir: Path, replayed: Path | None = None) -> dict[str, Any]:
    """What the task is built with beyond its config: the tokenizer a run's task trained
    (`task.tokenizer_file`, data/text.py), read back from the directory that kept it: the run's own
    when it resumes there, or `replayed`, the run a rerun replays, when that run's task config is this
    one (its cache folder aside; another option may change the data, and so the tokenizer)."""
    from nested_learning.analysis.results import load_results
    from nested_learning.data.subwords import TOKENIZER_FILE

    if "tokenizer_file" not in cfg.task or cfg.task.tokenizer_file is not None:
        return {}
    kept_in = [run_dir] if cfg.get("resume") in (True, "auto") else []
    if replayed is not None:
        saved, here = (dict(task, cache_dir=None) for task in (load_results(replayed).get("config", {}).get("task", {}),
                                                               OmegaConf.to_container(cfg.task)))
        if saved == here:
            kept_in.append(replayed)
    for directory in kept_in:
        if (directory / TOKENIZER_FILE).is_file():
            return {"tokenizer_file": str(directory / TOKENIZER_FILE)}
    return {}


def keep_files(sequence: Any, run_dir: Path) -> None:
    """Write the files a task sequence keeps with its runs (a trained tokenizer) into the run directory."""
    for name, text in sequence.files.items():
        path = run_dir / name
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def run(cfg: DictConfig, run_dir: Path, overrides: list[str], print_table: bool = True, progress: bool = False,
        multirun: bool = False, tag: str | None = None, replayed: Path | None = None) -> dict[str, Any]:
    """One training run; returns the results record (also written to run_dir/results.json by rank 0).

    `multirun`: the run is a job of a sweep, where a DDP run that Lightning would re-launch is refused.
    `tag`: the job's name on its progress lines (parallel jobs' lines interleave).
    `replayed`: the run whose kept files (its tokenizer) this one reuses (task_arguments).

    Everything that can be checked without torch and Lightning (config values, rates, the task
    sequence) is checked before they are imported, so bad input fails in about a second.
    """
    apply_model_overrides(cfg)
    OmegaConf.resolve(cfg)
    validate(cfg)
    check_options(cfg, "task")
    with constructor_errors():
        sequence = instantiate(cfg.task, _convert_="all", **task_arguments(cfg, run_dir, replayed))
    epoch_schedule(cfg.epochs_per_task, len(sequence.tasks))
    if cfg.eval.split is not None and cfg.eval.split not in sequence.split_names:
        raise UserError(f"eval.split={cfg.eval.split!r}: task sequence {sequence.name!r} has the splits "
                        f"{', '.join(sequence.split_names)}")
    if cfg.eval.count_padding and sequence.label_scope is not None:
        raise UserError(f"eval.count_padding=true: task sequence {sequence.name!r} is scored on its labels only; every "
                        "other target is <pad>, so counting padding would swamp the labels in its accuracy; "
                        "leave eval.count_padding=false")
    from nested_learning.run.hardware import check_hardware  # imports torch, not Lightning

    trainer_cfg = OmegaConf.to_container(cfg.trainer)
    check_hardware(trainer_cfg.get("accelerator", "auto"), trainer_cfg.get("devices", "auto"))  # Lightning's defaults
    from nested_learning.run import provenance

    quiet_lightning()
    for group in ("model", "strategy", "optimizer"):
        check_options(cfg, group)
    from nested_learning.run.distributed import refuse_unsupported, set_process_group_environment, wait_for_ranks
    from nested_learning.run.checkpoints import describe_position, finished_epochs, plan_resume

    speaks = process_rank() == 0  # under DDP the other ranks run the same code silently

    plan = plan_resume(run_dir, cfg.resume, cfg.checkpoint_every_s)
    if plan.complete is not None:
        if speaks:
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
    if speaks:
        keep_files(sequence, run_dir)
    with constructor_errors():
        trainer, module, datamodule, retention = build(cfg, run_dir, record, print_table, progress, sequence,
                                                       plan.tensorboard_purge_step, tag)
    refuse_unsupported(cfg, trainer, multirun)
    if trainer.world_size > 1:
        set_process_group_environment(cfg.trainer, cfg.get("threads"))  # before Lightning starts the ranks, in fit
    if plan.checkpoint is not None:
        if plan.schedule is not None:
            datamodule.load_state_dict(plan.schedule)  # Lightning restores it too; here it places the checkpoint's epoch
        if speaks:
            print(f"resuming {run_dir} from its checkpoint {describe_position(plan, datamodule.task_of_epoch, datamodule.task_names)}", flush=True)
    elif plan.previous is not None and speaks:
        print(f"starting {run_dir} again from the beginning: it stopped after {finished_epochs(plan.previous)} "
              "finished epoch(s), before its first checkpoint", flush=True)
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=plan.checkpoint)
    except BaseException as err:
        retention.fail(err)
        raise
    finally:
        wait_for_ranks(trainer)
    return retention.result


def process_rank() -> int:
    """This process's DDP rank, from the environment that Lightning or Slurm started it with (0: the only
    process); read as Lightning's rank_zero_only reads it, without importing Lightning."""
    return int(next((os.environ[k] for k in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK") if k in os.environ), 0))


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
    from nested_learning.analysis.report import make_console

    written = sorted(p.name + ("/" if p.is_dir() else "") for p in run_dir.iterdir() if not p.name.startswith("."))
    line = f"wrote {', '.join(written)} in {run_dir}"
    log.info(line)
    make_console().print(f"[dim]{line}[/]", highlight=False)


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> list[float] | float | None:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    rank = process_rank()
    if rank:  # a DDP rank other than 0 runs silently: rank 0 speaks and writes
        log.setLevel(logging.WARNING)
    tag = None
    if multirun:
        from nested_learning.cli.launcher_watch import stop_with_launcher
        from nested_learning.cli.sweep_progress import announce_job

        stop_with_launcher()
        announce_job(hydra_cfg)
        tag = f"job {hydra_cfg.job.num + 1}"  # on its lines, which parallel jobs (joblib) interleave
    try:
        # How a run was started (resume=...) is no part of what it is: not in its record, label or directory name.
        overrides = replayed_overrides(hydra_cfg.runtime.config_sources, without_key(list(hydra_cfg.overrides.task), "resume"))
        result = run(cfg, run_dir, overrides, print_table=not multirun, progress=live_progress(multirun),
                     multirun=multirun, tag=tag, replayed=replayed_run(hydra_cfg.runtime.config_sources))
    except UserError as err:
        # every rank meets bad input alike (the non-finite loss check too): rank 0 says it
        if multirun and not isinstance(err, SweepError):
            if not rank:
                print(f"error: {tag}: {err}", file=sys.stderr)
                logging.getLogger(FAILURE_LOG).error("%s", err)
            return sweeper_value({}, objective_names(cfg))  # the summary lists the job as failed
        if not rank:
            print(f"error: {err}", file=sys.stderr)
            remove_if_unused(run_dir)
        sys.exit(2)
    except Exception as err:
        if not multirun:
            raise
        # Any other failure of one job: its results.json says "failed"; the sweep and its summary go on.
        log.exception("job %s failed", run_dir.name)
        logging.getLogger(FAILURE_LOG).error("%s: %s", type(err).__name__, err)
        return sweeper_value({}, objective_names(cfg))
    if not multirun and not rank:
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
    from nested_learning.cli.command_line import run_app

    sys.exit(run_app(main))
