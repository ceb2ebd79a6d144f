"""The confirmation stage's table: top-k configs and the baseline, re-run at the
full budget over the same seeds, mean ± std per config, each against the
baseline by a paired t-test over seeds (same seeds, same data split), Holm-corrected."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from studies.report.ablation import holm

CONFIRM_DIR = "confirm"
CANDIDATES_FILE = "candidates.json"
BASELINE_LABEL = "baseline"


@dataclass
class ConfirmationResult:
    runs: pd.DataFrame            # config, seed, metric, epochs
    summary: pd.DataFrame | None  # one row per config
    caption: str
    sentence: str


def _final_metric(trial_dir: Path, metric: str) -> tuple[float, int]:
    value, epochs = math.nan, 0
    path = trial_dir / "result.json"
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                continue
            if "epoch" in r and int(r["epoch"]) >= epochs:
                epochs, value = int(r["epoch"]), float(r.get(metric, math.nan))
    return value, epochs


def load_confirmation(run_dir: Path, *, metric: str, mode: str) -> ConfirmationResult | None:
    folder = run_dir / CONFIRM_DIR
    cand_path = folder / CANDIDATES_FILE
    if not cand_path.is_file():
        return None
    candidates = json.loads(cand_path.read_text())
    max_epochs = int(candidates["max_epochs"])
    rows = []
    for trial_dir in sorted(folder.glob("*/params.json")):
        config = json.loads(trial_dir.read_text())
        value, epochs = _final_metric(trial_dir.parent, metric)
        rows.append({"config": config.get("confirm_label", "?"), "seed": config.get("seed"), metric: value, "epochs": epochs})
    runs = pd.DataFrame(rows, columns=["config", "seed", metric, "epochs"])
    runs = runs[runs["epochs"] >= max_epochs]
    labels = [c["label"] for c in candidates["configs"]]
    params = {c["label"]: c["params"] for c in candidates["configs"]}
    caption = (f"Confirmation: each config re-run for the full {max_epochs} epochs over the same "
               f"{candidates['seeds']} seeds, no early stopping; {metric} at the last epoch, mean ± std over seeds; "
               "`wins`: seeds where the config beat the baseline; paired t-test over seeds against the baseline, "
               "Holm-corrected; * p_holm < 0.05.")
    if runs.empty:
        return ConfirmationResult(runs, None, caption, "The confirmation stage has not finished any run yet.")
    base = runs[runs["config"] == BASELINE_LABEL].set_index("seed")[metric]
    out, pvals = [], []
    for label in labels:
        x = runs[runs["config"] == label].set_index("seed")[metric]
        common = x.index.intersection(base.index)
        p, wins = math.nan, ""
        if label != BASELINE_LABEL and len(common) >= 2:
            diff = (x.loc[common] - base.loc[common]).to_numpy()
            p = float(stats.ttest_rel(x.loc[common], base.loc[common]).pvalue) if np.any(diff != diff[0]) else (0.0 if diff[0] != 0 else 1.0)
        if label != BASELINE_LABEL and len(common):
            better = (x.loc[common] < base.loc[common]) if mode == "min" else (x.loc[common] > base.loc[common])
            wins = f"{int(better.sum())}/{len(common)}"
        pvals.append(p)
        out.append({"config": label, "params": ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params[label].items()),
                    "seeds": len(x), "mean": float(x.mean()) if len(x) else math.nan,
                    "std": float(x.std(ddof=1)) if len(x) > 1 else math.nan,
                    "delta_vs_baseline": float(x.mean() - base.mean()) if len(x) and len(base) and label != BASELINE_LABEL else math.nan,
                    "wins": wins, "p": p})
    summary = pd.DataFrame(out)
    summary["p_holm"] = holm(pvals)
    summary["sig"] = ["*" if (not math.isnan(p) and p < 0.05) else "" for p in summary["p_holm"]]
    top = summary[summary["config"] != BASELINE_LABEL].dropna(subset=["mean"])
    sentence = "The confirmation stage has no finished top config yet."
    if not top.empty and len(base):
        first = top.iloc[0]
        sentence = (f"Confirmation over {candidates['seeds']} seeds at the full budget: the top search config ({first['params']}) "
                    f"scored {first['mean']:.4g} ± {first['std']:.2g} against the baseline's {base.mean():.4g} ± "
                    f"{(base.std(ddof=1) if len(base) > 1 else math.nan):.2g}, better in {first['wins']} seeds "
                    f"(paired t-test p = {first['p']:.3g}, Holm {first['p_holm']:.3g}).")
    return ConfirmationResult(runs, summary, caption, sentence)
