"""The trade-off plot (plots/pareto.png): no offset on any axis (a value constant
up to float noise was labelled ``1e-13+1.666666667e-1``), a constant objective
shown at its one value and named in the title, only the compared objectives
paired, and every title inside the figure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from studies.report import plots

SIXTH = 1 / 6


@pytest.fixture
def figures(monkeypatch) -> list[Figure]:
    """Every figure a plot function saves."""
    saved: list[Figure] = []
    save = plots._save

    def keep(fig, path, *args, **kwargs):
        saved.append(fig)
        return save(fig, path, *args, **kwargs)

    monkeypatch.setattr(plots, "_save", keep)
    return saved


def _points(n: int = 10, **extra: np.ndarray) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    p = pd.DataFrame({"trial_id": [f"t{i}" for i in range(n)], "loss": rng.uniform(0.1, 0.5, n),
                      "latency": rng.uniform(3.0, 9.0, n), **extra})
    p["front"] = [True, True, True] + [False] * (n - 3)
    return p


def _drawn(figures: list[Figure]) -> Figure:
    """The last saved figure, drawn as it was saved (Agg), so texts and ticks are laid out."""
    fig = figures[-1]
    FigureCanvasAgg(fig).draw()
    return fig


def _inside(fig: Figure) -> None:
    """Every title and axis label drawn lies within the figure (nothing cut off)."""
    renderer = fig.canvas.get_renderer()
    texts = [t for t in [fig._suptitle, *fig.texts] if t is not None and t.get_text()]
    for ax in fig.axes:
        texts += [ax.title, ax.xaxis.label, ax.yaxis.label]
    box = fig.bbox
    for t in texts:
        if not t.get_text():
            continue
        e = t.get_window_extent(renderer)
        assert e.x0 >= box.x0 - 1 and e.x1 <= box.x1 + 1 and e.y0 >= box.y0 - 1 and e.y1 <= box.y1 + 1, t.get_text()


def _offsets(fig: Figure) -> list[str]:
    return [a.get_offset_text().get_text() for ax in fig.axes for a in (ax.xaxis, ax.yaxis)]


def test_a_constant_objective_with_float_noise_is_one_tick_with_no_offset(tmp_path: Path, figures) -> None:
    noise = SIXTH + np.array([1e-13, -1e-13, 2e-13, 0, 3e-13, -2e-13, 1e-13, 0, 0, 1e-13])
    points = _points(probe=noise)
    confirmed = pd.DataFrame({"config": ["front1"], "loss": [0.2], "latency": [4.0], "probe": [SIXTH + 4e-13]})
    path = plots.plot_pareto(points, ["loss", "latency", "probe"], ["min", "min", "max"], "t0", tmp_path,
                             confirmed=confirmed)
    assert path.is_file()
    fig = _drawn(figures)
    assert len(fig.axes) == 1                               # loss vs latency: the constant probe pairs with nothing
    ax = fig.axes[0]
    assert "probe" not in ax.get_xlabel() + ax.get_ylabel()
    assert _offsets(fig) == ["", ""]
    title = fig._suptitle.get_text()
    assert "probe\u00a0=\u00a00.1667" in title and "e-13" not in title
    _inside(fig)


def test_one_objective_compared_is_drawn_against_the_constant_one_at_its_value(tmp_path: Path, figures) -> None:
    points = _points(probe=SIXTH + np.linspace(-3e-13, 3e-13, 10))
    plots.plot_pareto(points, ["loss", "probe"], ["min", "max"], "t0", tmp_path)
    fig = _drawn(figures)
    ax = fig.axes[0]
    assert ax.get_xlabel().startswith("loss") and ax.get_ylabel() == "probe: the same in every trial"
    assert [t.get_text() for t in ax.get_yticklabels()] == ["0.1667"]
    assert ax.get_yticks() == pytest.approx([SIXTH])
    lo, hi = ax.get_ylim()
    assert lo < SIXTH < hi and hi - lo == pytest.approx(0.1 * SIXTH)   # not a 1e-13 wide axis
    assert _offsets(fig) == ["", ""]
    assert not any(line.get_label() == "front of these two" for line in ax.lines)   # no staircase along a constant
    _inside(fig)


def test_close_large_values_get_no_offset_either(tmp_path: Path, figures) -> None:
    # a real objective with a small spread far from 0 (matplotlib would write +1e3 beside the axis)
    points = _points(step=1000.0 + np.linspace(0.001, 0.01, 10))
    plots.plot_pareto(points, ["loss", "latency", "step"], ["min", "min", "min"], None, tmp_path)
    fig = _drawn(figures)
    assert len(fig.axes) == 3 and set(_offsets(fig)) == {""}
    labels = [t.get_text() for t in fig.axes[1].get_yticklabels() if t.get_text()]
    assert labels and all(lbl.startswith("1000.") for lbl in labels)
    _inside(fig)


def test_long_objective_names_and_several_constants_stay_inside(tmp_path: Path, figures) -> None:
    n = 10
    points = _points(n, val_probe_accuracy_of_the_linear_readout=np.full(n, SIXTH),
                     another_objective_that_never_moves_at_all=np.zeros(n))
    points = points.rename(columns={"loss": "validation_reconstruction_loss_of_the_decoder"})
    metrics = ["validation_reconstruction_loss_of_the_decoder", "latency", "val_probe_accuracy_of_the_linear_readout",
               "another_objective_that_never_moves_at_all"]
    plots.plot_pareto(points, metrics, ["min", "min", "max", "max"], "t0", tmp_path)
    fig = _drawn(figures)
    assert len(fig.axes) == 1
    title = fig._suptitle.get_text()
    assert "val_probe_accuracy_of_the_linear_readout\u00a0=\u00a00.1667" in title
    assert "another_objective_that_never_moves_at_all\u00a0=\u00a00" in title
    _inside(fig)
