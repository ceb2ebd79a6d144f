"""The report's answer: claims (studies.report.claims), each the very row of a
table it cites, then rendered one line each.

Order of authority: designed runs (leave-one-out, confirmation: full budget,
several seeds) over modelled marginals (a surrogate over the declared space,
only where its gates hold) over observed means (local to where the searcher
sampled, never a claim). Per factor of the study's question, one line says
what holds: which levels differ and in which direction, or that the evidence
cannot say, why, and which run would.
"""

from __future__ import annotations

import math
import re
from typing import Any

import pandas as pd

from studies.report.analysis import Analysis
from studies.report.claims import Claim
from studies.report.confirmation import ConfirmationResult, LeaveOneOutResult
from studies.report.modelled import R2_MIN, ModelledTable
from studies.runs.designed import BASELINE_LABEL
from studies.runs.trials import STATUS_COMPLETE, RunTrials
from studies.spec.direction import Direction
from studies.spec.study import Secondary

FIRST_SHARE = 0.95   # a ranking is claimed when its first factor is first in this share of the bootstrap refits


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
    if df.empty or f"last_{metric}" not in df.columns:
        return None
    pool = df[(df["status"] == STATUS_COMPLETE) & df[f"last_{metric}"].notna()]
    if pool.empty:
        return None
    col = pool[f"last_{metric}"]
    return pool.loc[Direction(mode).idxbest(col)]


def describe_params(row: pd.Series, params: list[str]) -> str:
    return ", ".join(f"{p}={fmt(row[p], 3)}" for p in params if p in row and row[p] is not None and row[p] == row[p])


def _direction(delta: float, mode: str) -> str:
    return "better" if Direction(mode).improves(delta) else "worse"


# ------------------------------------------------------------------ designed evidence

def leave_one_out_claims(loo: LeaveOneOutResult | None, factor: str, *, metric: str, mode: str, scale: str,
                         max_epochs: int | None) -> list[Claim]:
    """The leave-one-out rows of ``factor``: the best config's setting against
    the variant's (``delta`` is variant minus best, so the best's setting is
    better where the variant is worse)."""
    if loo is None or loo.table is None or loo.table.empty:
        return []
    out = []
    for _, r in loo.table[loo.table["factor"] == factor].iterrows():
        if math.isnan(r["delta"]):
            continue
        best_value, variant_value = _distinct(loo.best_params.get(factor), str(r["best has"]).split("=", 1)[-1],
                                              str(r["set to"]).split("=", 1)[-1])
        change = -r["delta"]                       # best minus variant
        where = f"{int(r['seeds'])} seeds, full budget, at the best config"
        numbers = (f"{change_text(change, r['variant mean'], scale)}, 95% t-interval before Holm [{fmt(-r['delta_hi'], 3)}, "
                   f"{fmt(-r['delta_lo'], 3)}], best wins {r['best wins']}, p_holm {fmt_p(r['p_holm'])}")
        common: dict[str, Any] = dict(evidence="designed: leave-one-out", factor=factor, rung=max_epochs, level=best_value,
                      reference=variant_value, estimate=change, lo=-r["delta_hi"], hi=-r["delta_lo"],
                      table="tables/leave_one_out.md",
                      extra={"best": dict(loo.best_params), "variant": {**loo.best_params, factor: _value_of(variant_value)}
                             if factor in loo.best_params else dict(loo.best_params)})
        if r["sig"]:
            word = _direction(change, mode)
            out.append(Claim("difference", direction=word, mark=r["sig"], **common,
                             text=f"{best_value} is {word} than {variant_value} ({where}: {numbers} {r['sig']})"))
        else:
            out.append(Claim("no_difference", **common,
                             text=f"{best_value} vs {variant_value}: no significant difference ({where}: {numbers})"))
        # best minus variant, as the claim above reads it
        out += _secondary_claims(loo.secondary, r, r, common, scale=scale, sign=-1.0, subject=f"{best_value} is ")
    return out


def _secondary_claims(secondary: list[Secondary], r: pd.Series, base: pd.Series, common: dict[str, Any], *,
                      scale: str, sign: float = 1.0, subject: str = "") -> list[Claim]:
    """One clause per secondary metric (the spec's ``report:``) of a designed
    table's row ``r``: its paired difference in that metric times ``sign`` (the
    way the claim reads it), against ``base``'s mean, with the t-interval and
    Holm within that metric's column; marked only when significant there. A
    percent only where the study metric is on a ratio scale."""
    out = []
    for sec in secondary:
        m = sec.metric
        delta = r.get(f"{m} delta", math.nan)
        if not isinstance(delta, float) or math.isnan(delta):
            continue
        change = sign * delta
        lo, hi = sorted((sign * float(r[f"{m} delta_lo"]), sign * float(r[f"{m} delta_hi"])))
        numbers = (f"{change_text(change, base[f'{m} mean'], 'ratio' if scale == 'ratio' else 'interval')}, 95% "
                   f"t-interval before Holm [{fmt(lo, 3)}, {fmt(hi, 3)}], p_holm {fmt_p(r[f'{m} p_holm'])}")
        mine: dict[str, Any] = {**common, "estimate": change, "lo": lo, "hi": hi, "extra": {**common["extra"], "metric": m}}
        if r[f"{m} sig"]:
            word = _direction(change, sec.mode)
            out.append(Claim("difference", direction=word, mark=r[f"{m} sig"], **mine,
                             text=f"on {m}, {subject}{word}: {numbers} {r[f'{m} sig']}"))
        else:
            out.append(Claim("no_difference", **mine, text=f"on {m}: {numbers}, no significant difference"))
    return out


def _distinct(best: Any, best_text: str, variant_text: str) -> tuple[str, str]:
    """The two settings as the answer names them: with more digits where the
    table's three would print them alike (0.1 and 0.1000003)."""
    if best_text != variant_text or not isinstance(best, (int, float)):
        return best_text, variant_text
    variant = _value_of(variant_text)
    for digits in range(4, 13):
        a = f"{best:.{digits}g}"
        b = f"{variant:.{digits}g}" if isinstance(variant, float) else str(variant)
        if a != b:
            return a, b
    return best_text, variant_text


def _value_of(text: str) -> Any:
    try:
        return float(text)
    except ValueError:
        return text


def confirmation_claims(confirmation: ConfirmationResult | None, *, metric: str, mode: str, scale: str,
                        max_epochs: int | None) -> list[Claim]:
    if confirmation is None or confirmation.summary is None or confirmation.summary.empty:
        return []
    s = confirmation.summary
    base = s[s["config"] == BASELINE_LABEL]
    out = []
    for _, r in s[s["config"] != BASELINE_LABEL].dropna(subset=["mean"]).iterrows():
        if base.empty or math.isnan(r["delta_vs_baseline"]):
            continue
        b = base.iloc[0]
        numbers = (f"mean {fmt(r['mean'])} ± {fmt(r['std'], 2)} (sd over {int(r['seeds'])} seeds) against the "
                   f"baseline's {fmt(b['mean'])} ± {fmt(b['std'], 2)}: {change_text(r['delta_vs_baseline'], b['mean'], scale)}, "
                   f"better in {r['wins']} seeds, paired t-test p_holm {fmt_p(r['p_holm'])}")
        common: dict[str, Any] = dict(evidence="designed: confirmation", factor=None, rung=max_epochs, level=str(r["config"]),
                      reference=BASELINE_LABEL, estimate=float(r["delta_vs_baseline"]), table="tables/confirmation.md",
                      extra={"params": r["params"]})
        if r["sig"]:
            word = _direction(r["delta_vs_baseline"], mode)
            out.append(Claim("difference", direction=word, mark=r["sig"], **common,
                             text=f"{r['config']} ({r['params']}) is {word} than the baseline at the full budget: "
                                  f"{numbers} {r['sig']}"))
        else:
            out.append(Claim("no_difference", **common,
                             text=f"{r['config']} ({r['params']}) does not differ significantly from the baseline at "
                                  f"the full budget: {numbers}"))
        if len(out) == 1:   # the best config: its secondary metrics, right after its own claim
            out += _secondary_claims(confirmation.secondary, r, b, common, scale=scale)
    return out


# ------------------------------------------------------------------ screening (designed, first rung)

def screening_claims(screening: Any, factor: str, *, mode: str, scale: str) -> list[Claim]:
    """The screening table of ``factor`` (studies.report.screening): each marked
    level in its direction, else that no level differs; designed evidence at
    the first rung, global over the declared space by construction."""
    if screening is None:
        return []
    t = next((t for t in screening.tables if t.factor == factor), None)
    if t is None:
        return []
    table = f"tables/screening_{factor}.md"
    base: dict[str, Any] = dict(evidence="designed: screening", factor=factor, rung=screening.rung,
                                reference=t.reference, table=table)
    rows = t.table[~t.table["level"].str.endswith("(ref)")]
    ref_mean = t.table.loc[t.table["level"].str.endswith("(ref)"), "mean"]
    out = []
    for _, r in rows[rows["sig"] != ""].iterrows():
        word = _direction(r["delta"], mode)
        change = change_text(r["delta"], float(ref_mean.iloc[0]) if len(ref_mean) else math.nan, scale)
        out.append(Claim("difference", **base, level=r["level"], direction=word, estimate=r["delta"],
                         lo=r["delta_lo"], hi=r["delta_hi"], mark=r["sig"],
                         text=f"{r['level']} is {word} than {t.reference} ({change}, Holm-level CI "
                              f"[{fmt(r['delta_lo'], 3)}, {fmt(r['delta_hi'], 3)}] {r['sig']})"))
    if not out and len(rows):
        half = float((rows["delta_hi"] - rows["delta_lo"]).max() / 2)
        out.append(Claim("no_difference", **base,
                         text=f"no level differs significantly from {t.reference} (Holm, 5%; differences up to about "
                              f"±{fmt(half, 2)} are within the intervals)"))
    return out


def screening_importance_claims(screening: Any) -> list[Claim]:
    if screening is None or screening.importance is None or screening.importance.empty:
        return []
    imp = screening.importance
    first = imp.iloc[0]
    base: dict[str, Any] = dict(evidence="designed: screening", rung=screening.rung, table="tables/screening_importance.md")
    if first["first_share"] >= FIRST_SHARE:
        return [Claim("ranking", **base, factor=str(first["factor"]), estimate=float(first["first_share"]),
                      text=f"designed screening (epoch {screening.rung}, {screening.n_at_rung} design trials): "
                           f"**{first['factor']}** has the largest main effect (first in "
                           f"{first['first_share'] * 100:.0f}% of {screening.n_boot} bootstrap resamples)")]
    leaders = ", ".join(f"{r['factor']} {r['first_share'] * 100:.0f}%"
                        for _, r in imp.sort_values("first_share", ascending=False).head(3).iterrows() if r["first_share"] > 0)
    return [Claim("no_ranking", **base, estimate=float(first["first_share"]),
                  text=f"designed screening (epoch {screening.rung}): no clear ranking (first in the resamples: {leaders})")]


# ------------------------------------------------------------------ modelled evidence

def modelled_factor_claims(an: Analysis, t: ModelledTable, *, mode: str, scale: str) -> list[Claim]:
    """What the modelled table of one factor supports: each marked level, in its
    direction; conditional differences where the effect changes with another
    factor or the level was not sampled across it; else that no level differs
    (at the table's Holm level) or why the table cannot say."""
    m = an.modelled
    table = f"tables/modelled_{t.factor}.md"
    where = "" if t.scope == "whole space" else f" ({t.scope})"
    base: dict[str, Any] = dict(evidence="modelled", factor=t.factor, rung=m.rung, reference=t.reference, table=table)
    if m.gate:
        return [Claim("declined", **base, text=f"modelled: no claim, {m.gate}")]
    rows = t.table[~t.table["level"].str.endswith("(ref)")]
    ref_row = t.table[t.table["level"].str.endswith("(ref)")].iloc[0]
    out: list[Claim] = []
    for _, r in rows.iterrows():
        if not r["sig"]:
            continue
        word = _direction(r["delta"], mode)
        out.append(Claim("difference", **base, level=r["level"], direction=word, estimate=r["delta"],
                         lo=r["delta_lo"], hi=r["delta_hi"], mark=r["sig"],
                         text=f"{r['level']} is {word} than {t.reference}{where} "
                              f"({change_text(r['delta'], ref_row['marginal'], scale)}, Holm-level CI "
                              f"[{fmt(r['delta_lo'], 3)}, {fmt(r['delta_hi'], 3)}] {r['sig']})"))
    conditional = _conditional_claims(an, t, mode=mode, scale=scale)
    out += conditional
    withheld = rows[(rows["withheld"] != "") & (rows["p_holm"] < 0.05)]
    for _, r in withheld.iterrows():
        if any(c.level == r["level"] for c in conditional):
            continue
        out.append(Claim("declined", **base, level=r["level"],
                         text=f"{r['level']} vs {t.reference}: no claim, {r['withheld']}"))
    if not out:
        half = float((rows["delta_hi"] - rows["delta_lo"]).max() / 2) if len(rows) else math.nan
        out.append(Claim("no_difference", **base,
                         text=f"no level differs significantly from {t.reference}{where} (Holm, 5%), which does "
                              f"not show it has no effect: differences up to ±{fmt(half, 2)} are within the intervals"))
    return out


def _conditional_claims(an: Analysis, t: ModelledTable, *, mode: str, scale: str) -> list[Claim]:
    """Marked differences within a level of another factor, for levels whose
    global comparison is withheld (an interaction, or not sampled across the
    other factor): the effect said conditionally, where it was measured."""
    table = f"tables/interactions_{t.factor}.md"
    out = []
    for inter in (i for i in an.modelled.interactions if i.factor == t.factor):
        # the table keeps a mark only where the conditional difference may be claimed (modelled._keep_conditional_marks)
        for _, r in inter.table[inter.table["sig"] != ""].iterrows():
            word = _direction(r["delta"], mode)
            out.append(Claim("difference", evidence="modelled", factor=t.factor, rung=an.modelled.rung,
                             level=r["level"], reference=t.reference, direction=word, estimate=r["delta"],
                             lo=r["delta_lo"], hi=r["delta_hi"], mark=r["sig"], condition={inter.other: r["given"]},
                             table=table,
                             text=f"where {inter.other} is in {r['given']}: {r['level']} is {word} than {t.reference} "
                                  f"({r['delta']:+.3g}, Holm-level CI [{fmt(r['delta_lo'], 3)}, "
                                  f"{fmt(r['delta_hi'], 3)}] {r['sig']})"))
    return out


def importance_claims(an: Analysis) -> list[Claim]:
    m = an.modelled
    imp = m.importance
    base: dict[str, Any] = dict(evidence="modelled", rung=m.rung, table="tables/importance.md")
    if m.gate or imp.empty:
        return [Claim("declined", **base, text=f"no importance ranking: {m.gate or 'no modelled main effects'}")]
    first = imp.iloc[0]
    total = float(imp["variance"].sum())
    share = f"{first['variance'] / total * 100:.0f}% of the main-effect variance" if total > 0 else ""
    runner = imp.sort_values("first", ascending=False)
    if first["first"] >= FIRST_SHARE:
        return [Claim("ranking", **base, factor=str(first["factor"]), estimate=float(first["first"]),
                      text=f"**{first['factor']}** has the largest main effect at epoch {m.rung} ({share}; first in "
                           f"{first['first'] * 100:.0f}% of {m.n_boot} bootstrap refits)")]
    leaders = ", ".join(f"{r['factor']} {r['first'] * 100:.0f}%" for _, r in runner.head(3).iterrows() if r["first"] > 0)
    return [Claim("no_ranking", **base, estimate=float(first["first"]),
                  text=f"no clear ranking at epoch {m.rung}: first in the bootstrap refits: {leaders}")]


# ------------------------------------------------------------------ the answer

def answer_claims(run: RunTrials, an: Analysis, *, metric: str, mode: str, scale: str,
                  confirmation: ConfirmationResult | None, loo: LeaveOneOutResult | None,
                  question: list[str] | None = None, smoke: bool = False,
                  max_epochs: int | None = None, screening: Any = None, fixed: dict[str, Any] | None = None) -> list[Claim]:
    """Every claim of the answer, in the order it is read. ``question``: the
    factors the study asks about (default: every modelled factor); ``fixed``:
    parameters pinned for this run with --fix (not searched, so not answered)."""
    claims: list[Claim] = []
    if smoke:
        claims.append(Claim("note", "none", extra={"banner": True}, text=(
            f"**Smoke run**: a tiny budget to check that the study runs ({len(run.trials)} trials), not to answer its "
            "question: nothing below is a finding, and no difference is marked significant.")))
    if fixed:
        pinned = ", ".join(f"{k} = {fmt(v, 4) if isinstance(v, float) else v}" for k, v in fixed.items())
        claims.append(Claim("note", "none", extra={"banner": True}, text=(
            f"**Pinned for this run** (`--fix`): {pinned}; not searched, so not answered.")))
    factors = question or [t.factor for t in an.modelled.tables]
    tables = {t.factor: t for t in an.modelled.tables}
    for factor in factors:
        claims += _factor_claims(factor, tables.get(factor), an, loo, metric=metric, mode=mode, scale=scale,
                                 max_epochs=max_epochs, smoke=smoke, screening=screening)
    if not smoke:
        claims += confirmation_claims(confirmation, metric=metric, mode=mode, scale=scale, max_epochs=max_epochs)
        claims += screening_importance_claims(screening)
        claims += importance_claims(an)
    bt = best_trial(run, metric, mode)
    if bt is not None:
        claims.append(Claim("best", "observed", rung=int(bt["epochs"]), text=(
            f"**Best search trial** at the full budget ({int(bt['epochs'])} epochs, one seed; the value Optuna holds): "
            f"{metric} {fmt(bt[f'last_{metric}'])}, trial {bt['trial_id']} with {describe_params(bt, run.params)}.")))
    else:
        claims.append(Claim("note", "none", text="No search trial ran the full budget, so there is no best trial at "
                                                 "the full budget."))
    return claims


def _factor_claims(factor: str, t: ModelledTable | None, an: Analysis, loo: LeaveOneOutResult | None, *,
                   metric: str, mode: str, scale: str, max_epochs: int | None, smoke: bool,
                   screening: Any = None) -> list[Claim]:
    if smoke:
        return [Claim("declined", "none", factor=factor, text="not answered: a smoke run")]
    designed = leave_one_out_claims(loo, factor, metric=metric, mode=mode, scale=scale, max_epochs=max_epochs)
    designed += screening_claims(screening, factor, mode=mode, scale=scale)
    modelled = modelled_factor_claims(an, t, mode=mode, scale=scale) if t is not None else []
    out = designed + modelled
    if factor in an.growth and not any(c.kind == "difference" for c in designed):
        epoch, trials, ratio = an.growth[factor]
        times = "∞" if math.isinf(ratio) else f"{ratio:.1f}"
        out.append(Claim("note", "observed", factor=factor, rung=epoch, table=f"tables/ablation_{factor}.md", text=(
            f"its level means over the {trials} trials that reached epoch {epoch} spread {times}× as wide there as at "
            f"epoch {an.modelled.rung} (observed, ASHA's survivors): its effect grows after epoch {an.modelled.rung}, "
            "which the modelled rung cannot judge")))
    answered = any(c.kind == "difference" for c in out)
    if not answered:
        out.append(Claim("declined", "none", factor=factor, text=_what_would_answer(factor, t, an, loo),
                         extra={"what_would_answer": True}))
    return out


def _what_would_answer(factor: str, t: ModelledTable | None, an: Analysis, loo: LeaveOneOutResult | None) -> str:
    """Why nothing is claimed about ``factor``, and which run would answer it."""
    runs = []
    in_loo = loo is not None and loo.table is not None and (loo.table["factor"] == factor).any()
    if loo is not None and factor in loo.skipped:
        runs.append(f"leave-one-out has no row for it ({loo.skipped[factor]})")
    elif not in_loo:
        runs.append("a designed leave-one-out run from the best config (`ablation.leave_one_out`, with a baseline "
                    f"for {factor} in `ablation.baseline`)")
    else:
        runs.append("more seeds for its leave-one-out row")
    if an.modelled.gate or t is None or (t.table["withheld"] != "").any():
        runs.append("more trials spread over the declared space (`search.startup: design`, or `search.sampler: random`)")
    late = f"the modelled evidence is at epoch {an.modelled.rung}, where an effect that acts later cannot show"
    return f"Not answered by the evidence so far: {late}. What would answer it: " + "; or ".join(runs)


def answer_parts(claims: list[Claim], *, metric: str, mode: str, question: list[str] | None = None) -> list[str]:
    """The claims as the answer's lines: the banner, one line per factor of the
    question (its designed, then modelled claims, or why none), the designed
    confirmation, the importance, the best trial, what the observed tables are."""
    parts = [f"({Direction(mode).word} {metric} is better)"]
    parts += [c.text for c in claims if c.kind == "note" and c.extra.get("banner")]
    factors = list(dict.fromkeys((question or []) + [c.factor for c in claims if c.factor]))
    # The same reason and the same runs for several factors: said once, on its own line after them.
    declined: dict[str, list[str]] = {}
    for c in claims:
        if c.kind == "declined" and c.extra.get("what_would_answer") and c.factor:
            declined.setdefault(_templated(c.text, c.factor), []).append(c.factor)
    shared = {key: names for key, names in declined.items() if len(names) > 1}
    for factor in factors:
        mine = [c for c in claims if c.factor == factor and c.kind != "ranking"]
        if not mine:
            continue
        mine = [c for c in mine if not (c.kind == "declined" and c.extra.get("what_would_answer")
                                        and _templated(c.text, factor) in shared)]
        groups = [] if mine else ["why, and what would answer it: the **Not answered yet** line below"]
        for evidence, label in (("designed: leave-one-out", "designed, leave-one-out"),
                                ("designed: screening", "designed, screening"), ("modelled", "modelled"),
                                ("observed", "caveat"), ("none", "")):
            texts = [c.text for c in mine if c.evidence == evidence]
            if texts:
                rung = next((c.rung for c in mine if c.evidence == evidence), None)
                head = f"{label} (epoch {rung})" if label in ("modelled", "designed, screening") else label
                groups.append(f"{head}: " + "; ".join(texts) if head else " ".join(texts))
        status = "answered" if any(c.kind == "difference" and not c.extra.get("metric") for c in mine) else "not answered"
        parts.append(f"**{factor}** ({status}) — " + ". ".join(groups) + ".")
    for key, names in shared.items():
        listed = ", ".join(f"**{n}**" for n in names)
        why = key.replace("{factor}", "each of them").replace("What would answer it", "What would answer them")
        why = why.removeprefix("Not answered by the evidence so far: ")
        parts.append(f"**Not answered yet** ({listed}): {why[:1].upper()}{why[1:]}.")
    confirm = [c.text for c in claims if c.evidence == "designed: confirmation"]
    if confirm:
        parts.append("**Designed, confirmation**: " + "; ".join(confirm) + ".")
    rank = [c for c in claims if c.kind in ("ranking", "no_ranking") or (c.kind == "declined" and c.factor is None
                                                                          and c.table == "tables/importance.md")]
    if rank:
        parts.append("**Importance** (over the declared space): " + "; ".join(
            c.text if c.evidence != "modelled" else f"modelled: {c.text}" for c in rank) + ".")
    parts += [c.text for c in claims if c.kind == "best" or (c.kind == "note" and c.factor is None
                                                             and not c.extra.get("banner"))]
    if any(c.evidence == "designed: leave-one-out" for c in claims) and any(c.evidence == "modelled" for c in claims):
        parts.append("Leave-one-out measures a factor's effect at the best config (every other factor at its best "
                     "value, full budget); the modelled tables measure the marginal averaged over the declared space "
                     "at an early rung: the two answer different questions and can both hold.")
    parts.append("Observed per-level means (tables below) are over the trials the searcher chose and are local "
                 "to its favourite region; they are not used for any claim above.")
    return parts


EVIDENCE_ORDER = ("designed: leave-one-out", "designed: screening", "modelled")


def short_answer(claims: list[Claim], *, metric: str, mode: str, question: list[str] | None = None) -> list[str]:
    """One line per factor of the question, from its strongest evidence only
    (designed before modelled), the confirmation in one line, and nothing the
    claims below do not say: a reader's first minute. Where other evidence about
    the factor also has claims, the line says so, never which way it points."""
    lines = [f"**Short answer** ({Direction(mode).word} {metric} is better; every claim, its evidence and what "
             "would answer the rest: below)"]
    if any(c.kind == "note" and c.extra.get("banner") and "Smoke run" in c.text for c in claims):
        lines.append("- A smoke run: nothing here is a finding.")
    factors = list(dict.fromkeys((question or []) + [c.factor for c in claims if c.factor and c.kind != "ranking"]))
    for factor in factors:
        # the study metric's claims (a secondary metric's are in the full answer)
        mine = [c for c in claims if c.factor == factor and c.kind == "difference" and not c.condition
                and not c.extra.get("metric")]
        kind = next((e for e in EVIDENCE_ORDER if any(c.evidence == e for c in mine)), None)
        if kind is None:
            conditional = any(c.factor == factor and c.kind == "difference" and c.condition for c in claims)
            lines.append(f"- **{factor}**: " + ("only within levels of another factor (below)." if conditional
                                                 else "not answered (below: why, and what would answer it)."))
            continue
        said = [f"{c.level} is {c.direction} than {c.reference} ({c.estimate:+.3g} {c.mark})".replace(" )", ")")
                for c in mine if c.evidence == kind]
        others = sorted({c.evidence.removeprefix("designed: ") for c in claims if c.factor == factor
                         and c.kind == "difference" and (c.evidence != kind or c.condition)})
        tail = f"; {' and '.join(others)} evidence also has claims (below)" if others else ""
        lines.append(f"- **{factor}** ({kind.replace(': ', ', ')}{_rung_of(mine, kind)}): " + "; ".join(said) + tail + ".")
    confirmed = [c for c in claims if c.evidence == "designed: confirmation" and c.kind == "difference"]
    if confirmed:
        lines.append("- **Confirmed at the full budget over seeds** (designed): " + "; ".join(
            f"{c.level} is {c.direction} than {c.reference}" + (f" on {c.extra['metric']}" if c.extra.get("metric") else "")
            + f" ({c.estimate:+.3g} {c.mark})".replace(" )", ")") for c in confirmed) + ".")
    return lines


def _rung_of(mine: list[Claim], kind: str) -> str:
    rung = next((c.rung for c in mine if c.evidence == kind and c.rung), None)
    return f", epoch {rung}" if rung and kind != "designed: leave-one-out" else ""


def _templated(text: str, factor: str) -> str:
    return re.sub(rf"(?<![\w]){re.escape(factor)}(?![\w])", "{factor}", text)


def modelled_claims(an: Analysis, mode: str, metric: str, scale: str) -> list[str]:
    """One line per modelled table (the trade-off report's per-objective answer)."""
    out = []
    for t in an.modelled.tables:
        texts = [c.text for c in modelled_factor_claims(an, t, mode=mode, scale=scale)]
        out.append(f"**{t.factor}**: " + "; ".join(texts))
    if an.modelled.gate:
        out = [f"no claim, {an.modelled.gate}"]
    return out


__all__ = ["R2_MIN", "answer_claims", "answer_parts", "short_answer", "best_trial", "change_text", "fmt", "fmt_p", "modelled_claims"]
