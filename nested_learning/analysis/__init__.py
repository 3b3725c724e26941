"""Reading runs: the results.json every run writes, the continual-learning metrics, a sweep's summary,
terminal reports and figures. Nothing here imports torch or Lightning."""
