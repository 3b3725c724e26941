"""nested-learning: continual-learning experiments on Nested Learning (Behrouz et al., 2025).

`from nested_learning import load_run` reads a finished run's trained model (trained.py).
"""


def __getattr__(name: str):
    # Imported on first use: `import nested_learning.<module>` stays free of torch, so bad input fails fast.
    if name == "load_run":
        from nested_learning.trained import load_run

        return load_run
    raise AttributeError(f"module 'nested_learning' has no attribute {name!r}")
