"""Command-line tools beside the study runner: data conversion, prediction grids."""
