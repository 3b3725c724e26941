"""Optimizers that the networks in `models/` can ask ContinualLM for (see `configure_optimizer`)."""
