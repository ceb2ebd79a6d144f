"""Per-family builders: config dataclass -> data, model, optimiser, one epoch."""
