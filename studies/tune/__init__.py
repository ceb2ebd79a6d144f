"""The Ray Tune / Optuna adapter: the only package of ``studies/`` that imports
Ray (``tests/test_layout.py``): the Tuner, the searcher, MO-ASHA, the trial
generator, the run folder's callbacks, progress lines, the Ray session and the
designed stage's Tuner."""
