"""The retention callback: fills the accuracy matrix R during one fit over a task sequence.

Before training it evaluates every task (initial accuracies b); after the last epoch of each task it
evaluates every task again (row i of R and of the loss matrix). A task ends at its cap
(`epochs_per_task`) or sooner under a stopping rule (data/datamodule.py StoppingRule), decided here
from its accuracy after each epoch (`stopping.metric`, on `eval.split`); `epochs_taken` records the
epochs each task took. Every evaluation split is measured with every accuracy (token and
sequence): `accuracy_matrices[split][metric]` and `loss_matrices[split]` hold them all;
`accuracy_matrix` and `loss_matrix` (and the initial values, curves, metrics and tables) are the
chosen split and metric (`eval.split`, `eval.metric`). With `every_epoch` it also logs every task's
accuracy after every epoch, so TensorBoard shows learning and forgetting curves, not only task-end
points. `results.json` is rewritten (atomically) after every evaluated epoch, so a kill keeps the
rows already measured. Under DDP rank 0 evaluates and the others receive its numbers, and only rank 0
writes and prints (distributed.py).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_only
from rich.console import Console
from rich.markup import escape

from nested_learning.analysis import metrics as M
from nested_learning.data.datamodule import TaskSequenceDataModule
from nested_learning.run.lit_module import ACCURACIES, ContinualLM
from nested_learning.analysis.plots import accuracy_matrix_image
from nested_learning.analysis.report import make_console, metrics_line, print_result
from nested_learning.analysis.results import write_results

log = logging.getLogger(__name__)

METRIC_DEFINITIONS = {
    "acc": "1/T sum_j R[T-1][j]",
    "bwt": "1/(T-1) sum_{j<T-1} (R[T-1][j] - R[j][j])  (Lopez-Paz & Ranzato 2017)",
    "fwt": "1/(T-1) sum_{j>0} (R[j-1][j] - b[j]), b = initial accuracy",
    "forgetting": "1/(T-1) sum_{j<T-1} (max_{l<T-1} R[l][j] - R[T-1][j])  (Chaudhry et al. 2018)",
    "la": "1/T sum_j R[j][j]  (learning accuracy, Riemer et al. 2019: was each task learned when trained?)",
    "final_minus_first": "R[T-1][j] - R[0][j] per task: the seed demo's 'Forgetting' column",
    "perplexity": "exp(L[j][j]) (learned) and exp(L[T-1][j]) (final) per task, L the loss matrix (mean nats per "
                  "counted token); mean_final = exp(1/T sum_j L[T-1][j])",
}


def flatten_numbers(tree: Any, prefix: str = "") -> dict[str, float]:
    """The numbers in nested dicts and lists, keyed by path (list entries numbered from 1), for TensorBoard."""
    if isinstance(tree, bool) or tree is None or isinstance(tree, str):
        return {}
    if isinstance(tree, (int, float)):
        return {prefix: float(tree)}
    items = tree.items() if isinstance(tree, dict) else ((str(i + 1), v) for i, v in enumerate(tree))
    flat: dict[str, float] = {}
    for key, value in items:
        flat.update(flatten_numbers(value, f"{prefix}/{key}" if prefix else str(key)))
    return flat


def evaluate_tasks(module: ContinualLM, dm: TaskSequenceDataModule, count_padding: bool, trained: int) -> tuple[dict, dict]:
    """Every task on every evaluation split after training tasks 0..trained (-1: none), each predicting
    among the targets allowed then (a class-incremental task's labels seen so far):
    ({split: {metric: [accuracy per task]}}, {split: [loss per task]})."""
    accs, losses = {}, {}
    for split, loaders in dm.eval_dataloaders().items():
        pairs = [module.evaluate(loader, count_padding, dm.allowed_targets(j, trained)) for j, loader in enumerate(loaders)]
        accs[split] = {metric: [a[metric] for a, _ in pairs] for metric in ACCURACIES}
        losses[split] = [loss for _, loss in pairs]
    return accs, losses


class RetentionCallback(pl.Callback):
    def __init__(
        self,
        run_dir: str | Path,
        record: dict[str, Any],
        count_padding: bool = False,
        every_epoch: bool = True,
        split: str | None = None,
        metric: str = "token",
        print_table: bool = True,
        console: Console | None = None,
        tag: str | None = None,
    ):
        """`record` holds what the run is (model, seed, config, provenance); measurements are added to it.
        `tag` starts every line it prints (a sweep's "job 3"), so the lines of parallel jobs tell apart."""
        self.run_dir = Path(run_dir)
        self.tag = tag
        self.split, self.metric = split, metric  # split None: the tasks' first split (resolved at the start)
        self.count_padding = count_padding
        self.every_epoch = every_epoch
        self.print_table = print_table  # a sweep prints all tables in its summary instead
        self.console = console or make_console()
        self.result: dict[str, Any] = dict(record)
        self.result.update(
            status="running",
            error=None,
            count_padding=count_padding,
            eval_metric=metric,
            metric_definitions=METRIC_DEFINITIONS,
            initial_accuracy=[],
            initial_loss=[],
            accuracy_matrix=[],
            loss_matrix=[],
            initial_accuracies={},
            initial_losses={},
            accuracy_matrices={},
            loss_matrices={},
            epochs_taken=[],
            curves=[],
            metrics=None,
        )
        self.last_logged: tuple[int, dict[str, float]] = (-1, {})  # (step, values) of the latest evaluation
        self.writes = rank_zero_only.rank == 0  # only rank 0 writes results.json and prints (the rank Lightning gave this process)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.writes = trainer.is_global_zero

    def _evaluate_all(self, trainer: pl.Trainer, module: ContinualLM, trained: int) -> tuple[dict, dict]:
        """Rank 0 evaluates whole sets, as one process does; the other ranks wait for its numbers."""
        measured = evaluate_tasks(module, trainer.datamodule, self.count_padding, trained) if trainer.is_global_zero else None
        return trainer.strategy.broadcast(measured)

    def _chosen(self, accs: dict, losses: dict) -> tuple[list[float], list[float]]:
        return accs[self.split][self.metric], losses[self.split]

    def _log(self, trainer: pl.Trainer, values: dict[str, float], step: int | None = None) -> None:
        step = trainer.global_step if step is None else step
        last_step, last_values = self.last_logged
        self.last_logged = (step, {**last_values, **values} if step == last_step else dict(values))
        for logger in trainer.loggers:
            logger.log_metrics(values, step=step)

    def _log_curve_point(self, trainer: pl.Trainer, epoch: int, accs: list[float], losses: list[float]) -> None:
        names = trainer.datamodule.task_names
        self.result["curves"].append({"epoch": epoch, "step": trainer.global_step, "accuracy": accs, "loss": losses})
        values = {f"eval/acc/{n}": a for n, a in zip(names, accs)}
        values.update({f"eval/loss/{n}": v for n, v in zip(names, losses)})
        self._log(trainer, values)

    # Measurements travel in checkpoints, so a resumed run continues the same matrix.
    MEASURED = ("initial_accuracy", "initial_loss", "accuracy_matrix", "loss_matrix", "curves",
                "initial_accuracies", "initial_losses", "accuracy_matrices", "loss_matrices", "epochs_taken")

    def state_dict(self) -> dict[str, Any]:
        return {**{key: self.result[key] for key in self.MEASURED}, "last_logged": self.last_logged}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.last_logged = state_dict.pop("last_logged", (-1, {}))
        self.result.update(state_dict)
        self.result["resumed"] = self.result.get("resumed", 0) + 1

    def on_train_start(self, trainer: pl.Trainer, pl_module: ContinualLM) -> None:
        dm: TaskSequenceDataModule = trainer.datamodule
        splits = dm.sequence.split_names
        self.split = splits[0] if self.split is None else self.split  # train.run checked that it is one of them
        self.result.update(tasks=dm.task_names, heldout=[t.heldout for t in dm.sequence.tasks], epochs_per_task=dm.schedule.caps,
                           eval_splits=splits, eval_split=self.split, label_scope=dm.sequence.label_scope,
                           task_info=dict(dm.sequence.info))
        if self.result["initial_accuracy"]:
            # Resumed from a checkpoint: the untrained model was measured before the interruption. TensorBoard
            # hides what the killed run logged from the checkpoint's step on (checkpoints.ResumePlan), and the
            # resumed run logs again from that step, but not the evaluation that preceded the checkpoint.
            step, values = self.last_logged
            if values:
                self._log(trainer, values, step)
            return
        all_accs, all_losses = self._evaluate_all(trainer, pl_module, trained=-1)
        accs, losses = self._chosen(all_accs, all_losses)
        self.result.update(initial_accuracy=accs, initial_loss=losses, initial_accuracies=all_accs, initial_losses=all_losses)
        self._log_curve_point(trainer, -1, accs, losses)
        self.write()  # a progress record, as after every epoch

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: ContinualLM) -> None:
        # The epoch's training values, before its evaluation and before the checkpoint that a resumed
        # run's TensorBoard events continue from (the first callback at an epoch end is this one).
        pl_module.flush_logs()
        dm: TaskSequenceDataModule = trainer.datamodule
        epoch = trainer.current_epoch
        if not trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            return  # cut short (max_steps, max_time): a partial epoch is no row of R and no curve point
        i = dm.task_of_epoch[epoch]
        rule = dm.schedule.rule
        rule_metric = rule.metric or self.metric  # the accuracy the stopping rule reads, on eval.split
        if self.every_epoch:
            all_accs, all_losses = self._evaluate_all(trainer, pl_module, trained=i)
            accs, losses = self._chosen(all_accs, all_losses)
            task_end = dm.schedule.end_epoch(all_accs[self.split][rule_metric][i])
            self._log_curve_point(trainer, epoch, accs, losses)
        else:
            # Without curves a stopping rule needs one number per epoch, the current task's accuracy:
            # the whole row is measured only when the task ends. A long sequence of tasks would
            # otherwise spend its time evaluating every task after every epoch.
            current = None
            if rule.active and trainer.is_global_zero:
                current = pl_module.evaluate(dm.eval_dataloaders()[self.split][i], self.count_padding,
                                             dm.allowed_targets(i, i))[0][rule_metric]
            current = trainer.strategy.broadcast(current)
            task_end = dm.schedule.end_epoch(current)
            if not task_end:
                return  # no row and no curve point: results.json has nothing new
            all_accs, all_losses = self._evaluate_all(trainer, pl_module, trained=i)
            accs, losses = self._chosen(all_accs, all_losses)
        if task_end:
            self.result["epochs_taken"] = dm.epochs[: i + 1]
            if i == len(dm.task_names) - 1:
                trainer.should_stop = True  # the last task stopped before its cap: the run is complete
            self.result["accuracy_matrix"].append(accs)
            self.result["loss_matrix"].append(losses)
            for split, by_metric in all_accs.items():
                for metric, row in by_metric.items():
                    self.result["accuracy_matrices"].setdefault(split, {}).setdefault(metric, []).append(row)
                self.result["loss_matrices"].setdefault(split, []).append(all_losses[split])
            self._log(trainer, {f"retention/after_{dm.task_names[i]}/{n}": a for n, a in zip(dm.task_names, accs)})
            if dm.schedule.stopped_early is not None:
                self._say(f"stopped {dm.task_names[i]} after {dm.epochs[i]} of its {dm.schedule.caps[i]} epochs: "
                          f"{rule_metric} accuracy on {self.split} {dm.schedule.stopped_early}")
            self._say(
                f"finished {dm.task_names[i]} ({i + 1}/{len(dm.task_names)}, step {trainer.global_step}): "
                f"accuracy on it {accs[i]:.3f}, mean over all tasks {sum(accs) / len(accs):.3f}"
            )
        self.write()  # every evaluated epoch: results.json doubles as a progress record

    def on_exception(self, trainer: pl.Trainer, pl_module: ContinualLM, exception: BaseException) -> None:
        pl_module.flush_logs()  # the training curve up to the failure (e.g. a non-finite loss), before Lightning closes the logger

    def _say(self, progress: str) -> None:
        """One progress line about the model, on the terminal and in train.log (rank 0 only, under DDP)."""
        if not self.writes:
            return
        tag = "" if self.tag is None else f"{self.tag}: "
        self.console.print(f"{escape(tag)}[bold]{self.result['model']}[/] {escape(progress)}")
        log.info("%s%s %s", tag, self.result["model"], progress)

    def on_train_end(self, trainer: pl.Trainer, pl_module: ContinualLM) -> None:
        if not self.writes:
            return  # rank 0 measures the rest and writes it
        extra_results = getattr(pl_module.net, "extra_results", None)
        if callable(extra_results):
            # What the net reports about itself (e.g. CMS update counts), measured on every task's evaluation data.
            dm: TaskSequenceDataModule = trainer.datamodule
            batches = (
                (inputs.to(pl_module.device), (targets != pl_module.pad_id).to(pl_module.device))
                for loaders in dm.eval_dataloaders().values() for loader in loaders for inputs, targets in loader
            )
            self.result["model_state"] = extra_results(batches)
            self._log(trainer, {f"model_state/{k}": v for k, v in flatten_numbers(self.result["model_state"]).items()})
        R = self.result["accuracy_matrix"]
        if len(R) != len(self.result["tasks"]):
            self.write()  # stopped early (e.g. max_steps): status stays "running", with the rows measured
            return
        self.result.update(M.record_metrics(R, self.result["initial_accuracy"]))
        self.result["perplexity"] = M.perplexities(self.result["loss_matrix"])
        self.result["metrics"]["ppl"] = self.result["perplexity"]["mean_final"]  # aggregated by sweep summaries
        self.result["status"] = "complete"
        self.write()
        self._log_summary(trainer)
        log.info("%s: %s", self.result["model"], metrics_line(self.result))
        if self.print_table:
            print_result(self.result, self.console)

    def _log_summary(self, trainer: pl.Trainer) -> None:
        metrics = {f"hp/{k}": v for k, v in self.result["metrics"].items() if v is not None}
        for logger in trainer.loggers:
            if hasattr(logger, "hparams"):
                # The HParams tab and its metrics, written once at the final step: no placeholder values.
                logger.log_hyperparams(logger.hparams, metrics, step=trainer.global_step)
            else:
                logger.log_metrics(metrics, step=trainer.global_step)
            experiment = getattr(logger, "experiment", None)
            if hasattr(experiment, "add_image"):
                image = accuracy_matrix_image(
                    self.result["accuracy_matrix"], self.result["tasks"], f"R: {self.result['model']}, seed {self.result['seed']}"
                )
                experiment.add_image("retention/accuracy_matrix", image, global_step=trainer.global_step, dataformats="HWC")

    def fail(self, error: BaseException) -> None:
        """Record a failure without losing the rows already measured."""
        self.result["status"] = "failed"
        self.result["error"] = f"{type(error).__name__}: {error}"
        self.write()

    def write(self) -> None:
        if self.writes:
            write_results(self.run_dir, self.result)
