"""The report's answer paragraph: every claim names its evidence and rung.

Order of authority: designed runs (leave-one-out, confirmation: full budget,
several seeds) over modelled marginals (a surrogate over the declared space)
over observed means (local to where the searcher sampled, never a claim).
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from studies.direction import Direction
from studies.report.analysis import Analysis
from studies.report.confirmation import ConfirmationResult, LeaveOneOutResult
from studies.report.modelled import best_level
from studies.report.trials import STATUS_COMPLETE, RunTrials


def fmt(v: Any, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return f"{v:.{digits}g}" if isinstance(v, float) else str(v)


def fmt_p(v: float) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if v == 0:
        return "0"
    return "<0.001" if v < 0.001 else f"{v:.3f}"


def change_text(delta: float, ref: float, scale: str) -> str:
    """A difference in the metric's own units; a percent only for a positive
    ratio-scale metric (a percent of a log-scale or interval metric means nothing)."""
    text = f"{delta:+.3g}"
    if scale == "ratio" and ref > 0:
        pct = delta / ref * 100
        text += f" ({pct:+.0f}%)" if abs(pct) >= 10 else f" ({pct:+.1f}%)"
    elif scale == "log":
        text += " (in the metric's own log units)"
    return text


def best_trial(run: RunTrials, metric: str, mode: str) -> pd.Series | None:
    """The best trial at the full budget: the complete trial with the best
    last value (the value Optuna holds for it)."""
    df = run.trials
    if df.empty:
        return None
    pool = df[(df["status"] == STATUS_COMPLETE) & df[f"last_{metric}"].notna()]
    if pool.empty:
        return None
    col = pool[f"last_{metric}"]
    return pool.loc[Direction(mode).idxbest(col)]


def describe_params(row: pd.Series, params: list[str]) -> str:
    return ", ".join(f"{p}={fmt(row[p], 3)}" for p in params if p in row and row[p] is not None and row[p] == row[p])


def modelled_claims(an: Analysis, mode: str, metric: str, scale: str) -> list[str]:
    m = an.modelled
    out = []
    for t in m.tables:
        best = best_level(t, mode)
        ref = t.table[t.table["level"].str.endswith("(ref)")].iloc[0]
        where = "" if t.scope == "whole space" else f" ({t.scope})"
        name = best["level"].removesuffix(" (ref)")
        level = f"**{name}** ({fmt(best['marginal'])}, 95% CI [{fmt(best['lo'])}, {fmt(best['hi'])}])"
        if best["level"].endswith("(ref)"):
            marked = t.table[t.table["sig"] != ""]
            tail = (f"best level {level}, the reference" + (
                ", and every other level is significantly worse" if len(marked) == len(t.table) - 1
                else f"; {len(marked)} of {len(t.table) - 1} other levels are significantly worse" if len(marked)
                else "; no other level differs significantly from it"))
        else:
            diff = (f"vs the reference {t.reference} ({fmt(ref['marginal'])}): {change_text(best['delta'], ref['marginal'], scale)}, "
                    f"Holm-level CI [{fmt(best['delta_lo'], 3)}, {fmt(best['delta_hi'], 3)}], bootstrap p_holm = "
                    f"{fmt_p(best['p_holm'])}{f' (< 1/{an.modelled.n_boot})' if best['p_holm'] == 0 else ''}")
            tail = (f"best level {level}, {diff}: significant" if best["sig"] else
                    f"no level differs significantly from the reference {t.reference}; nominally best {level}, {diff}")
        out.append(f"**{t.factor}**{where}: {tail}")
    return out


def _disagreements(an: Analysis, loo: LeaveOneOutResult | None, mode: str) -> list[str]:
    """Factors whose leave-one-out says the best config's setting helps
    (significantly) while the modelled table does not rank it above the baseline."""
    from studies.report.ablation import _holding_bin, level_name

    if loo is None or loo.table is None or loo.table.empty:
        return []
    out = []
    for _, r in loo.table[loo.table["sig"] != ""].iterrows():
        helps = Direction(mode).improves(-r["delta"])  # delta is variant minus best
        t = next((t for t in an.modelled.tables if t.factor == r["factor"]), None)
        if not helps or t is None or r["factor"] not in loo.best_params:
            continue
        value = loo.best_params[r["factor"]]
        levels = list(t.table["level"].str.removesuffix(" (ref)"))
        level = level_name(value) if level_name(value) in levels else _holding_bin(value, levels)
        if level is None or level == t.reference:
            continue
        delta = t.table.loc[levels.index(level), "delta"]
        better = Direction(mode).improves(delta)
        if not better:
            out.append(f"{r['factor']}={fmt(value, 3)}")
    return out


def answer_parts(run: RunTrials, an: Analysis, *, metric: str, mode: str, scale: str,
                 confirmation: ConfirmationResult | None, loo: LeaveOneOutResult | None) -> list[str]:
    """The answer's claims, strongest evidence first, one per element."""
    better = Direction(mode).word
    parts = [f"({better} {metric} is better)"]
    if loo is not None and loo.table is not None and not loo.table.empty:
        rows = []
        for _, r in loo.table.iterrows():
            if math.isnan(r["delta"]):
                continue
            rows.append(f"{r['factor']} -> {r['set to'].split('=', 1)[-1]}: {r['delta']:+.3g} "
                        f"[{fmt(r['delta_lo'], 3)}, {fmt(r['delta_hi'], 3)}], best wins {r['best wins']}"
                        f"{', ' + r['sig'] if r['sig'] else ', not significant'}")
        parts.append(f"**Designed, leave-one-out** (the best config with one factor at its baseline, full budget, "
                     f"paired over {int(loo.table['seeds'].max())} seeds; change in {metric}, variant minus best): "
                     + "; ".join(rows) + ".")
    if confirmation is not None and confirmation.summary is not None and not confirmation.summary.empty:
        parts.append(f"**Designed, confirmation**: {confirmation.sentence}")
    disagree = _disagreements(an, loo, mode)
    if disagree:
        parts.append(f"**Where the evidence disagrees**: at the full budget the designed runs find that "
                     f"{'; '.join(disagree)} helps, while the modelled marginals at epoch {an.rung} do not show it "
                     "(an early rung cannot see what acts later in training): for these factors the designed runs "
                     "are the answer.")
    m = an.modelled
    if m.tables:
        parts.append(f"**Modelled** (surrogate marginals over the declared space, fitted on the {m.n_configs} "
                     f"distinct configs at epoch {m.rung}; a level's value is the metric averaged over every other "
                     f"factor): " + "; ".join(modelled_claims(an, mode, metric, scale)) + ".")
    imp = an.importance.dropna(subset=["modelled_variance"]) if not an.importance.empty else an.importance
    if not imp.empty:
        first = imp.iloc[0]
        text = (f"**Importance** (modelled main effects at epoch {an.rung}, over the declared space): "
                f"**{first['parameter']}** has the largest ({first['modelled_share'] * 100:.0f}% of the main-effect "
                "variance)")
        fan = an.importance.dropna(subset=["fanova_variance"]).sort_values("fanova_variance", ascending=False)
        if not fan.empty:
            text += ("; fANOVA on the trials agrees" if fan.iloc[0]["parameter"] == first["parameter"]
                     else f"; fANOVA on the trials puts {fan.iloc[0]['parameter']} first")
        ped = an.importance.dropna(subset=["ped_anova"]).sort_values("ped_anova", ascending=False)
        if not ped.empty and ped.iloc[0]["parameter"] != first["parameter"]:
            text += f"; PED-ANOVA (what separates the top configs from the rest) puts {ped.iloc[0]['parameter']} first"
        parts.append(text + ".")
    bt = best_trial(run, metric, mode)
    if bt is not None:
        parts.append(f"**Best search trial** at the full budget ({int(bt['epochs'])} epochs, one seed; the value Optuna "
                     f"holds): {metric} {fmt(bt[f'last_{metric}'])}, trial {bt['trial_id']} with "
                     f"{describe_params(bt, run.params)}.")
    else:
        parts.append("No search trial ran the full budget, so there is no best trial at the full budget.")
    if (loo is None or loo.table is None) and (confirmation is None or confirmation.summary is None):
        parts.append("No designed runs (confirmation, leave-one-out) were made: every figure here comes from "
                     "single-seed search trials.")
    parts.append("Observed per-level means (tables below) are over the trials the searcher chose and are local "
                 "to its favourite region; they are not used for any claim above.")
    return parts
