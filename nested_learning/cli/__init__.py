"""The command line around runs: checks of a composed config, overrides as runs record them, Hydra's
errors as one line, sweeps (the multirun callback, job lines, the Optuna sampler), and the rerun and
resume commands of scripts/."""
