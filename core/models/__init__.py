"""One readable file per model."""
