"""The report's plots (studies/report/plots.py) on tiny synthetic inputs, read
back from the matplotlib figure each plot draws (captured as it is saved):
the factors plot's y-axis keeps to the trials, marks the intervals it cuts and
says what its marks mean; integer epoch ticks; the confirmation legend."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PathCollection

from studies.report import plots
from studies.report.ablation import _mark, build_ablation
from studies.runs.trials import STATUS_COMPLETE, RunTrials
from studies.spec.param import Param

SHAPE = Param("shape", "categorical", ("a", "b", "c"))
RUNG = 2


@pytest.fixture
def figures(monkeypatch) -> list[plt.Figure]:
    """Every figure a plot function saves, still readable after it is closed."""
    saved: list[plt.Figure] = []
    save = plots._save

    def keep(fig, path, *args, **kwargs):
        saved.append(fig)
        return save(fig, path, *args, **kwargs)

    monkeypatch.setattr(plots, "_save", keep)
    return saved


def _run(values: dict[str, list[float]], metric: str = "loss") -> RunTrials:
    """One trial per value, every trial at the rung (epoch 2) with that value;
    each trial its own config (a distinct ``other``), so none is merged."""
    rows, history = [], []
    for level, ys in values.items():
        for y in ys:
            tid = f"t{len(rows):03d}"
            rows.append({"trial_id": tid, "status": STATUS_COMPLETE, "epochs": RUNG, f"best_{metric}": y,
                         f"last_{metric}": y, "shape": level, "other": float(len(rows)), "seed": 0, "error": ""})
            history += [{"trial_id": tid, "epoch": 1, metric: y + 0.5}, {"trial_id": tid, "epoch": RUNG, metric: y}]
    return RunTrials(trials=pd.DataFrame(rows), history=pd.DataFrame(history), params=["shape", "other"])


def _factors(tmp_path, figures, values: dict[str, list[float]]):
    run = _run(values)
    ab = build_ablation(run, metric="loss", mode="min", factors=[SHAPE], baseline={"shape": "a"}, bins={},
                        max_epochs=RUNG, grace_period=RUNG, reduction_factor=3)
    path = plots.plot_factors(run, ab, [SHAPE], {}, tmp_path)
    assert path.is_file() and path.stat().st_size > 0
    fig = figures[-1]
    return fig, fig.axes[0], ab.tables[0].table.set_index("level")


def _clip_marks(ax) -> list[tuple[float, float]]:
    return [(float(line.get_xdata()[0]), float(line.get_ydata()[0])) for line in ax.lines
            if line.get_gid() == plots.CLIPPED_GID]


def _figure_text(fig) -> str:
    return "\n".join(t.get_text() for t in fig.texts)


# Level a (the reference): 8 trials near 1.0; b: two trials far apart, so its
# t-interval (t = 12.7 on 1 degree of freedom) is about 25 times the dots' span;
# c: 8 trials near 0.9, a short interval.
A = [1.00, 1.01, 0.99, 1.02, 0.98, 1.00, 1.01, 0.99]
B = [0.95, 1.15]
C = [0.90, 0.91, 0.89, 0.92, 0.88, 0.90, 0.91, 0.89]


def test_the_axis_keeps_to_the_trials_and_cuts_a_two_trial_interval(tmp_path, figures):
    fig, ax, table = _factors(tmp_path, figures, {"a": A, "b": B, "c": C})
    b = table.loc["b"]
    lo_end, hi_end = b["mean"] - b["ci95"], b["mean"] + b["ci95"]
    assert b["at_rung"] == 2 and b["ci95"] > 1.0  # the test's premise: a huge interval
    ymin, ymax = ax.get_ylim()
    points = A + B + C
    assert ymin < min(points) and max(points) < ymax            # every trial is on the axis ...
    assert ymin > lo_end and ymax < hi_end                      # ... the interval's ends are not
    span = max(points) - min(points)
    assert ymax - ymin < 2.5 * span                             # and it does not stretch the axis
    # Each end of b's interval that was cut is marked on that edge, at b's position (x = 1), and nothing else is.
    assert sorted(_clip_marks(ax)) == sorted([(1.0, ymin), (1.0, ymax)])
    labels = {t.get_text() for t in ax.texts}
    assert f"{hi_end:.3g}" in labels and f"{lo_end:.3g}" in labels
    assert "\u25b2" in _figure_text(fig) and "runs past the axis" in _figure_text(fig)


def test_intervals_that_fit_are_not_cut_nor_marked(tmp_path, figures):
    fig, ax, table = _factors(tmp_path, figures, {"a": A, "b": [0.95, 0.96, 0.94, 0.97], "c": C})
    ymin, ymax = ax.get_ylim()
    for level in "abc":
        r = table.loc[level + (" (ref)" if level == "a" else "")]
        assert ymin <= r["mean"] - r["ci95"] and r["mean"] + r["ci95"] <= ymax
    assert _clip_marks(ax) == []
    assert "runs past the axis" not in _figure_text(fig)


def test_a_short_overshoot_stretches_the_axis_instead_of_being_cut(tmp_path, figures):
    # b's interval ends a little beyond its dots (less than plots.REACH of the panel's span): shown whole.
    fig, ax, table = _factors(tmp_path, figures, {"a": A, "b": [0.90, 0.97, 0.95], "c": C})
    b = table.loc["b"]
    span = max(A + C) - min(A + C)
    assert b["mean"] - b["ci95"] > min(A + C) - plots.REACH * span  # the premise
    assert ax.get_ylim()[0] < b["mean"] - b["ci95"] < min(A + C)
    assert _clip_marks(ax) == []


def test_the_figure_says_what_the_stars_and_the_grey_dots_mean(tmp_path, figures):
    # c differs from a in all 8 of 8 pairs: Mann-Whitney p = 0.00016, ** after Holm.
    fig, ax, table = _factors(tmp_path, figures, {"a": A, "b": B, "c": C})
    assert table.loc["c", "sig"] == "**"
    assert [t.get_text() for t in ax.texts if "*" in t.get_text()] == ["**"]
    key = _figure_text(fig)
    # The key matches ablation._mark: ** below 0.01, * below 0.05, Holm-adjusted, against the reference.
    assert _mark(0.009) == "**" and _mark(0.011) == "*" and _mark(0.049) == "*" and _mark(0.051) == ""
    assert "* / **: Holm-adjusted p < 0.05 / p < 0.01" in key
    assert "Mann-Whitney" in key and "against the reference level" in key
    assert "grey dots: the reference level" in key
    # Grey is the reference level's dots (a), and only theirs.
    dots = [c for c in ax.collections if isinstance(c, PathCollection)]
    grey = [c for c in dots if np.allclose(c.get_facecolor()[0][:3], 0.55)]
    assert len(dots) == 3
    assert len(grey) == 1 and sorted(grey[0].get_offsets()[:, 1]) == sorted(A)
    # The key is inside the figure, below the panels, not over them.
    renderer = FigureCanvasAgg(fig).get_renderer()  # a closed figure keeps no canvas of its own
    key_box = next(t for t in fig.texts if "Mann-Whitney" in t.get_text()).get_window_extent(renderer)
    assert key_box.y1 < ax.get_tightbbox(renderer).y0 and key_box.y0 >= 0
    assert key_box.x0 >= 0 and key_box.x1 <= fig.bbox.width  # one panel: the key is wrapped to its width


def test_a_level_without_trials_at_the_rung_and_a_single_trial_level(tmp_path, figures):
    # b has a single trial (no interval), c none at the rung: no error, no mark, the axis still on the dots.
    fig, ax, table = _factors(tmp_path, figures, {"a": A, "b": [1.3]})
    ymin, ymax = ax.get_ylim()
    assert ymin < min(A) and 1.3 < ymax
    assert _clip_marks(ax) == []


def test_learning_curve_ticks_are_whole_epochs(tmp_path, figures):
    # Three epochs: matplotlib's default locator would tick 1.0, 1.25, 1.5, ...
    history = pd.DataFrame([{"trial_id": t, "epoch": e, "loss": 1.0 / e + i} for i, t in enumerate(["x", "y"])
                            for e in (1, 2, 3)])
    run = RunTrials(trials=pd.DataFrame({"trial_id": ["x", "y"]}), history=history, params=[])
    plots.plot_learning_curves(run, "loss", "min", ["x"], ["y"], tmp_path)
    ax = figures[-1].axes[0]
    FigureCanvasAgg(figures[-1]).draw()
    lo, hi = ax.get_xlim()
    ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
    assert ticks == [1.0, 2.0, 3.0]
    assert all(float(t).is_integer() for t in ax.get_xticks())


def test_confirmation_legend_names_the_mean_and_the_median(tmp_path, figures):
    runs = pd.DataFrame({"config": ["baseline"] * 3 + ["top1"] * 3, "seed": [0, 1, 2] * 2,
                         "loss": [1.0, 1.1, 1.6, 0.5, 0.52, 0.9]})
    plots.plot_confirmation(runs, "loss", tmp_path)
    ax = figures[-1].axes[0]
    legend = ax.get_legend()
    assert legend is not None
    entries = dict(zip([t.get_text() for t in legend.get_texts()], legend.legend_handles))
    mean = next(h for label, h in entries.items() if "mean" in label)
    median = next(h for label, h in entries.items() if "median" in label)
    # The handles are the drawn markers: the mean's sits at each config's mean, the median's at its median.
    mean_lines = [ln for ln in ax.lines if ln.get_marker() == mean.get_marker() and ln.get_color() == mean.get_color()]
    assert sorted(float(ln.get_ydata()[0]) for ln in mean_lines) == pytest.approx(sorted([np.mean([1.0, 1.1, 1.6]), np.mean([0.5, 0.52, 0.9])]))
    median_lines = [ln for ln in ax.lines if ln.get_color() == median.get_color() and len(ln.get_ydata()) == 2
                    and ln.get_ydata()[0] == ln.get_ydata()[1]]
    assert sorted(float(ln.get_ydata()[0]) for ln in median_lines) == pytest.approx([0.52, 1.1])
    assert not math.isclose(np.mean([1.0, 1.1, 1.6]), 1.1)  # mean and median differ here, so the check tells them apart
