"""Faults injected for real: a trial's worker SIGKILLed, the driver SIGINTed,
SIGTERMed and SIGKILLed mid-study, then --resume."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pandas as pd
import pytest

from studies.runs.run_folder import ORPHANED_ATTR, SET_ASIDE_ATTR, TUNE_TRIAL_ID_ATTR
from tests.conftest import REPO, RUN_PY, run_cli, start_cli, user_study, wait_for

SLOW_SMOKE = ["--smoke", "--set", "config.num_sequences=96", "--num-cpus", "2"]


def _results(trial_dir: Path) -> list[dict]:
    path = trial_dir / "result.json"
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return out


def _optuna(run_dir: Path) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name="mdn_ramp", storage=f"sqlite:///{run_dir / 'optuna.db'}").get_trials()


def test_worker_killed_mid_trial_resumes_from_checkpoint(tmp_path: Path, cache_dir: Path) -> None:
    epochs = 12
    run_dir = tmp_path / "mdn_ramp" / "kill-worker"
    proc = start_cli(["mdn_ramp", *SLOW_SMOKE, "--storage", str(tmp_path), "--cache-dir", str(cache_dir), "--run", "kill-worker",
                   "--num-samples", "1", "--set", f"budget.max_epochs={epochs}", "--set", "budget.checkpoint_every=2",
                   "--set", f"budget.grace_period={epochs}", "--set", "config.num_sequences=384", "--set", "config.d_model=32"],
                  TUNE_GLOBAL_CHECKPOINT_S="1")  # result.json reaches the run folder with each snapshot
    try:
        def trial_dir() -> Path | None:
            return next(iter(run_dir.glob("trial_*")), None) if run_dir.is_dir() else None

        # Tune reports asynchronously: the worker runs ahead of the driver's
        # result.json, so its progress is read from the checkpoints it persists.
        wait_for(lambda: trial_dir() is not None and bool(_results(trial_dir()))
                  and (trial_dir() / "checkpoint_000000").is_dir(), 240, "the first checkpoint (epoch 2)")
        pid = _results(trial_dir())[0]["pid"]
        assert not (trial_dir() / f"checkpoint_{epochs // 2 - 1:06d}").exists(), "the trial ended before it could be killed"
        os.kill(pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, out[-3000:]
    rows = _results(trial_dir())
    assert len({r["pid"] for r in rows}) == 2, "the trial did not restart in a new worker"
    table = pd.read_csv(run_dir / "tables" / "trials.csv")
    assert table.loc[0, "status"] == "complete" and table.loc[0, "epochs"] == epochs
    # The history the tables use has every epoch once, no gap.
    history = sorted({int(r["epoch"]) for r in rows})
    assert history == list(range(1, epochs + 1))
    restarted_at = next(i for i, r in enumerate(rows) if r["pid"] != rows[0]["pid"])
    first_new, last_old = rows[restarted_at]["epoch"], max(r["epoch"] for r in rows[:restarted_at])
    # Checkpoints every 2 epochs: the new worker starts right after the last one the old worker saved.
    assert (first_new - 1) % 2 == 0 and last_old - 1 <= first_new <= last_old + 1, (first_new, last_old)
    (t,) = _optuna(run_dir)
    assert t.state.name == "COMPLETE" and sorted(t.intermediate_values) == list(range(1, epochs + 1))


def _terminated_in_saved_state(run_dir: Path) -> set[str]:
    """Trials the run folder's experiment snapshot records as TERMINATED: what
    a resumed driver will know is finished. Tune writes result.json and that
    snapshot to the run folder together, every TUNE_GLOBAL_CHECKPOINT_S, so
    a trial's last epoch in result.json alone does not mean it is recorded."""
    done: set[str] = set()
    for path in run_dir.glob("experiment_state-*.json"):
        try:
            trials = json.loads(path.read_text())["trial_data"]
        except (json.JSONDecodeError, KeyError, OSError):
            continue  # being copied in; the next poll reads it whole
        done |= {t["trial_id"] for t in (json.loads(entry) for entry, _ in trials) if t.get("status") == "TERMINATED"}
    return done


def _whole_snapshot(run_dir: Path) -> bool:
    """The newest snapshot is on disk whole: its searcher and generator files are there and not
    empty, and every file Tune would unpickle matches its signature. Tune copies a snapshot file by
    file right after writing experiment_state, so a kill timed on that file alone lands inside the
    copy (an empty searcher-state pickle, seen under load): that is a kill of another kind, in a
    window of milliseconds, not the one these tests are about."""
    from studies.errors import UserError
    from studies.runs.run_signing import check_run_folder, signing_key

    states = sorted(run_dir.glob("experiment_state-*.json"))
    if not states:
        return False
    session = states[-1].name.removeprefix("experiment_state-").removesuffix(".json")
    for name in (f"searcher-state-{session}.pkl", f"search_gen_state-{session}.json"):
        path = run_dir / name
        if not path.is_file() or path.stat().st_size == 0:
            return False
    try:
        check_run_folder(run_dir, signing_key())
    except UserError:
        return False
    return True


_WORKER_SIGTERM_NOISE = re.compile(
    r"Exception ignored in: [^\n]*\n\s*Traceback \(most recent call last\):\n(?:[^\n]*\n)*?\s*SystemExit: 1\n")


def _without_worker_sigterm_noise(out: str) -> str:
    """The driver's output less what Ray forwards from a pool worker that ray.shutdown()
    SIGTERMs while it runs a GC callback: Ray's own worker handler raises SystemExit there
    and Python prints it as "Exception ignored". That is a worker's exit, not the driver's."""
    return _WORKER_SIGTERM_NOISE.sub(lambda m: "" if "sigterm_handler" in m.group(0) else m.group(0), out)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=["SIGINT", "SIGTERM", "SIGKILL"])
def test_driver_killed_then_resumed(tmp_path: Path, cache_dir: Path, sig: signal.Signals) -> None:
    run_dir = tmp_path / "mdn_ramp" / "kill-driver"
    base = ["mdn_ramp", *SLOW_SMOKE, "--storage", str(tmp_path), "--cache-dir", str(cache_dir), "--run", "kill-driver"]
    # grace_period = max_epochs: ASHA stops nothing. 10 trials of ~2 s on 2 workers, snapshots every
    # second: the first finished trial is on disk long before the last one ends, so the signal lands mid-study.
    proc = start_cli([*base, "--num-samples", "10", "--set", "budget.max_epochs=6", "--set", "budget.checkpoint_every=1",
                   "--set", "budget.grace_period=6", "--set", "config.num_sequences=384"], TUNE_GLOBAL_CHECKPOINT_S="1")
    try:
        wait_for(lambda: bool(_terminated_in_saved_state(run_dir)) and _whole_snapshot(run_dir), 420,
                 "a finished trial in a whole saved snapshot")
        finished_before = _terminated_in_saved_state(run_dir)
        if sig == signal.SIGKILL:
            os.killpg(proc.pid, signal.SIGKILL)   # the driver and the local Ray it started
        else:
            os.kill(proc.pid, sig)   # SIGTERM: what timeout, docker stop, Slurm and Kubernetes send
        out, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert len(finished_before) < 10, "every trial had ended before the signal: the test proves nothing"
    if sig != signal.SIGKILL:
        assert proc.returncode == {signal.SIGINT: 130, signal.SIGTERM: 143}[sig] and "--resume" in out, out[-2000:]
        assert "Traceback" not in _without_worker_sigterm_noise(out) and "SIGABRT" not in out, out[-2000:]
        assert json.loads((run_dir / "run.json").read_text())["status"] == "interrupted"
    resumed = subprocess.run([sys.executable, str(RUN_PY), "mdn_ramp", "--resume", "--run", "kill-driver", "--storage", str(tmp_path),
                              "--cache-dir", str(cache_dir), "--num-cpus", "2"], cwd=REPO, capture_output=True, text=True, timeout=420)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"
    # No trial recorded as finished ran again: one worker, every epoch once.
    for trial_id in finished_before:
        rows = _results(run_dir / f"trial_{trial_id}")
        assert [r["epoch"] for r in rows] == list(range(1, 7)) and len({r["pid"] for r in rows}) == 1, f"trial_{trial_id} was run again"
    trials = _optuna(run_dir)
    assert not [t.number for t in trials if t.state.name == "RUNNING"], "orphaned RUNNING trials"
    table = pd.read_csv(run_dir / "tables" / "trials.csv")
    lost = table["status"] == "lost (driver killed)"
    # Set aside: a trial that finished in Optuna after the snapshot the resume went on from; the
    # resumed study ran another in its place, so it is read as orphaned (not counted).
    set_aside = set(optuna.load_study(study_name="mdn_ramp", storage=f"sqlite:///{run_dir / 'optuna.db'}")
                    .user_attrs.get(SET_ASIDE_ATTR, []))
    kept = [t for t in trials if not t.user_attrs.get(ORPHANED_ATTR) and t.user_attrs.get(TUNE_TRIAL_ID_ATTR) not in set_aside]
    tune_trials = table[~lost]
    assert len(kept) == len(tune_trials) == 10, (len(kept), len(tune_trials))
    assert set(tune_trials["status"]) <= {"complete", "stopped by ASHA"}


RANKED = """
    import time

    from trainables.api import load_checkpoint, report_epoch


    def train(config):
        start = (load_checkpoint() or {"epoch": 0})["epoch"] + 1
        for epoch in range(start, config["max_epochs"] + 1):
            time.sleep(0.15)   # paces the study so the kill lands mid-study
            report_epoch({"loss": config["x"] + 1.0 / epoch}, epoch=epoch, state={"epoch": epoch})
"""


def _ranked_study(tmp_path: Path, cache_dir: Path, resources: str, search: str, budget: str) -> tuple[Path, list[str]]:
    """The RANKED trainable as a user's study; returns its run folder and the command's arguments."""
    spec = user_study(tmp_path, "ranked", RANKED, f"metric: loss\nmode: min\nconfig: {{x: 0.5}}\nresources: {resources}\n"
                      f"search: {search}\nbudget: {budget}\n")
    base = [str(spec), "--storage", str(tmp_path / "res"), "--cache-dir", str(cache_dir), "--run", "r", "--num-cpus", "2"]
    return tmp_path / "res" / "ranked" / "r", base


def _trial_order(run_dir: Path, study: str) -> list[str]:
    """Tune trial ids in the order the searcher made them (Optuna's trial numbers),
    less the trials a killed driver lost (their results never reached a saved state)."""
    trials = optuna.load_study(study_name=study, storage=f"sqlite:///{run_dir / 'optuna.db'}").get_trials()
    return [t.user_attrs["tune_trial_id"] for t in sorted(trials, key=lambda t: t.number)
            if not t.user_attrs.get("orphaned_by_driver_kill")]


def _replayed_last_epochs(run_dir: Path, *, max_t: int, grace: int, rf: float) -> dict[str, int]:
    """Every trial's results in the order they happened (one trial at a time, in
    the order they were made), through a fresh ASHA: the epoch each trial should end at."""
    from ray.tune.schedulers import ASHAScheduler, TrialScheduler

    asha = ASHAScheduler(time_attr="epoch", metric="loss", mode="min", max_t=max_t, grace_period=grace, reduction_factor=rf)
    ends: dict[str, int] = {}
    for trial_id in _trial_order(run_dir, "ranked"):
        trial = type("T", (), {"trial_id": trial_id})()
        asha.on_trial_add(None, trial)
        for row in _results(run_dir / f"trial_{trial_id}"):
            if asha.on_trial_result(None, trial, row) == TrialScheduler.STOP:
                ends[trial_id] = int(row["epoch"])
                break
    return ends


def test_asha_keeps_its_rungs_across_a_driver_kill(tmp_path: Path, cache_dir: Path) -> None:
    """Killed after a few trials, then resumed: every trial ends where a single
    uninterrupted ASHA, fed the same results in the same order, stops it (a
    scheduler restored with empty rungs would let the next trials run on)."""
    run_dir, base = _ranked_study(tmp_path, cache_dir, "{cpus_per_trial: 1, max_concurrent: 1}", "{sampler: random, seed: 3}",
                                  "{max_epochs: 4, grace_period: 1, reduction_factor: 2, num_samples: 12, max_failures: 0}")
    proc = start_cli(base, cwd=tmp_path, TUNE_GLOBAL_CHECKPOINT_S="1")
    try:
        wait_for(lambda: proc.poll() is not None or (len(_terminated_in_saved_state(run_dir)) >= 5 and _whole_snapshot(run_dir)),
                 300, "five finished trials in a whole saved snapshot")
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    before = len(list(run_dir.glob("trial_*")))
    assert before < 12, "every trial had started before the kill: the test proves nothing"
    resumed = run_cli(*base, "--resume", cwd=tmp_path, timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    expected = _replayed_last_epochs(run_dir, max_t=4, grace=1, rf=2)
    actual = {t: max(int(r["epoch"]) for r in _results(run_dir / f"trial_{t}")) for t in _trial_order(run_dir, "ranked")}
    assert len(actual) == 12 and actual == expected
    assert len(set(actual.values())) > 1, "ASHA stopped nothing early: the test proves nothing"


def _optuna_record(db: Path, study: str) -> dict[int, tuple]:
    loaded = optuna.load_study(study_name=study, storage=f"sqlite:///{db}")
    set_aside = set(loaded.user_attrs.get(SET_ASIDE_ATTR, []))   # finished outside the Tune experiment
    return {t.number: (t.state.name, t.params, t.value, t.intermediate_values, t.user_attrs.get(TUNE_TRIAL_ID_ATTR),
                       bool(t.user_attrs.get(ORPHANED_ATTR)) or t.user_attrs.get(TUNE_TRIAL_ID_ATTR) in set_aside)
            for t in loaded.get_trials()}


@pytest.mark.parametrize("damage", ["missing", "behind"])
def test_an_optuna_db_missing_or_behind_is_rebuilt_from_the_trials_on_disk(tmp_path: Path, cache_dir: Path, damage: str) -> None:
    """Interrupted, optuna.db deleted (or replaced by a copy from before the last
    snapshot, as a kill mid-upload leaves in a bucket), resumed: the study finishes,
    and Optuna's record of every trial is what it was (numbers, parameters, states,
    values, every epoch)."""
    from studies.runs.optuna_rebuild import rebuild_optuna_study
    from studies.spec.study import load_spec

    run_dir, base = _ranked_study(tmp_path, cache_dir, "{cpus_per_trial: 1}", "{sampler: tpe, seed: 5, n_startup_trials: 4}",
                                  "{max_epochs: 4, grace_period: 1, reduction_factor: 2, num_samples: 12, max_failures: 0}")
    early = tmp_path / "early.db"
    proc = start_cli(base, cwd=tmp_path, TUNE_GLOBAL_CHECKPOINT_S="1")
    try:
        wait_for(lambda: proc.poll() is not None or len(_terminated_in_saved_state(run_dir)) >= 5, 300,
                 "five finished trials in the saved experiment state")
        os.kill(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, out[-3000:]
    before = _optuna_record(run_dir / "optuna.db", "ranked")
    finished_before = {n: r for n, r in before.items() if r[0] != "RUNNING"}
    assert 0 < len(finished_before) < 12, "the interrupt did not land mid-study: the test proves nothing"
    if damage == "missing":
        (run_dir / "optuna.db").unlink()
    else:   # the file as an upload from the snapshot before leaves it: the last finished trials not in it yet
        _db_with_first_trials(run_dir / "optuna.db", early, "ranked", keep=len(finished_before) - 2)
        os.replace(early, run_dir / "optuna.db")

    resumed = run_cli(*base, "--resume", cwd=tmp_path, timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    said = {"missing": "optuna.db was missing: rebuilt from the", "behind": "of Tune's last snapshot (saved before it): rebuilt"}
    assert said[damage] in resumed.stdout, resumed.stdout[-3000:]
    after = _optuna_record(run_dir / "optuna.db", "ranked")
    assert {n: after[n] for n in finished_before} == finished_before
    kept = [r for r in after.values() if not r[5]]
    assert len(kept) == 12 and {r[0] for r in kept} <= {"COMPLETE", "PRUNED"}
    # And rebuilt from the finished folder alone (no Ray), every trial's record comes out the same.
    rebuilt = tmp_path / "rebuilt.db"
    assert rebuild_optuna_study(run_dir, rebuilt, load_spec(run_dir / "spec.yaml", search_space_path=run_dir / "search_space.yaml",
                                                           name="ranked", check_family=False)) == 12
    assert _optuna_record(rebuilt, "ranked") == after


def _db_with_first_trials(src: Path, dst: Path, study: str, *, keep: int) -> None:
    """A copy of ``src`` whose study holds its first ``keep`` finished trials
    only (and the study's attributes): an optuna.db from before the last
    snapshot, made exactly rather than by copying the file at the right moment
    (the trials of this study finish faster than a copy can be timed)."""
    old = optuna.load_study(study_name=study, storage=f"sqlite:///{src}")
    new = optuna.create_study(study_name=study, storage=f"sqlite:///{dst}", directions=old.directions)
    for key, value in old.user_attrs.items():
        new.set_user_attr(key, value)
    finished = sorted((t for t in old.get_trials() if t.state.is_finished()), key=lambda t: t.number)
    assert 0 < keep < len(finished), (keep, len(finished))
    new.add_trials(finished[:keep])
    assert len(new.get_trials()) == keep


def _process_tree() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    return children


def _descendants(pid: int) -> list[int]:
    children, out, todo = _process_tree(), [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _program(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace").rsplit("/", 1)[-1]
    except OSError:
        return ""


def test_a_killed_raylet_stops_the_study_cleanly_and_resume_finishes_it(tmp_path: Path, cache_dir: Path) -> None:
    """The only node dies mid-study (its raylet and workers SIGKILLed, as the OOM
    killer does): Tune alone polls for resources forever; here the study stops with
    one line and exit 75, and --resume finishes it."""
    run_dir, base = _ranked_study(tmp_path, cache_dir, "{cpus_per_trial: 1}", "{sampler: random, seed: 3}",
                                  "{max_epochs: 4, grace_period: 1, reduction_factor: 2, num_samples: 40, max_failures: 1}")
    proc = start_cli(base, cwd=tmp_path, TUNE_GLOBAL_CHECKPOINT_S="1")
    try:
        seen = []
        assert proc.stdout is not None
        for line in proc.stdout:   # the driver's own progress line: a trial has ended
            seen.append(line)
            if " 1/40 trials ended" in line:
                break
        raylets = [p for p in _descendants(proc.pid) if _program(p) == "raylet"]
        assert proc.poll() is None and len(raylets) == 1, "no raylet under the driver"
        for pid in [raylets[0], *_descendants(raylets[0])]:   # the node dies: its raylet and its workers
            os.kill(pid, signal.SIGKILL)
        rest, _ = proc.communicate(timeout=120)
        out = "".join(seen) + rest
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert " 40/40 trials ended" not in out, "every trial ended after the kill: the test proves nothing"
    assert proc.returncode == 75, out[-3000:]
    errors = [line for line in out.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith("error: Ray lost every node with CPUs") and "--resume" in errors[0]
    assert json.loads((run_dir / "run.json").read_text())["status"] == "interrupted"
    resumed = run_cli(*base, "--resume", cwd=tmp_path, timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    table = pd.read_csv(run_dir / "tables" / "trials.csv")
    kept = table[table["status"] != "lost (driver killed)"]
    assert len(kept) == 40 and set(kept["status"]) <= {"complete", "stopped by ASHA"}, table.to_string()
