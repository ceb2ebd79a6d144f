"""The report's "Methods" paragraph, for a paper: how the configs were chosen
and stopped, how the designed runs were seeded and tested, what the modelled
marginals are, what it cost, and which code and data made it. Every number
comes from the run's own records (spec copy, run.json, trial folders)."""

from __future__ import annotations

import importlib.metadata
import math
from typing import Any

import pandas as pd

from studies.report.confirmation import ConfirmationResult, LeaveOneOutResult
from studies.runs.run_folder import RunInfo
from studies.runs.trials import STATUS_COMPLETE, RunTrials
from studies.spec.rungs import Rungs

SAMPLER_NAMES = {"tpe": "TPE (Bergstra et al. 2011)", "random": "random search", "qmc": "scrambled Sobol sequences",
                 "gp": "Gaussian-process Bayesian optimisation", "cmaes": "CMA-ES", "nsga2": "NSGA-II"}


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def _pinned(spec: Any) -> str:
    fixed = dict(getattr(spec, "fixed", {}) or {})
    if not fixed:
        return ""
    return " (" + ", ".join(f"{k} fixed at {v:.4g}" if isinstance(v, float) else f"{k} fixed at {v}"
                            for k, v in fixed.items()) + ", with --fix)"


def _search(spec: Any, run: RunTrials) -> str:
    s, b = spec.search, spec.budget
    sampler = SAMPLER_NAMES.get(s.sampler, s.sampler)
    short = sampler.split(" (")[0]
    if s.startup == "design":
        design = f"a balanced screening design of {s.design_trials} configs" if s.design_trials else "a balanced screening design"
        order = f"the reference config first, then {design}, then {short}"
    elif s.n_startup_trials:
        order = f"the reference config first, then {s.n_startup_trials} random configs, then {short}"
    else:
        order = "the reference config first"
    searched = len(spec.params)
    ran = len(run.trials)
    asked = f" ({b.num_samples} asked for)" if ran != b.num_samples else ""
    text = (f"Configs were proposed by {sampler} in Optuna {_version('optuna')} through Ray Tune {_version('ray')} "
            f"(seed {s.seed}; {order}) over {searched} searched parameter{'s' * (searched != 1)}{_pinned(spec)}: "
            f"{ran} trials"
            f"{asked}. The reference config sets each parameter to the spec's baseline, else its first choice, "
            "else the centre of its range.")
    rungs = Rungs(b.grace_period, b.reduction_factor, b.max_epochs)
    full = int((run.trials["status"] == STATUS_COMPLETE).sum()) if not run.trials.empty else 0
    stops = ", ".join(str(e) for e in rungs.stopping_epochs)
    text += (f" Asynchronous successive halving (ASHA; Li et al. 2020) stopped trials early: grace period "
             f"{b.grace_period} epoch{'s' * (b.grace_period != 1)}, reduction factor {b.reduction_factor:g}, at most "
             f"{b.max_epochs} epochs" + (f", decisions at epochs {stops}" if stops else "")
             + f"; {full} of {len(run.trials)} trials ran the full budget.")
    return text


def _designed(spec: Any, confirmation: ConfirmationResult | None, loo: LeaveOneOutResult | None) -> str:
    parts = []
    if confirmation is not None and confirmation.summary is not None and not confirmation.runs.empty:
        seeds = confirmation.runs.groupby("config")["seed"].nunique()
        parts.append(f"the {len(seeds) - 1} best configs of the search and the baseline were re-run at the full "
                     f"budget over {int(seeds.max())} seeds (confirmation)")
    if loo is not None and loo.table is not None and not loo.table.empty:
        parts.append(f"the best config was re-run with each of {len(loo.table)} factors at its baseline in turn "
                     f"(leave-one-out) over {spec.ablation.leave_one_out.seeds} seeds")
    if not parts:
        return ""
    return ("Designed runs: " + "; ".join(parts) + ". Each comparison is paired over seeds (same seeds, same data "
            "split): the mean paired difference with a 95% t-interval and a paired t-test, Holm-corrected within "
            "each table (Holm 1979).")


def _modelled(an: Any) -> str:
    m = getattr(an, "modelled", None)
    if m is None or not getattr(m, "tables", None):
        return ""
    r2 = "not computed" if math.isnan(m.fit_r2) else f"{m.fit_r2:.2f}"
    return (f"Modelled marginals: a surrogate (main effects plus a random forest on their residuals, scikit-learn "
            f"{_version('scikit-learn')}) was fitted to the {m.n_configs} distinct configs that reached epoch "
            f"{m.rung} (out-of-bag R² {r2}) and averaged over the declared space with each factor at each level, as "
            f"in fANOVA (Hutter et al. 2014); intervals and p-values from {m.n_boot} bootstrap refits, "
            "Holm-corrected within each factor; a difference is marked only at p_holm < 0.01 and when the gates "
            "(fit quality, coverage of each level, agreement with the trials' own stratified comparison) hold.")


def _compute(budget: pd.DataFrame | None, info: RunInfo) -> str:
    rows = dict(zip(budget.iloc[:, 0], budget.iloc[:, 1])) if budget is not None and not budget.empty else {}
    cpu = rows.get("CPU-hours, all stages", rows.get("CPU-hours"))
    gpu = rows.get("GPU-hours")
    cost = ", ".join(x for x in (f"{cpu} CPU-hours" if cpu else "", f"{gpu} GPU-hours" if gpu else "") if x)
    commit = info.platform.get("commit") or info.git_commit
    dirty = info.platform.get("dirty")
    code = (f"commit {commit[:12]}" + (" with uncommitted changes" if dirty else "") if commit
            else "an unknown commit (no git checkout)")
    data = (f"data file {info.invocation.data} (sha256 {info.data_sha256[:16]}...)" if info.invocation.data and info.data_sha256
            else f"data file {info.invocation.data}" if info.invocation.data else "the family's bundled synthetic data")
    version = info.platform.get("version")
    return (f"Compute: {cost or 'not recorded'}" + (f" on {info.host}" if info.host else "")
            + f". Code: raystudies {version or '(version not recorded)'}, {code}; {data}.")


def methods_paragraph(spec: Any, info: RunInfo, run: RunTrials, *, an: Any = None, budget: pd.DataFrame | None = None,
                      confirmation: ConfirmationResult | None = None, loo: LeaveOneOutResult | None = None) -> str:
    """One paragraph a paper's methods section can start from."""
    parts = [_search(spec, run), _designed(spec, confirmation, loo), _modelled(an), _compute(budget, info)]
    return " ".join(p for p in parts if p)
