"""Every trial of a run folder as one DataFrame row, and every epoch as one
row of a history DataFrame, from what Ray Tune and Optuna wrote."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from studies.errors import UserError
from studies.runs.run_folder import ORPHANED_ATTR, SET_ASIDE_ATTR, TUNE_TRIAL_ID_ATTR, RunFolder
from studies.spec.direction import Direction
from studies.spec.pareto import resolve_ties

# How a trial ended, in words a reader of the table understands.
STATUS_COMPLETE = "complete"
STATUS_PRUNED = "stopped by ASHA"
STATUS_FAILED = "failed"
STATUS_RUNNING = "running"
STATUS_INTERRUPTED = "interrupted"
STATUS_ORPHANED = "lost (driver killed)"
# What Tune adds to every result: left out when naming what a trial reported.
TUNE_KEYS = frozenset({"timestamp", "checkpoint_dir_name", "should_checkpoint", "done", "training_iteration", "trial_id",
                       "date", "time_this_iter_s", "time_total_s", "pid", "hostname", "node_ip", "config",
                       "time_since_restore", "iterations_since_restore", "experiment_tag"})


@dataclass
class RunTrials:
    trials: pd.DataFrame    # one row per trial
    history: pd.DataFrame   # one row per (trial, epoch)
    params: list[str]       # search-space parameter names (columns of `trials`)
    unreadable: list[str] = dataclasses.field(default_factory=list)   # what could not be read, one line each


RESULT_FILE = "result.json"
PARAMS_FILE = "params.json"
SNAPSHOT_GLOB = "experiment_state-*.json"   # Tune's experiment snapshots


def read_results(trial_dir: Path) -> list[dict[str, Any]]:
    """Tune's result.json of one trial folder: one dict per reported epoch, in
    order; the only reader of that file."""
    path = trial_dir / RESULT_FILE
    rows: list[dict[str, Any]] = []
    if not path.is_file():
        return rows
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line being written right now
    return rows


STALLED_FILE = "stalled.txt"   # written by studies.tune.stall_guard when it ends a trial that stopped reporting


def _error_reason(trial_dir: Path) -> str:
    stalled = trial_dir / STALLED_FILE
    if stalled.is_file():
        return stalled.read_text(errors="replace").strip()[:300]
    path = trial_dir / "error.txt"
    if not path.is_file():
        return ""
    lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    for line in reversed(lines):
        if "Error" in line or "Exception" in line:
            return line[:300]
    return lines[-1][:300] if lines else "error"


def optuna_view(run_dir: Path, unreadable: list[str] | None = None) -> dict[str, Any]:
    """Optuna's view of each Tune trial, keyed by Tune trial id. A damaged file
    gives {} and a line in ``unreadable``: the tables then go by Tune's records."""
    db = RunFolder(run_dir).optuna_db
    if not db.is_file():
        return {}
    import optuna

    from studies.quiet import quiet_optuna

    storage = f"sqlite:///{db}"
    out = {}
    try:
        with quiet_optuna():
            for summary in optuna.get_all_study_summaries(storage):
                study = optuna.load_study(study_name=summary.study_name, storage=storage)
                set_aside = set(study.user_attrs.get(SET_ASIDE_ATTR, []))
                for t in study.get_trials(deepcopy=False):
                    tid = t.user_attrs.get(TUNE_TRIAL_ID_ATTR)
                    if tid in set_aside:   # finished outside the Tune experiment: read as orphaned
                        t = copy.copy(t)
                        t.user_attrs = {**t.user_attrs, ORPHANED_ATTR: True}
                    if tid:
                        out[tid] = t
    except Exception as exc:  # sqlite, sqlalchemy and Optuna each raise their own kind for a damaged file
        if unreadable is None:
            raise
        unreadable.append(f"{db.name}: unreadable ({exc.__class__.__name__}: {str(exc).splitlines()[0][:120]}); "
                          "statuses from Tune's records alone")
        return {}
    return out


@dataclass
class TuneTrial:
    """What Tune wrote for one trial: its config, its epochs (a resumed trial's
    repeated epoch: the last report), and the reason it failed, if it did."""

    trial_dir: Path
    trial_id: str
    config: dict[str, Any]
    by_epoch: dict[int, dict[str, Any]]
    error: str

    def metric_by_epoch(self, metric: str) -> dict[int, float]:
        return {e: float(r[metric]) for e, r in sorted(self.by_epoch.items()) if isinstance(r.get(metric), (int, float))}

    def objectives_by_epoch(self, metrics: list[str]) -> dict[int, list[float]]:
        """Epoch -> every objective's value, for the epochs that reported all of them."""
        return {e: [float(r[m]) for m in metrics] for e, r in sorted(self.by_epoch.items())
                if all(isinstance(r.get(m), (int, float)) and not isinstance(r.get(m), bool) for m in metrics)}

    def values_for_optuna(self, metrics: list[str]) -> dict[int, Any]:
        """Epoch -> what the searcher tells Optuna: the metric's value, or for
        several objectives the list of them."""
        if len(metrics) == 1:
            return self.metric_by_epoch(metrics[0])
        return dict(self.objectives_by_epoch(metrics))


def read_tune_trials(run_dir: Path, unreadable: list[str] | None = None) -> list[TuneTrial]:
    """Every trial folder of a run (the expensive part of reading a run: one
    result.json per trial). A trial whose params.json cannot be read is left
    out, with a line in ``unreadable``."""
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: no such run folder")
    out = []
    for trial_dir in sorted(p for p in run_dir.iterdir() if p.is_dir() and (p / PARAMS_FILE).is_file()):
        try:
            config = json.loads((trial_dir / PARAMS_FILE).read_text())
            if not isinstance(config, dict):
                raise ValueError("not a JSON object")
        except (ValueError, OSError) as exc:
            (unreadable if unreadable is not None else []).append(f"{trial_dir.name}/{PARAMS_FILE}: unreadable ({exc}); trial left out")
            continue
        results = read_results(trial_dir)
        by_epoch: dict[int, dict[str, Any]] = {}
        for r in results:
            if "epoch" in r:
                by_epoch[int(r["epoch"])] = r
        out.append(TuneTrial(trial_dir, results[0]["trial_id"] if results else trial_dir.name.removeprefix("trial_"),
                             config, by_epoch, _error_reason(trial_dir)))
    return out


def tune_snapshot(run_dir: Path) -> dict[str, dict[str, Any]]:
    """Each trial of the newest experiment snapshot of the run folder, by id:
    Tune's own ``status`` (TERMINATED, ERROR, ...) and its ``config`` (a plain
    JSON dict, also for a trial whose folder does not exist yet); {} when there
    is no snapshot or it is unreadable."""
    snapshots = sorted(run_dir.glob(SNAPSHOT_GLOB))
    if not snapshots:
        return {}
    try:
        entries = json.loads(snapshots[-1].read_text())["trial_data"]
        return {t["trial_id"]: {"status": t.get("status", ""), "config": t.get("config") if isinstance(t.get("config"), dict) else {}}
                for t in (json.loads(entry) for entry, _ in entries)}
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, OSError):
        return {}


def tune_statuses(run_dir: Path) -> dict[str, str]:
    """Tune's own status of each trial in the newest experiment snapshot."""
    return {tid: t["status"] for tid, t in tune_snapshot(run_dir).items()}


def _status(t: TuneTrial, ot: Any, epochs: int, max_epochs: int, run_active: bool,
            tune_status: str | None = None, reported: bool = True, forgotten: bool = False) -> tuple[str, bool]:
    """The trial's status in the tables, and whether its error was recovered from.
    ``forgotten``: a trial folder that neither Tune's last snapshot nor Optuna
    knows, which a killed driver started after the snapshot the run resumed from
    (with a bucket, its files can land before that snapshot's): outside the study."""
    state = ot.state.name if ot is not None else None
    # Tune writes error.txt at every failure, also one the trial recovered from
    # (a retry from its checkpoint): only a trial that did not go on has failed.
    # A trial retried after a resume can finish while Optuna keeps the FAIL it was
    # told before: Tune's snapshot and the epochs on disk are the truth then.
    went_on = tune_status == "TERMINATED" and epochs >= max_epochs
    # A trial told FAIL that Tune then retried (a resume retries errored trials) and
    # ended without error: ASHA stopped the retry; Optuna cannot be told again.
    retried_and_stopped = state == "FAIL" and tune_status == "TERMINATED" and reported and 0 < epochs < max_epochs
    recovered = bool(t.error) and (state in ("COMPLETE", "PRUNED") or (state is None and epochs >= max_epochs) or went_on)
    if ot is not None and ot.user_attrs.get(ORPHANED_ATTR):
        return STATUS_ORPHANED, recovered
    if forgotten:
        return STATUS_ORPHANED, recovered
    if went_on:
        return STATUS_COMPLETE, recovered
    if retried_and_stopped:
        return STATUS_PRUNED, bool(t.error)
    if state == "FAIL" or (t.error and not recovered):
        return STATUS_FAILED, recovered
    if state == "PRUNED":
        return STATUS_PRUNED, recovered
    if state == "COMPLETE" or epochs >= max_epochs:
        return STATUS_COMPLETE, recovered
    if run_active:
        return STATUS_RUNNING, recovered
    return (STATUS_INTERRUPTED if (ot is None or state == "RUNNING") else STATUS_PRUNED), recovered


def _table(tune_trials: list[TuneTrial], optuna_trials: dict[str, Any], *, metric: str, mode: str,
                 params: list[str], max_epochs: int, run_active: bool = False,
                 tune_status: dict[str, str] | None = None) -> RunTrials:
    """One row per trial (status, epochs, best and last value, sampled params,
    Optuna's number and state) and the long history of every epoch."""
    rows, history = [], []
    for t in tune_trials:
        for epoch, r in sorted(t.by_epoch.items()):
            history.append({"trial_id": t.trial_id, **{k: v for k, v in r.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}, "epoch": epoch})
        values = list(t.metric_by_epoch(metric).values())
        finite = [v for v in values if math.isfinite(v)]
        epochs = max(t.by_epoch) if t.by_epoch else 0
        ot = optuna_trials.get(t.trial_id)
        if epochs and not values and not t.error:   # stopped at its first result (studies.tune.metric_check)
            reported = sorted(k for k in t.by_epoch[min(t.by_epoch)] if k not in TUNE_KEYS)
            got = t.by_epoch[min(t.by_epoch)].get(metric)
            why = f"(it reported {got!r})" if got is not None else f"(it reported: {', '.join(reported) or 'nothing'})"
            t = dataclasses.replace(t, error=f"never reported the study's metric `{metric}` as a number {why}")
        if not epochs and not t.error and (tune_status or {}).get(t.trial_id) in ("TERMINATED", "ERROR"):
            t = dataclasses.replace(t, error="ended without reporting a result (a trainable reports every epoch, "
                                             f"with `epoch` and `{metric}`)")
        forgotten = bool(tune_status) and not run_active and ot is None and t.trial_id not in (tune_status or {})
        status, recovered = _status(t, ot, epochs, max_epochs, run_active, (tune_status or {}).get(t.trial_id),
                                    reported=bool(values), forgotten=forgotten and bool(optuna_trials))
        sampled = dict(ot.params) if ot is not None else {p: t.config.get(p) for p in params}
        rows.append({
            "trial_id": t.trial_id,
            "status": status,
            "epochs": epochs,
            f"best_{metric}": Direction(mode).best(finite),
            f"last_{metric}": values[-1] if values else math.nan,
            **{p: sampled.get(p) for p in params},
            "optuna_number": ot.number if ot is not None else None,
            "optuna_state": (ot.state.name if ot is not None else None) or "",
            "seed": t.config.get("seed"),
            "error": f"recovered from: {t.error}" if recovered else t.error,
            "trial_dir": t.trial_dir.name,
        })
    trials = pd.DataFrame(rows)
    if not trials.empty:
        trials = trials.sort_values(["optuna_number", "trial_id"], na_position="last").reset_index(drop=True)
    return RunTrials(trials=trials, history=pd.DataFrame(history), params=params)


def load_trials(run_dir: Path, *, metric: str, mode: str, params: list[str], max_epochs: int, run_active: bool = False,
                tune_trials: list[TuneTrial] | None = None) -> RunTrials:
    """Read a run folder (its trial folders only if ``tune_trials`` are not given,
    e.g. already read for reconciling). ``run_active`` says whether the driver is
    still running (a trial without an end state is then "running", otherwise
    "interrupted"). What cannot be read is left out and named in ``unreadable``."""
    unreadable: list[str] = []
    if tune_trials is None:
        tune_trials = read_tune_trials(run_dir, unreadable)
    run = _table(tune_trials, optuna_view(run_dir, unreadable), metric=metric, mode=mode, params=params,
                       max_epochs=max_epochs, run_active=run_active, tune_status=tune_statuses(run_dir))
    run.unreadable = unreadable
    return run


def config_keys(trials: pd.DataFrame, params: list[str]) -> pd.Series:
    """One hashable key per trial: trials with the same sampled values share it."""
    def key(v: Any) -> Any:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return None
        try:
            return round(float(v), 12)
        except (TypeError, ValueError):
            return str(v)
    return pd.Series([tuple(key(v) for v in row) for row in trials[params].itertuples(index=False)],
                     index=trials.index, dtype=object)


def full_budget_values(run: RunTrials, metrics: list[str], max_epochs: int) -> pd.DataFrame:
    """trial_id and each metric's value at the trial's epoch ``max_epochs``,
    for the trials that reported every metric there."""
    h = run.history
    if h.empty or "epoch" not in h or not set(metrics) <= set(h.columns):
        return pd.DataFrame(columns=["trial_id", *metrics])
    last = h[h["epoch"] == max_epochs].drop_duplicates("trial_id", keep="last")
    return last[["trial_id", *metrics]].dropna().reset_index(drop=True)


def merge_repeated_configs(run: RunTrials, values: pd.DataFrame, metrics: list[str], *,
                           also: list[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The full-budget trials (``values``: trial_id and each metric), with their
    parameters, once per trial and once per distinct config.

    TPE proposes a config it likes more than once, each time a separate trial; as
    several front members such repeats would inflate every count of the front.
    A config is its parameter values (every search-space parameter; an inactive
    one is None; numbers rounded to 12 digits). Per config: ``trial_id`` its first
    trial in the run's order (so the baseline, Optuna's trial 0, keeps its id),
    ``trials_merged`` how many trials ran it, each metric the mean over them, with
    differences below ``RESOLUTION`` of the metric's magnitude made ties.
    A trial without parameters (none known, or not in the run's trial table) is
    a config of its own. ``also``: more columns of the trial table to carry
    (factors that are not search-space parameters); they do not make the key.
    Returns (per trial, with a ``config`` column; per config)."""
    trials = run.trials.drop_duplicates("trial_id").set_index("trial_id")
    params = [p for p in run.params if p in trials.columns]
    carried = params + [c for c in (also or []) if c in trials.columns and c not in params]
    order = {t: i for i, t in enumerate(trials.index)}
    per_trial = values.join(trials[carried], on="trial_id")
    per_trial = per_trial.assign(_order=per_trial["trial_id"].map(order).fillna(len(order)))
    per_trial = per_trial.sort_values("_order", kind="stable").drop(columns="_order").reset_index(drop=True)
    known = per_trial["trial_id"].isin(list(order))
    keys = [k if params and ok else ("trial", t)
            for k, ok, t in zip(config_keys(per_trial, params), known, per_trial["trial_id"])]
    key = pd.Series(keys, index=per_trial.index, dtype=object)
    per_trial["config"] = key.map(per_trial.groupby(key, sort=False)["trial_id"].first())
    grouped = per_trial.groupby("config", sort=False)
    configs = grouped[carried].first() if carried else pd.DataFrame(index=grouped.size().index)
    configs.insert(0, "trials_merged", grouped.size())
    for m in metrics:
        configs[m] = grouped[m].mean()
    configs = configs[["trials_merged", *metrics, *carried]].rename_axis("trial_id").reset_index()
    if len(configs):
        configs[metrics] = resolve_ties(configs[metrics].to_numpy(dtype=float))
    return per_trial, configs


def has_tune_snapshot(run_dir: Path) -> bool:
    return any(run_dir.glob(SNAPSHOT_GLOB))


def trial_params_files(folder: Path) -> list[Path]:
    """Each trial's params.json directly under ``folder`` (a run, or its designed stage)."""
    return sorted(folder.glob(f"*/{PARAMS_FILE}"))
