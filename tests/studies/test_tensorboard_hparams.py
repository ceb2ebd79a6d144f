"""HParams sessions for conditional integer choices (a column with gaps reads back as float)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from studies.report.tensorboard_hparams import write_hparams
from studies.report.trials import RunTrials


def test_conditional_integer_choice_matches_its_discrete_domain(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    trials = pd.DataFrame({
        "trial_id": ["a", "b"], "tfr": [0.0, 0.5], "tfr_sde": [np.nan, 2.0],  # not sampled when tfr == 0
        "last_val_psnr": [18.0, 19.0], "best_val_psnr": [18.5, 19.5], "epochs": [3, 3], "status": ["complete"] * 2,
    })
    run = RunTrials(trials=trials, history=pd.DataFrame(), params=["tfr", "tfr_sde"])
    root = write_hparams(tmp_path, run, metric="val_psnr", choices={"tfr": [0.0, 0.5], "tfr_sde": [0, 2, 4]})

    ea = EventAccumulator(str(root / "b"))
    ea.Reload()
    content = ea.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["tfr_sde"].number_value == 2
    assert start.hparams["tfr"].number_value == 0.5
    assert (root / "a").is_dir()
