"""A study with several objectives: the Pareto front at the full budget, its
hypervolume, which factor levels the front is made of, and the baseline's
place against it (Ray-free, as the rest of the report).

Only trials that ran the full budget are compared: a trial ASHA stopped has
values from an earlier epoch, and an early epoch's smoothness or loss is not
the same quantity as the full budget's. The front is a fact about these
single-seed trials (observed evidence); the confirmation stage re-runs front
configs over seeds (designed evidence).

An objective that is the same in every full-budget trial, up to ``RESOLUTION`` of
its magnitude (``constant_columns``: a probe that recognised nothing scores 1/6
in every trial, give or take float rounding), separates no config. It is left out
of dominance, of the front's order and ends and of the hypervolume, and said to
be, with its one value; the front is decided by the objectives compared. With
one objective compared the front is the config(s) best in it (ties included)
and there is no hypervolume (one objective has no trade-off to measure); with
none, every config ties and there is no front.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from studies.report.ablation import NOT_SAMPLED, level_labels
from studies.runs.trials import RunTrials, full_budget_values, merge_repeated_configs
from studies.spec.direction import Direction
from studies.spec.param import Param
from studies.spec.pareto import RESOLUTION, constant_columns, hypervolume, nondominated_ranks, reference_point

REFERENCE_MARGIN = 0.1


@dataclass
class TradeOff:
    metrics: list[str]
    modes: list[str]
    points: pd.DataFrame          # one row per distinct config that ran the full budget: trial_id (its first
                                  # trial), trials_merged, each metric (mean over its trials), params, front (bool)
    front: pd.DataFrame           # the front configs (rows of points), best first on the first objective
    reference: np.ndarray         # the hypervolume's reference point, in the metrics' own units, one per metric
                                  # (NaN for a constant objective; all NaN when fewer than two are compared)
    hypervolume: float            # over the compared objectives; NaN when fewer than two are compared
    baseline: pd.Series | None    # the baseline's config (Optuna trial 0's), when it ran the full budget
    dominated_by: list[str]       # front configs (their first trial ids) that dominate the baseline
    shares: pd.DataFrame          # factor, level, full_budget, on_front, share_of_front, share_of_level (in configs)
    n_trials: int                 # every trial of the run
    trials: pd.DataFrame | None = None   # one row per full-budget trial: trial_id, config (its first trial), metrics
    constant: list[str] = field(default_factory=list)  # objectives the same (up to RESOLUTION) in every such trial

    @property
    def compared(self) -> list[str]:
        """The objectives that decide dominance: every one but the constant ones."""
        return [m for m in self.metrics if m not in self.constant]

    @property
    def compared_modes(self) -> list[str]:
        return [d for m, d in zip(self.metrics, self.modes) if m not in self.constant]

    @property
    def n_full_budget_trials(self) -> int:
        """Trials (repeats counted) that ran the full budget."""
        return len(self.trials) if self.trials is not None else len(self.points)


def dominates(a: np.ndarray, b: np.ndarray, modes: list[str]) -> bool:
    """Is ``a`` at least as good as ``b`` in every objective and better in one?
    (Values as ``merge_repeated_configs`` leaves them: ties already made equal.)"""
    sign = np.array([1.0 if m == "min" else -1.0 for m in modes])
    x, y = sign * np.asarray(a, dtype=float), sign * np.asarray(b, dtype=float)
    return bool(np.all(x <= y) and np.any(x < y))


def _constant_objectives(values: pd.DataFrame, metrics: list[str]) -> list[str]:
    """The objectives with one value (up to RESOLUTION of their magnitude, see
    ``constant_columns``) over at least two full-budget trials, every trial counted
    (not only distinct configs: repeats of one config are evidence of constancy too)."""
    if len(values) < 2:
        return []
    mask = constant_columns(values[metrics].to_numpy(dtype=float))
    return [m for m, c in zip(metrics, mask) if c]


def trade_off(run: RunTrials, *, metrics: list[str], modes: list[str], factors: list[Param], bins: dict[str, Any],
              max_epochs: int, baseline_trial: str | None) -> TradeOff:
    values = full_budget_values(run, metrics, max_epochs)
    per_trial, points = merge_repeated_configs(run, values, metrics, also=[f.name for f in factors])
    constant = _constant_objectives(values, metrics)
    compared = [m for m in metrics if m not in constant]
    cmodes = [d for m, d in zip(metrics, modes) if m not in constant]
    y = points[compared].to_numpy(dtype=float)
    reference, hv = np.full(len(metrics), math.nan), math.nan
    if not len(points):
        points["front"] = pd.Series(dtype=bool)
    elif not compared:
        points["front"] = True                        # nothing separates any config
    else:
        points["front"] = nondominated_ranks(y, cmodes) == 0
        if len(compared) >= 2:
            ref = reference_point(y, cmodes, margin=REFERENCE_MARGIN)
            hv = hypervolume(y[points["front"].to_numpy()], cmodes, ref)
            reference[[metrics.index(m) for m in compared]] = ref
    per_trial["front"] = per_trial["config"].map(points.set_index("trial_id")["front"]).astype(bool)
    ascending = [Direction(m).ascending for m in cmodes]
    front = points[points["front"]]
    if compared:
        front = front.sort_values(compared, ascending=ascending, kind="stable")
    front = front.reset_index(drop=True)
    base_config = per_trial.loc[per_trial["trial_id"] == baseline_trial, "config"]
    base = points[points["trial_id"].isin(base_config)]
    base_row = base.iloc[0] if len(base) else None
    dominated_by = []
    if base_row is not None and compared:
        b = base_row[compared].to_numpy(dtype=float)
        dominated_by = [r["trial_id"] for _, r in front.iterrows()
                        if dominates(r[compared].to_numpy(dtype=float), b, cmodes)]
    return TradeOff(metrics, modes, points, front, reference, hv, base_row, dominated_by,
                    _front_shares(points, factors, bins), len(run.trials), per_trial, constant)


def _front_shares(points: pd.DataFrame, factors: list[Param], bins: dict[str, Any]) -> pd.DataFrame:
    """Per factor level: how many distinct full-budget configs had it, how many of
    them are on the front, that level's share of the front, and the share of its
    own configs that made the front (the searcher decides how many configs a level
    gets, so the second share is the fairer comparison between levels). Configs,
    not trials: a config run three times is one member of the front, not three."""
    rows = []
    n_front = int(points["front"].sum()) if len(points) else 0
    for f in factors:
        if f.name not in points.columns or not len(points):
            continue
        labels = level_labels(points[f.name], f, bins.get(f.name))
        for level, idx in labels.groupby(labels, sort=False).groups.items():
            on = int(points.loc[idx, "front"].sum())
            rows.append({"factor": f.name, "level": level, "full_budget": len(idx), "on_front": on,
                         "share_of_front": on / n_front if n_front else math.nan,
                         "share_of_level": on / len(idx) if len(idx) else math.nan})
    return pd.DataFrame(rows, columns=["factor", "level", "full_budget", "on_front", "share_of_front", "share_of_level"])


def _repeats_phrase(t: TradeOff) -> str:
    """How many trials the distinct configs stand for, when some config ran more than once."""
    repeated = int((t.points["trials_merged"] > 1).sum()) if len(t.points) else 0
    if not repeated:
        return ""
    return (f" ({t.n_full_budget_trials} trials: {repeated} config(s) ran more than once, each counted once at the "
            f"mean of its trials)")


def _and(words: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def constant_line(t: TradeOff, m: str) -> str:
    """One line for an objective left out because it is the same in every full-budget trial, with that value."""
    value = float(t.points[m].iloc[0])
    return (f"{m} is the same in every full-budget trial ({value:.4g}): left out of dominance and the hypervolume "
            f"(its values in the {t.n_full_budget_trials} trials differ by float rounding at most, less than "
            f"{RESOLUTION:g} of their magnitude, so it separates no config).")


def _every(t: TradeOff) -> str:
    """Where a front config beats another: 'in every objective', or the objectives compared."""
    if len(t.compared) == 1:
        return f"in {t.compared[0]}"
    return "in every objective compared" if t.constant else "in every objective"


def _hv_phrase(t: TradeOff) -> str:
    return "" if math.isnan(t.hypervolume) else f" (hypervolume {t.hypervolume:.4g})"


def front_caption(t: TradeOff, max_epochs: int) -> str:
    dirs = ", ".join(f"{m} ({Direction(d).word} is better)" for m, d in zip(t.compared, t.compared_modes))
    left_out = "".join(f" {constant_line(t, m)}" for m in t.constant)
    common = (f"Repeats merged: a config the searcher proposed more than once (each a separate trial) is one member, "
              f"its values the mean over its trials, `trials_merged` counts them, `trial_id` is its first trial. "
              f"Values closer than {RESOLUTION:g} of an objective's magnitude are ties. One seed per trial (observed "
              f"evidence; the confirmation stage re-runs front configs over seeds).")
    head = f"Pareto front at the full budget ({max_epochs} epochs): the {len(t.front)} of {len(t.points)} distinct " \
           f"configs that ran the full budget{_repeats_phrase(t)}"
    if not t.compared:
        return (f"{head}: every objective is the same in every such trial, so no config beats another and every "
                f"config is listed.{left_out} {common}")
    if len(t.compared) == 1:
        return (f"{head} best in the one objective compared, {dirs} (ties included): with one objective there is no "
                f"trade-off and no hypervolume.{left_out} {common}")
    ref = ", ".join(f"{m} = {v:.4g}" for m, v in zip(t.metrics, t.reference) if m in t.compared)
    return (f"{head} which no other such config beats {_every(t)}: {dirs}.{left_out} {common} Hypervolume of the "
            f"front {t.hypervolume:.4g} (over {_and(t.compared)}), against the reference point ({ref}): the worst "
            f"value of each objective among these configs, moved outwards by {REFERENCE_MARGIN:.0%} of its range.")


SHARES_CAPTION = ("Which factor levels the front is made of, in distinct configs (a config run more than once counts "
                  "once): per level, the configs that ran the full budget (`full_budget`), how many of them are on the "
                  "front (`on_front`), the level's share of the front, and the share of the level's own full-budget "
                  "configs that made the front (`share_of_level`: the searcher decides how many configs each level "
                  "gets, so compare levels by this one).")


def front_table(t: TradeOff, params: list[str]) -> pd.DataFrame:
    """The front configs with the objectives compared (a constant objective's one value is in the caption)."""
    cols = ["trial_id", "trials_merged", *t.compared, *[p for p in params if p in t.front.columns]]
    out = t.front[cols].copy()
    if t.baseline is not None:
        out.insert(1, "baseline", out["trial_id"] == t.baseline["trial_id"])
    return out


def _change(value: float, ref: float, scale: str) -> str:
    if scale == "ratio" and ref > 0 and value > 0:
        return f"{(value / ref - 1) * 100:+.0f}%"
    return f"{value - ref:+.3g}"


def tradeoff_sentences(t: TradeOff, params: list[str], scales: list[str]) -> list[str]:
    """The answer for a trade-off study, each claim naming its evidence. Every
    count is of distinct configs: a config the searcher ran several times is one
    front member (at the mean of its trials), never several. A constant objective
    gets one line (its value, and that it is left out) and appears nowhere else."""
    dirs = "; ".join(f"{m} {Direction(d).word} is better" for m, d in zip(t.metrics, t.modes))
    if not len(t.points):
        return [f"({dirs}) No search trial ran the full budget, so there is no Pareto front yet."]
    head = (f"({dirs}) **Observed, Pareto front** (single-seed search trials at the full budget): "
            f"{len(t.front)} of the {len(t.points)} distinct configs that ran the full budget{_repeats_phrase(t)}")
    if not t.compared:
        return [f"{head} tie: every objective is the same in every one of them, so no config beats another and "
                f"there is no front.", *[constant_line(t, m) for m in t.constant]]
    if len(t.compared) == 1:
        parts = [f"{head} are the front: with one objective compared, the config(s) best in {t.compared[0]} "
                 f"(no trade-off, no hypervolume)."]
    else:
        parts = [f"{head} are on the front{_hv_phrase(t)}."]
    parts += [constant_line(t, m) for m in t.constant]
    shown_scales = [s for m, s in zip(t.metrics, scales) if m in t.compared]
    if t.baseline is not None:
        b = t.baseline
        shown = ", ".join(f"{m} {b[m]:.4g}" for m in t.compared)
        if int(b["trials_merged"]) > 1:
            shown += f" (mean of its {int(b['trials_merged'])} trials)"
        if not t.dominated_by:
            parts.append(f"The baseline ({_params(b, params)}; {shown}) is on the front: no config beats it "
                         f"{_every(t)}.")
        else:
            best = t.points.set_index("trial_id").loc[t.dominated_by]
            # the dominating config with the largest gain in the first objective compared
            d = Direction(t.compared_modes[0])
            pick = best.loc[d.idxbest(best[t.compared[0]])]
            changes = ", ".join(f"{m} {_change(pick[m], b[m], s)}" for m, s in zip(t.compared, shown_scales))
            parts.append(f"The baseline ({_params(b, params)}; {shown}) is **not** on the front: {len(t.dominated_by)} "
                         f"front config(s) beat it {_every(t)}, e.g. trial {pick.name} ({_params(pick, params)}): "
                         f"{changes}.")
    else:
        parts.append("The baseline did not run the full budget in the search, so its place against the front is "
                     "not known from the search.")
    extremes = _extremes(t, params, scales)
    if extremes:
        parts.append(("The front's ends: " if len(t.compared) > 1 else "The front: ") + "; ".join(extremes) + ".")
    s = t.shares[~t.shares["level"].isin([NOT_SAMPLED, "out of bins"])] if not t.shares.empty else t.shares
    if not s.empty:
        lines = []
        for factor, g in s.groupby("factor", sort=False):
            top = g.sort_values(["share_of_front", "share_of_level"], ascending=False).iloc[0]
            lines.append(f"{factor} = {top['level']} ({int(top['on_front'])} of {len(t.front)} front configs; "
                         f"{top['share_of_level']:.0%} of its {int(top['full_budget'])} full-budget configs)")
        parts.append("Most of the front: " + "; ".join(lines) + ".")
    return parts


def _extremes(t: TradeOff, params: list[str], scales: list[str]) -> list[str]:
    """The front's ends: each front config that is best in some compared objective,
    named once with every objective it is best in ("trial t1, best error and
    speed"), its values and its change against the baseline (when the baseline ran
    the full budget). Front configs tied with it in every compared objective (the
    only way two front members can tie on a best value) are named beside it."""
    if t.front.empty or not t.compared:
        return []
    ends: dict[int, list[str]] = {}
    for metric, mode in zip(t.compared, t.compared_modes):
        ends.setdefault(int(Direction(mode).idxbest(t.front[metric])), []).append(metric)
    scale_of = dict(zip(t.metrics, scales))
    values_of = t.front[t.compared].to_numpy(dtype=float)
    out = []
    for i, best_in in ends.items():
        row = t.front.loc[i]
        values = ", ".join(f"{m} {row[m]:.4g}" for m in t.compared)
        if int(row["trials_merged"]) > 1:
            values += f" (mean of {int(row['trials_merged'])} trials)"
        if t.baseline is not None and row["trial_id"] != t.baseline["trial_id"]:
            values += ", against the baseline " + ", ".join(
                f"{m} {_change(row[m], t.baseline[m], scale_of[m])}" for m in t.compared)
        elif t.baseline is not None:
            values += " (the baseline)"
        tied = [str(tid) for k, tid in enumerate(t.front["trial_id"])
                if k != i and bool((values_of[k] == values_of[i]).all())]
        also = ""
        if tied:
            also = f", tied with trial(s) {', '.join(tied[:3])}" + (f" and {len(tied) - 3} more" if len(tied) > 3 else "")
        out.append(f"trial {row['trial_id']}, best {_and(best_in)} ({_params(row, params)}{also}): {values}")
    return out


def _params(row: pd.Series, params: list[str]) -> str:
    shown = []
    for p in params:
        v = row.get(p)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        shown.append(f"{p}={v:.3g}" if isinstance(v, float) else f"{p}={v}")
    return ", ".join(shown)
