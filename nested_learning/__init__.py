"""nested-learning: continual-learning experiments on Nested Learning (Behrouz et al., 2025)."""
