"""PNG plots beside the tables (matplotlib, no display needed)."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from studies.report.ablation import AblationResult, Param, level_labels, values_at_epoch
from studies.runs.trials import RunTrials


def _subplots(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float], squeeze: bool = True) -> tuple[Figure, Any]:
    """A figure with its own Agg canvas: no pyplot, so no global backend or figure registry."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, squeeze=squeeze)


def _save(fig: Figure, path: Path, rect: tuple[float, float, float, float] | None = None) -> Path:
    fig.tight_layout(rect=rect)
    fig.savefig(path, dpi=110)
    return path


# The factors plot's y-axis: every trial's dot and every level mean, with
# AXIS_PAD of their span beyond them (SIG_PAD at the top of a panel with * marks);
# an interval may stretch it by up to REACH of that span more, and is cut there.
AXIS_PAD = 0.08
SIG_PAD = 0.16
REACH = 0.3
CLIPPED_GID = "clipped-ci"  # the edge markers of intervals that run past the axis
FACTORS_KEY = ("Dots: trials that reached the rung; grey dots: the reference level (the level every other level is "
               "tested against). Black bars: level mean \u00b1 95% t-interval (repeated configs merged).\n"
               "Red * / **: Holm-adjusted p < 0.05 / p < 0.01, two-sided Mann-Whitney U test of that level against "
               "the reference level, Holm over the levels of one panel.")
CLIPPED_KEY = ("\u25b2 / \u25bc at an axis edge: a 95% interval that runs past the axis (the axis keeps to the trials "
               "and means); the number beside it is where the interval ends.")


def _data_limits(values: list[float], intervals: list[tuple[int, float, float]], *,
                 top_pad: float) -> tuple[float, float] | None:
    """The y-range of the plotted dots and means, padded, and reaching out to
    the intervals' ends by at most REACH of their span; None without values."""
    v = np.asarray([x for x in values if math.isfinite(x)], dtype=float)
    if not len(v):
        return None
    lo, hi = float(v.min()), float(v.max())
    span = hi - lo or (0.1 * abs(hi) or 1.0)
    ends = np.asarray([e for _, a, b in intervals for e in (a, b) if math.isfinite(e)] or [lo], dtype=float)
    lo_reach = max(min(lo, float(ends.min())), lo - REACH * span)
    hi_reach = min(max(hi, float(ends.max())), hi + REACH * span)
    return lo_reach - AXIS_PAD * span, hi_reach + top_pad * span


def _mark_clipped(ax: Axes, x: float, end: float, *, top: bool) -> None:
    """A triangle on the axis edge where an interval leaves it, with the interval's end beside it."""
    edge = ax.get_ylim()[1 if top else 0]
    ax.plot([x], [edge], marker="^" if top else "v", ms=7, color="k", clip_on=False, zorder=5, gid=CLIPPED_GID)
    ax.annotate(f"{end:.3g}", (x, edge), xytext=(5, -2 if top else 2), textcoords="offset points", ha="left",
                va="top" if top else "bottom", fontsize=7, color="k")


def plot_factors(run: RunTrials, ablation: AblationResult, factors: list[Param], bins: dict, out: Path) -> Path:
    """Metric at the rung against each factor: every trial as a dot, level
    means as bars with 95% CIs; the reference level in grey. The y-axis keeps
    to the dots and means: an interval longer than that (a level with two
    trials has t = 12.7) is cut at the axis edge and marked there."""
    n = max(1, len(ablation.tables))
    cols = min(3, n)
    rows = math.ceil(n / cols)
    height = 3.8 * rows + 0.6
    fig, axes = _subplots(rows, cols, figsize=(5.2 * cols, height), squeeze=False)
    trials = run.trials.set_index("trial_id")
    infos = {f.name: f for f in factors}
    any_clipped = False
    for ax, ft in zip(axes.flat, ablation.tables):
        labels = level_labels(trials[ft.factor], infos[ft.factor], bins.get(ft.factor))
        at_rung = values_at_epoch(run, ablation.metric, ft.rung)
        levels = [lv.removesuffix(" (ref)") for lv in ft.table["level"]]
        rng = np.random.default_rng(0)
        plotted: list[float] = []
        intervals: list[tuple[int, float, float]] = []
        for i, (level, row) in enumerate(zip(levels, ft.table.itertuples())):
            ids = labels.index[labels == level]
            y = at_rung.reindex(ids).dropna()
            color = "0.55" if level == ft.reference else "C0"
            if len(y):
                ci = 0.0 if math.isnan(row.ci95) else float(row.ci95)
                ax.scatter(i + rng.uniform(-0.15, 0.15, len(y)), y, s=14, color=color, alpha=0.7, zorder=3)
                ax.errorbar(i, row.mean, yerr=ci, fmt="_", color="k", markersize=22, capsize=4, zorder=4)
                plotted += [*y.astype(float), float(row.mean)]
                intervals.append((i, float(row.mean) - ci, float(row.mean) + ci))
        sig = [(i, mark) for i, mark in enumerate(ft.table["sig"]) if mark]
        limits = _data_limits(plotted, intervals, top_pad=SIG_PAD if sig else AXIS_PAD)
        clipped_top = set()
        if limits is not None:
            ax.set_ylim(*limits)
            for i, lo, hi in intervals:
                if hi > limits[1]:
                    _mark_clipped(ax, i, hi, top=True)
                    clipped_top.add(i)
                if lo < limits[0]:
                    _mark_clipped(ax, i, lo, top=False)
                any_clipped |= hi > limits[1] or lo < limits[0]
        for i, mark in sig:  # beside the edge triangle where the level's interval is cut at the top
            ax.annotate(mark, (i - (0.25 if i in clipped_top else 0), 1.0), xycoords=("data", "axes fraction"),
                        ha="center", va="top", fontsize=13, color="C3")
        ax.set_xticks(range(len(levels)), [lv.replace("(not sampled)", "not\nsampled") for lv in levels], rotation=20, fontsize=8)
        ax.set_title(f"{ft.factor} (ref: {ft.reference})", fontsize=10)
        ax.set_ylabel(f"{ablation.metric} @ epoch {ft.rung}")
        ax.grid(axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(ablation.tables):]:
        ax.axis("off")
    fig.suptitle(f"{ablation.metric} at each factor's rung, by level", fontsize=10)
    key = _wrap([*FACTORS_KEY.split("\n"), *([CLIPPED_KEY] if any_clipped else [])], width_in=5.2 * cols, fontsize=8)
    fig.text(0.01, 0.005, key, ha="left", va="bottom", fontsize=8, color="0.2")
    foot = (0.08 + (key.count("\n") + 1) * 8 * 1.2 / 72) / height  # the key's lines, in inches, as a share
    return _save(fig, out / "factors.png", rect=(0, foot, 1, 1))


def _wrap(paragraphs: list[str], *, width_in: float, fontsize: float) -> str:
    """Lines that fit a figure ``width_in`` wide at ``fontsize`` points (a character about 0.55 em)."""
    chars = max(40, int(0.97 * width_in * 72 / (0.55 * fontsize)))
    return "\n".join(textwrap.fill(p, chars) for p in paragraphs)


def plot_learning_curves(run: RunTrials, metric: str, mode: str, best_ids: list[str], baseline_ids: list[str], out: Path) -> Path:
    fig, ax = _subplots(figsize=(7.5, 4.5))
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
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.set_title("Learning curves: best trials (colour), best baseline trials (dashed), others (grey)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out / "learning_curves.png")


def plot_importances(importances: pd.DataFrame, out: Path, rung: int | None = None) -> Path:
    """fANOVA share beside PED-ANOVA (scaled to its largest), one row per parameter."""
    fig, ax = _subplots(figsize=(7, 0.8 + 0.5 * max(1, len(importances))))
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


def plot_modelled(tables: list, metric: str, rung: int, out: Path, *, name: str = "modelled.png") -> Path:
    """Each factor's modelled marginals with 95% bootstrap intervals; the
    reference in grey, marked levels flagged."""
    n = max(1, len(tables))
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = _subplots(rows, cols, figsize=(5.2 * cols, 3.6 * rows), squeeze=False)
    for ax, t in zip(axes.flat, tables):
        d = t.table
        x = np.arange(len(d))
        ref = d["level"].str.endswith("(ref)")
        err = np.vstack([d["marginal"] - d["lo"], d["hi"] - d["marginal"]]).clip(min=0)
        for mask, color in ((ref.to_numpy(), "0.5"), (~ref.to_numpy(), "C0")):  # one artist per colour
            ax.errorbar(x[mask], d["marginal"].to_numpy()[mask], yerr=err[:, mask], fmt="o", capsize=4, color=color)
        marked = x[(d["sig"].fillna("") != "").to_numpy()]
        if len(marked):  # headroom: the marks sit above every interval, not on a point near the top
            lo, hi = ax.get_ylim()
            ax.set_ylim(lo, hi + 0.15 * (hi - lo))
        for i in marked:
            ax.annotate(d["sig"].iloc[i], (i, 1.0), xycoords=("data", "axes fraction"), ha="center", va="top",
                        fontsize=13, color="C3")
        ax.set_xticks(x, [lv.replace(" (ref)", "\n(ref)") for lv in d["level"]], rotation=20, fontsize=8)
        ax.set_title(f"{t.factor}" + ("" if t.scope == "whole space" else "\n" + textwrap.fill(f"({t.scope})", 55)),
                     fontsize=9)
        ax.set_ylabel(f"modelled {metric} @ epoch {rung}")
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.grid(axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(tables):]:
        ax.axis("off")
    title = ("Modelled marginals over the declared space (main effects + random forest; 95% bootstrap intervals; "
             "** Holm p < 0.01 for the difference to the reference, on paired refits, where the gates hold)")
    fig.suptitle(_wrap([title], width_in=fig.get_figwidth(), fontsize=10), fontsize=10)
    return _save(fig, out / name)


def plot_leave_one_out(table: pd.DataFrame, metric: str, out: Path) -> Path:
    """Paired change from setting each factor of the best config to its baseline."""
    fig, ax = _subplots(figsize=(7, 0.9 + 0.55 * max(1, len(table))))
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
    fig, ax = _subplots(figsize=(7, 4))
    labels = list(dict.fromkeys(runs["config"]))
    data = [runs.loc[runs["config"] == c, metric].dropna().to_numpy() for c in labels]
    box = ax.boxplot(data, tick_labels=labels, showmeans=True, meanprops={"zorder": 4}, medianprops={"zorder": 4})
    dots = None
    for i, y in enumerate(data):
        dots = ax.scatter(np.full(len(y), i + 1), y, s=16, color="C0", zorder=3)
    handles = [box["means"][0], box["medians"][0]] + ([dots] if dots is not None else [])
    ax.legend(handles, ["mean over seeds", "median over seeds", "one seed"][:len(handles)], fontsize=8)
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
    fig, ax = _subplots(figsize=(7.5, 4.5))
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
    return path, pd.DataFrame(rows)


PARETO_PANEL_IN = 5.2   # one pair of objectives' panel, inches wide


def plot_pareto(points: pd.DataFrame, metrics: list[str], modes: list[str], baseline_id: str | None, out: Path,
                *, confirmed: pd.DataFrame | None = None, constant: list[str] | None = None) -> Path:
    """Every pair of the objectives compared: the full-budget configs (grey), the
    front (the study's, over every objective compared: orange), the pair's own
    two-objective front as a staircase, and the baseline (a black star).
    ``confirmed``: the confirmation stage's mean per config (columns config and
    each metric), drawn as labelled crosses.

    ``constant``: objectives the same in every full-budget trial (the report's
    ``TradeOff.constant``; by default those constant over ``points``, see
    ``constant_columns``). They get no panel of their own and are named with their
    one value in the title; only when fewer than two objectives are compared is a
    constant one drawn, as an axis with that one value as its only tick. Tick
    labels never use an offset (``1e-13+1.666666667e-1``): the values are shown as
    they are."""
    from studies.spec.pareto import constant_columns

    if constant is None:
        constant = [m for m, c in zip(metrics, constant_columns(points[metrics].to_numpy(dtype=float))) if c]
    compared = [i for i, m in enumerate(metrics) if m not in constant]
    pairs = _pareto_pairs(len(metrics), compared)
    width = PARETO_PANEL_IN * len(pairs)
    fig, axes = _subplots(1, len(pairs), figsize=(width, 4.6), squeeze=False)
    for ax, (i, j) in zip(axes[0], pairs):
        _draw_points(ax, points, metrics[i], metrics[j], every_objective=len(compared) > 2)
        if metrics[i] not in constant and metrics[j] not in constant:
            _draw_pair_front(ax, points[[metrics[i], metrics[j]]].to_numpy(dtype=float), modes[i], modes[j])
        _draw_baseline_and_confirmed(ax, points, metrics[i], metrics[j], baseline_id, confirmed)
        ax.ticklabel_format(axis="both", useOffset=False)
        _label_pareto_axes(ax, points, (metrics[i], modes[i]), (metrics[j], modes[j]), constant)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    lines = ["Trade-offs at the full budget (search trials: one seed each)"]
    if constant:
        lines.append("Left out of the front, the same in every trial: "
                     + ", ".join(f"{m}\u00a0=\u00a0{float(points[m].iloc[0]):.4g}" for m in constant))   # kept on one line
    fig.suptitle(_wrap(lines, width_in=width, fontsize=10), fontsize=10)
    return _save(fig, out / "pareto.png")


def _pareto_pairs(n_metrics: int, compared: list[int]) -> list[tuple[int, int]]:
    """Every pair of the compared objectives; with fewer than two compared, the one
    (or the first) drawn against a constant one, at its single value."""
    from itertools import combinations

    if len(compared) >= 2:
        return list(combinations(compared, 2))
    first, second = (compared + [i for i in range(n_metrics) if i not in compared])[:2]
    return [(first, second)]


def _draw_points(ax: Axes, points: pd.DataFrame, x: str, y: str, *, every_objective: bool) -> None:
    rest = points[~points["front"]]
    front = points[points["front"]]
    ax.scatter(rest[x], rest[y], s=18, color="0.7", label="ran the full budget")
    ax.scatter(front[x], front[y], s=30, color="C1", edgecolor="k", lw=0.4, zorder=3,
               label="on the front" + (" (every objective compared)" if every_objective else ""))


def _draw_pair_front(ax: Axes, pair: np.ndarray, mode_x: str, mode_y: str) -> None:
    """The two objectives' own front, as a staircase through the points no other beats in both."""
    sx, sy = (1 if mode_x == "min" else -1), (1 if mode_y == "min" else -1)
    order = np.argsort(sx * pair[:, 0], kind="stable")
    stair, best = [], math.inf
    for k in order:
        if sy * pair[k, 1] < best:
            best = sy * pair[k, 1]
            stair.append(pair[k])
    if len(stair) > 1:
        s = np.array(stair)
        ax.step(s[:, 0], s[:, 1], where="post", color="C1", lw=1, alpha=0.7, label="front of these two")


def _draw_baseline_and_confirmed(ax: Axes, points: pd.DataFrame, x: str, y: str, baseline_id: str | None,
                                 confirmed: pd.DataFrame | None) -> None:
    if baseline_id is not None and (points["trial_id"] == baseline_id).any():
        b = points[points["trial_id"] == baseline_id].iloc[0]
        ax.scatter([b[x]], [b[y]], marker="*", s=160, color="k", zorder=4, label="baseline")
    if confirmed is not None and not confirmed.empty:
        ax.scatter(confirmed[x], confirmed[y], marker="x", s=50, color="C3", zorder=5, label="confirmed (mean over seeds)")
        for _, r in confirmed.iterrows():
            ax.annotate(str(r["config"]), (r[x], r[y]), fontsize=7, xytext=(3, 3), textcoords="offset points")


def _label_pareto_axes(ax: Axes, points: pd.DataFrame, x: tuple[str, str], y: tuple[str, str],
                       constant: list[str]) -> None:
    """Each axis named with its direction; a constant objective's axis held at its one value, its only tick."""
    for axis, (name, mode) in ((ax.xaxis, x), (ax.yaxis, y)):
        label = f"{name} ({'lower' if mode == 'min' else 'higher'} is better)"
        if name in constant:
            value = float(points[name].iloc[0])
            pad = 0.05 * (abs(value) or 1.0)
            (ax.set_xlim if axis is ax.xaxis else ax.set_ylim)(value - pad, value + pad)
            axis.set_ticks([value], [f"{value:.4g}"])
            label = f"{name}: the same in every trial"
        axis.set_label_text("\n".join(textwrap.wrap(label, 48)))
