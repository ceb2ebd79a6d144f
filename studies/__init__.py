"""Study specs, search spaces, the Tuner they become, and the CLI (studies/run.py)."""
