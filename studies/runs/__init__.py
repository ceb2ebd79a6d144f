"""Every byte of a run on disk: the run folder and its JSON records, the trials
reader, ``optuna.db`` storage and rebuild, the designed stage's plan, signing,
buckets, free space. Ray-free (``tests/test_layout.py``)."""
