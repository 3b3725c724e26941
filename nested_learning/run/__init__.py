"""One run as it trains: the LightningModule, the retention callback that fills the accuracy matrix,
checkpoints and resuming, the task boundary, progress, provenance, hardware and DDP checks; and a
finished run's trained model read back (load_run)."""
