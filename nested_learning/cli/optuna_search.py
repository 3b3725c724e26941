"""The sampler of `hparams_search=optuna_rates`, which also keeps Optuna's logging out of the way.

Optuna adds its own coloured handler on stderr when it is imported; here its lines go through Hydra's
logging like the sweeper's own (study created, Pareto solutions), so a search prints one stream.
"""
from __future__ import annotations

from typing import Any


def tpe_sampler(**kwargs: Any):
    import optuna

    optuna.logging.disable_default_handler()
    optuna.logging.enable_propagation()
    return optuna.samplers.TPESampler(**kwargs)
