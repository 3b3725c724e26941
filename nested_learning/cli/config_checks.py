"""Checks of a composed config, each failing with one line (UserError) that names the key, the value
as typed and what is allowed.

The top-level values (`validate`) and the task's options are checked before torch is imported, so
bad input fails in about a second; the options of a model, strategy or optimizer are checked
against its constructor's signature (`check_options`) before it is built, which imports it.
"""
from __future__ import annotations

import collections.abc
import inspect
import types
import typing
from pathlib import Path
from typing import Any, Sequence

from omegaconf import DictConfig, OmegaConf, open_dict

from nested_learning.errors import UserError
from nested_learning.models.rates import check_rates

CONF = Path(__file__).resolve().parents[2] / "conf"  # where @hydra.main in train.py reads its configs
METRIC_NAMES = ("acc", "bwt", "fwt", "forgetting")
_MISSING = object()


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_epochs(value: Any) -> bool:
    if isinstance(value, list):
        return len(value) >= 1 and all(_is_int(e) and e >= 1 for e in value)
    return _is_int(value) and value >= 1


# Top-level settings whose type Hydra cannot check (they are plain YAML): key, test, what is allowed.
CHECKS = {
    "seed": (_is_int, "an integer"),
    "batch_size": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "epochs_per_task": (_is_epochs, "an integer >= 1, or a list of them, one per task"),
    "optimizer.lr": (lambda v: _is_number(v) and v > 0, "a number > 0"),
    "reset_optimizer": (lambda v: isinstance(v, bool), "true or false"),
    "threads": (lambda v: v is None or (_is_int(v) and v >= 1), "null or an integer >= 1"),
    "checkpoint_every_s": (lambda v: v is None or (_is_number(v) and v >= 0), "null or a number of seconds >= 0"),
    "stopping.target": (lambda v: v is None or (_is_number(v) and 0 < v <= 1), "null or a number in (0, 1]"),
    "stopping.patience": (lambda v: v is None or (_is_int(v) and v >= 1), "null or an integer >= 1"),
    "stopping.metric": (lambda v: v in (None, "token", "sequence"), "null (eval.metric), token or sequence"),
    "stopping.min_delta": (lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1)"),
    "eval.count_padding": (lambda v: isinstance(v, bool), "true or false"),
    "eval.every_epoch": (lambda v: isinstance(v, bool), "true or false"),
    "eval.metric": (lambda v: v in ("token", "sequence"), "token or sequence"),
    "eval.split": (lambda v: v is None or isinstance(v, str), "null (the tasks' first split) or a split name"),
    "objective": (lambda v: isinstance(v, list) and len(v) >= 1 and all(m in METRIC_NAMES for m in v),
                  f"a list of metrics from {', '.join(METRIC_NAMES)}"),
    "resume": (lambda v: isinstance(v, bool) or v == "auto", "true, false or auto"),
    "model_overrides": (lambda v: isinstance(v, dict) and all(isinstance(o, dict) for o in v.values()),
                        "a mapping {model name: {dotted.key: value}}"),
    "summary.reference": (lambda v: v is None or isinstance(v, str), "null, a model name or one override key=value"),
}


def check_value(key: str, value: Any) -> None:
    """One top-level value against its rule in CHECKS; the message echoes the value as typed."""
    ok, allowed = CHECKS[key]
    if not ok(value):
        raise UserError(f"{key}={value!r}: must be {allowed}")


def validate(cfg: DictConfig) -> None:
    """Every top-level value and the rates, without torch. Interpolations are resolved per value, so
    an unresolved config (a sweep's, before its jobs run) is checked as it will run."""
    for key in CHECKS:
        value = OmegaConf.select(cfg, key)
        check_value(key, OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value)
    if cfg.model.get("rates") is not None:
        check_rates(OmegaConf.to_container(cfg.model.rates, resolve=True))


def apply_model_overrides(cfg: DictConfig) -> None:
    """`model_overrides.<model name>` holds dotted keys to set for that model only (e.g. its seed budget).

    Each key must already exist, so a misspelt one is an error rather than a setting that does nothing.
    """
    given = cfg.get("model_overrides")
    check_value("model_overrides", OmegaConf.to_container(given) if OmegaConf.is_config(given) else given)
    name = cfg.model.name
    specific = (given or {}).get(name) or {}
    with open_dict(cfg):
        for key, value in specific.items():
            if OmegaConf.select(cfg, key, default=_MISSING) is _MISSING:
                raise UserError(f"model_overrides.{name}: {key!r} is not a config key; give dotted keys such as optimizer.lr")
            OmegaConf.update(cfg, key, value, merge=True)


def epoch_schedule(epochs_per_task: int | Sequence[int], num_tasks: int) -> list[int]:
    """Per-task epoch counts from one int (same for every task) or one int per task."""
    value = list(epochs_per_task) if isinstance(epochs_per_task, Sequence) else epochs_per_task
    check_value("epochs_per_task", value)
    counts = value if isinstance(value, list) else [value] * num_tasks
    if len(counts) != num_tasks:
        raise UserError(f"epochs_per_task={value}: give one integer or {num_tasks} (one per task)")
    return counts


# --- A group's options against the constructor they are passed to ---------------------------------

def _plural(hint: Any) -> str:
    return {int: "integers", float: "numbers", str: "strings", bool: "true/false values"}.get(hint, "values")


def describe(hint: Any) -> str:
    """A type hint as a user reads it: `int | None` -> 'null or an integer'."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        parts = [describe(a) for a in args if a is not type(None)]
        return " or ".join((["null"] if type(None) in args else []) + parts)
    if origin is typing.Literal:
        return "one of " + ", ".join(map(str, args))
    if origin in (list, tuple, collections.abc.Sequence):
        return f"a list of {_plural(args[0])}" if args else "a list"
    if origin in (dict, collections.abc.Mapping):
        return "a mapping"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(hint, getattr(hint, "__name__", str(hint)))


def matches(value: Any, hint: Any) -> bool:
    """Whether a config value (plain YAML: None, bool, int, float, str, list, dict) fits a type hint.

    Types a config value cannot be judged against (callables, tensors, classes) pass: the constructor checks those.
    """
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or hint is inspect.Parameter.empty:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(matches(value, a) for a in args)
    if hint is type(None):
        return value is None
    if origin is typing.Literal:
        return value in args
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return _is_int(value)
    if hint is float:
        return _is_number(value)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple, collections.abc.Sequence) or hint in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(matches(v, a) for v, a in zip(value, args))
        return all(matches(v, args[0]) for v in value) if args else True
    if origin in (dict, collections.abc.Mapping) or hint is dict:
        return isinstance(value, dict) and (not args or all(matches(v, args[1]) for v in value.values()))
    return True


def options_with_key(group: str, key: str) -> list[str]:
    """The options of conf/<group>/ that set `key` (dotted, below the group), e.g. ("task", "language") -> ["formal"].

    Options packaged elsewhere (`# @package _global_`) set keys of other groups and are left out.
    """
    found = []
    for path in sorted((CONF / group).glob("*.yaml")):
        if "@package _global_" in path.read_text().split("\n", 1)[0]:
            continue
        if OmegaConf.select(OmegaConf.load(path), key, default=_MISSING, throw_on_resolution_failure=False) is not _MISSING:
            found.append(path.stem)
    return found


def belongs_elsewhere(group: str, key: str) -> str:
    """'; task=formal has it (add task=formal)' for an option of other choices of the group, else ''."""
    others = options_with_key(group, key)
    if not others:
        return ""
    choices = " and ".join(f"{group}={o}" for o in others)
    return f"; {choices} {'has' if len(others) == 1 else 'have'} it (add {group}={others[0]})"


def check_options(cfg: DictConfig, group: str) -> None:
    """Every option of cfg.<group> is an argument of its `_target_` and has the type that argument is annotated with.

    Catches `model.d_model=abc` (named, with the type expected) and an option that belongs to another
    choice of the group (`+task.language=parity` without task=formal), before the constructor runs.
    """
    from hydra._internal.utils import _locate

    node = cfg.get(group)
    if not OmegaConf.is_dict(node) or "_target_" not in node:
        return
    try:
        target = _locate(node._target_)
    except ImportError as err:
        why = str(err.__cause__ or err).splitlines()[0]
        raise UserError(f"{group}._target_={node._target_!r}: cannot be imported ({why})") from None
    init = target.__init__ if isinstance(target, type) else target
    parameters = inspect.signature(target).parameters
    try:
        hints = typing.get_type_hints(init)
    except Exception:  # an annotation that does not evaluate here (a name imported for type checkers only)
        hints = {}
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    choice = f"{group}={node.name}" if "name" in node else group
    values = OmegaConf.to_container(node, resolve=True)
    for key, value in values.items():
        if key.startswith("_") or (key == "name" and key not in parameters):
            continue  # Hydra's own keys; `name` labels the choice and is dropped before building a model or strategy
        if key not in parameters:
            if takes_any:
                continue
            takes = ", ".join(p for p in parameters if p not in ("self", "params", "vocab_size", "max_len"))
            raise UserError(f"{group}.{key}: {choice} has no option {key!r} ({target.__name__} takes {takes})"
                            + belongs_elsewhere(group, key))
        if isinstance(value, dict) and "_target_" in value:
            continue  # a nested object Hydra builds itself
        if not matches(value, hints.get(key, inspect.Parameter.empty)):
            raise UserError(f"{group}.{key}={value!r}: must be {describe(hints[key])} (an argument of {target.__name__}, {choice})")


# --- Every job of a sweep, before the first one starts -------------------------------------------

def check_jobs(config: DictConfig, jobs: list[list[str]]) -> None:
    """The values of every job of a sweep (validate), before any job runs: a bad value in the last job
    would otherwise be found after the others trained.

    `config` is the sweep's config, composed without its swept overrides; `jobs` each job's overrides
    (sweep_progress.grid_jobs). A job whose swept overrides only set values gets them set on a copy of
    `config`; one that picks other configs (model=..., +key=...) is composed by Hydra, once per such set.
    """
    import copy

    from hydra import compose
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    shared = set(OmegaConf.to_container(config.hydra.overrides.task))
    groups = set(config.hydra.runtime.choices)
    composed: dict[tuple[str, ...], DictConfig] = {}
    previous = HydraConfig.instance().cfg
    try:
        for number, overrides in enumerate(jobs, 1):
            own = [o for o in overrides if o not in shared]  # what this job sets beyond the sweep's config
            parsed = parser.parse_overrides(own)
            picks = tuple(o.input_line for o in parsed if o.key_or_group in groups or o.is_add() or o.is_delete()
                          or o.is_force_add())
            if picks not in composed:
                try:
                    composed[picks] = (compose(config.hydra.job.config_name, overrides=list(overrides), return_hydra_config=True)
                                       if picks else config)
                except Exception:
                    continue  # Hydra composes every job itself next, and reports this one's error
            job = copy.deepcopy(composed[picks])
            OmegaConf.set_readonly(job, False)
            with open_dict(job):
                for o in parsed:
                    if o.input_line not in picks:
                        OmegaConf.update(job, o.key_or_group, o.value(), merge=False)
            HydraConfig.instance().set_config(job)  # ${hydra:runtime.choices...} in its values: the job's own
            try:
                apply_model_overrides(job)
                validate(job)
            except UserError as err:
                raise UserError(f"job {number} of {len(jobs)} ({' '.join(own)}): {err}; no job was started") from None
    finally:
        HydraConfig.instance().cfg = previous
