"""PNG plots beside the tables (matplotlib, no display needed)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from studies.report.ablation import AblationResult, FactorInfo, level_labels, values_at_epoch  # noqa: E402
from studies.report.trials import RunTrials  # noqa: E402


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_factors(run: RunTrials, ablation: AblationResult, factors: list[FactorInfo], bins: dict, out: Path) -> Path:
    """Metric at the rung against each factor: every trial as a dot, level
    means as bars with 95% CIs; the reference level in grey."""
    n = max(1, len(ablation.tables))
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.8 * rows), squeeze=False)
    trials = run.trials.set_index("trial_id")
    infos = {f.name: f for f in factors}
    for ax, ft in zip(axes.flat, ablation.tables):
        labels = level_labels(trials[ft.factor], infos[ft.factor], bins.get(ft.factor))
        at_rung = values_at_epoch(run, ablation.metric, ft.rung)
        levels = [lv.removesuffix(" (ref)") for lv in ft.table["level"]]
        rng = np.random.default_rng(0)
        for i, (level, row) in enumerate(zip(levels, ft.table.itertuples())):
            ids = labels.index[labels == level]
            y = at_rung.reindex(ids).dropna()
            color = "0.55" if level == ft.reference else "C0"
            if len(y):
                ax.scatter(i + rng.uniform(-0.15, 0.15, len(y)), y, s=14, color=color, alpha=0.7, zorder=3)
                ax.errorbar(i, row.mean, yerr=0 if math.isnan(row.ci95) else row.ci95, fmt="_", color="k", markersize=22, capsize=4, zorder=4)
            if row.sig:
                ax.annotate(row.sig, (i, 1.0), xycoords=("data", "axes fraction"), ha="center", va="top", fontsize=13, color="C3")
        ax.set_xticks(range(len(levels)), [lv.replace("(not sampled)", "not\nsampled") for lv in levels], rotation=20, fontsize=8)
        ax.set_title(f"{ft.factor} (ref: {ft.reference})", fontsize=10)
        ax.set_ylabel(f"{ablation.metric} @ epoch {ft.rung}")
        ax.grid(axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(ablation.tables):]:
        ax.axis("off")
    fig.suptitle(f"{ablation.metric} at each factor's rung, by level (dots: trials; bars: mean ± 95% CI; * Holm p<0.05)", fontsize=10)
    return _save(fig, out / "factors.png")


def plot_learning_curves(run: RunTrials, metric: str, mode: str, best_ids: list[str], baseline_ids: list[str], out: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    h = run.history
    if not h.empty and metric in h.columns:
        for i, tid in enumerate(best_ids):
            d = h[h["trial_id"] == tid].sort_values("epoch")
            ax.plot(d["epoch"], d[metric], color=f"C{i}", lw=1.8, label=f"#{i + 1} {tid}")
        for j, tid in enumerate(baseline_ids):
            d = h[h["trial_id"] == tid].sort_values("epoch")
            ax.plot(d["epoch"], d[metric], color="0.4", lw=1.4, ls="--", label="baseline" if j == 0 else None)
        others = h[~h["trial_id"].isin(best_ids + baseline_ids)]
        for _, d in others.groupby("trial_id"):
            ax.plot(d["epoch"], d[metric], color="0.8", lw=0.6, zorder=0)
        values = h[metric].astype(float)
        if (values > 0).all() and values.max() / max(values.min(), 1e-12) > 20:
            ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.set_title("Learning curves: best trials (colour), best baseline trials (dashed), others (grey)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out / "learning_curves.png")


def plot_importances(importances: pd.DataFrame, out: Path, rung: int | None = None) -> Path:
    """fANOVA share beside PED-ANOVA (scaled to its largest), one row per parameter."""
    fig, ax = plt.subplots(figsize=(7, 0.8 + 0.5 * max(1, len(importances))))
    d = importances.iloc[::-1]
    y = np.arange(len(d))
    ax.barh(y + 0.27, d["modelled_share"].fillna(0), height=0.27, color="C0", label="modelled main effects: share of variance")
    ax.barh(y, d["fanova_share"].fillna(0), height=0.27, color="C2", label="fANOVA on the trials: share of variance")
    ped = d["ped_anova"].fillna(0)
    ax.barh(y - 0.27, ped / ped.max() if ped.max() > 0 else ped, height=0.27, color="C1",
            label="PED-ANOVA: top configs vs the rest (scaled to max)")
    ax.set_yticks(y, d["parameter"])
    ax.set_xlabel("importance")
    ax.set_title("Parameter importance over the declared space" + (f", values at epoch {rung}" if rung else ""), fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, out / "importance.png")


def plot_modelled(tables: list, metric: str, rung: int, out: Path) -> Path:
    """Each factor's modelled marginals with 95% bootstrap intervals; the
    reference in grey, marked levels flagged."""
    n = max(1, len(tables))
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.6 * rows), squeeze=False)
    for ax, t in zip(axes.flat, tables):
        d = t.table
        x = np.arange(len(d))
        ref = d["level"].str.endswith("(ref)")
        err = np.vstack([d["marginal"] - d["lo"], d["hi"] - d["marginal"]]).clip(min=0)
        for mask, color in ((ref.to_numpy(), "0.5"), (~ref.to_numpy(), "C0")):  # one artist per colour
            ax.errorbar(x[mask], d["marginal"].to_numpy()[mask], yerr=err[:, mask], fmt="o", capsize=4, color=color)
        for i in x[(d["sig"].fillna("") != "").to_numpy()]:
            ax.annotate(d["sig"].iloc[i], (i, 1.0), xycoords=("data", "axes fraction"), ha="center", va="top",
                        fontsize=13, color="C3")
        ax.set_xticks(x, [lv.replace(" (ref)", "\n(ref)") for lv in d["level"]], rotation=20, fontsize=8)
        ax.set_title(f"{t.factor}" + ("" if t.scope == "whole space" else f"\n({t.scope})"), fontsize=9)
        ax.set_ylabel(f"modelled {metric} @ epoch {rung}")
        ax.grid(axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(tables):]:
        ax.axis("off")
    fig.suptitle("Modelled marginals over the declared space (main effects + random forest; 95% bootstrap intervals; "
                 "* Holm p<0.05 for the difference to the reference, tested on paired refits)", fontsize=10)
    return _save(fig, out / "modelled.png")


def plot_leave_one_out(table: pd.DataFrame, metric: str, out: Path) -> Path:
    """Paired change from setting each factor of the best config to its baseline."""
    fig, ax = plt.subplots(figsize=(7, 0.9 + 0.55 * max(1, len(table))))
    d = table.iloc[::-1]
    y = np.arange(len(d))
    err = np.vstack([d["delta"] - d["delta_lo"], d["delta_hi"] - d["delta"]]).clip(min=0)
    ax.errorbar(d["delta"], y, xerr=np.nan_to_num(err), fmt="o", capsize=4, color="C0")
    ax.axvline(0, color="0.4", lw=1)
    ax.set_yticks(y, [f"{f} -> {s.split('=', 1)[-1]}{'  ' + m if m else ''}" for f, s, m in
                      zip(d["factor"], d["set to"], d["sig"])])
    ax.set_xlabel(f"change in {metric} (variant - best), 95% CI over seeds")
    ax.set_title("Leave-one-out from the best config (full budget, paired over seeds)", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, out / "leave_one_out.png")


def plot_confirmation(runs: pd.DataFrame, metric: str, out: Path) -> Path:
    """One box per confirmed config (its seeds as dots), baseline first."""
    fig, ax = plt.subplots(figsize=(7, 4))
    labels = list(dict.fromkeys(runs["config"]))
    data = [runs.loc[runs["config"] == c, metric].dropna().to_numpy() for c in labels]
    ax.boxplot(data, tick_labels=labels, showmeans=True)
    for i, y in enumerate(data):
        ax.scatter(np.full(len(y), i + 1), y, s=16, color="C0", zorder=3)
    ax.set_ylabel(f"{metric} at the full budget")
    ax.set_title("Confirmation: top configs and the baseline over seeds", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, out / "confirmation.png")


def per_frame_groups(history: pd.DataFrame) -> dict[str, list[str]]:
    """Metrics reported as a curve over frames (``<name>_frame_01``, ``_02``, ...), by name."""
    groups: dict[str, list[str]] = {}
    for col in history.columns:
        base, sep, idx = col.rpartition("_frame_")
        if sep and idx.isdigit():
            groups.setdefault(base, []).append(col)
    return {b: sorted(cols, key=lambda c: int(c.rpartition("_frame_")[2])) for b, cols in groups.items() if len(cols) >= 2}


def plot_per_frame(run: RunTrials, name: str, columns: list[str], best_ids: list[str], baseline_ids: list[str], out: Path) -> tuple[Path, pd.DataFrame]:
    """A per-frame curve (e.g. PSNR over a generated clip) at each trial's last
    epoch, for the best trials and the best baseline trials."""
    h = run.history
    last = h.sort_values("epoch").groupby("trial_id").tail(1).set_index("trial_id")
    frames = [int(c.rpartition("_frame_")[2]) for c in columns]
    rows = []
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for i, tid in enumerate(best_ids):
        if tid in last.index:
            y = last.loc[tid, columns].astype(float).to_numpy()
            ax.plot(frames, y, marker="o", ms=3, color=f"C{i}", label=f"#{i + 1} {tid} (epoch {int(last.loc[tid, 'epoch'])})")
            rows.append({"trial_id": tid, "role": f"best #{i + 1}", "epoch": int(last.loc[tid, "epoch"]), **dict(zip(columns, y))})
    for j, tid in enumerate(baseline_ids):
        if tid in last.index:
            y = last.loc[tid, columns].astype(float).to_numpy()
            ax.plot(frames, y, ls="--", color="0.4", label="baseline" if j == 0 else None)
            rows.append({"trial_id": tid, "role": "baseline", "epoch": int(last.loc[tid, "epoch"]), **dict(zip(columns, y))})
    ax.set_xlabel("frame of the generated clip")
    ax.set_ylabel(name)
    ax.set_title(f"{name} per frame at each trial's last epoch", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / f"{name}_per_frame.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path, pd.DataFrame(rows)
