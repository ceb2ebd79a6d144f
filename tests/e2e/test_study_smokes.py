"""Every bundled study's `python studies/run.py STUDY --smoke`, end to end: one
real CLI run per study, in a subprocess (a module-scoped fixture, parametrized
over the studies), then the checks on its run folder. mdn_ramp, the main study,
has tests/e2e/test_smoke_study.py (a local Ray, as a user's first run starts).

A smoke's seconds go to starting Ray, starting the trial workers (importing
torch) and the report; its trials take about a second in all. So each study
runs its spec's own smoke budget (the checks below count on its trial count);
the studies' CLIs join one local Ray with --address (as on a cluster: the
checkout shipped to the workers) instead of each starting its own; and a check
that needs no second CLI run (mdn_sampling's cache) runs in-process. Running two
smokes at once is slower on two cores than one after the other."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from subprocess import CompletedProcess

import pandas as pd
import pytest

from tests.conftest import run_cli
from tests.studies.report.test_latex import compile_problems, needs_pdflatex

RUN = "smoke-e2e"
STATUSES = {"complete", "stopped by ASHA"}


@dataclass(frozen=True)
class Smoke:
    """What a study's smoke block (studies/STUDY.yaml, ``smoke:``) makes of its run."""

    trials: int                   # smoke.budget.num_samples
    epochs: int                   # smoke.budget.max_epochs: what a complete trial ran
    metric: str | None            # the trials table's best_<metric>, set for every trial
    params: tuple[str, ...] = ()  # sampled by every trial
    report: str = "ablation report"


SMOKES = {
    "augmentation": Smoke(4, 2, "best_val_error_mm", ("train_aug", "pca_aug", "lr")),             # family hand_pose
    "crop_size": Smoke(4, 2, "best_val_error_mm", ("crop_method", "cube_size", "lr")),            # family hand_pose
    "film_placement": Smoke(4, 2, "best_val_error_mm", ("film_blocks", "lr")),                    # family hand_pose
    "grunet_arch": Smoke(5, 3, "best_val_mse"),                                                   # family au2blend
    "har_lstm": Smoke(4, 3, "best_val_accuracy", ("pooling", "pca_dim", "hidden_size", "lr")),   # family hand_action
    "kl_cycle": Smoke(5, 3, "best_val_psnr"),                                                     # family cvae_video
    "mdn_sampling": Smoke(6, 3, None, report="trade-off report"),                                 # three objectives
    "teacher_forcing": Smoke(5, 3, "best_val_psnr"),                                              # family cvae_video
}


@dataclass
class SmokeRun:
    study: str
    smoke: Smoke
    run_dir: Path
    proc: CompletedProcess
    cache_dir: Path
    _rows: dict[str, list[dict]] = field(default_factory=dict)

    @cached_property
    def table(self) -> pd.DataFrame:
        return pd.read_csv(self.run_dir / "tables" / "trials.csv")

    @cached_property
    def info(self) -> dict:
        return json.loads((self.run_dir / "run.json").read_text())

    @cached_property
    def report(self) -> str:
        return (self.run_dir / "tables" / "ablation.md").read_text()

    def trial_dirs(self) -> list[Path]:
        return sorted(self.run_dir.glob("trial_*"))

    def rows(self, trial_dir: Path) -> list[dict]:
        """What the trial reported, one row per epoch (Tune's result.json)."""
        if trial_dir.name not in self._rows:
            text = (trial_dir / "result.json").read_text()
            self._rows[trial_dir.name] = [json.loads(line) for line in text.splitlines() if line.strip()]
        return self._rows[trial_dir.name]


# A local Ray of 2 CPUs, its address and auth mode on one line, up until stdin closes.
HEAD = """
import json, logging, os, sys
import ray
context = ray.init(address="local", num_cpus=2, num_gpus=0, include_dashboard=False, logging_level=logging.WARNING)
print(json.dumps({"address": context.address_info["gcs_address"], "auth_mode": os.environ.get("RAY_AUTH_MODE")}), flush=True)
sys.stdin.read()
ray.shutdown()
"""


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """One Ray for this module's CLIs to join: its address, and the environment a
    driver needs to join it (RAY_AUTH_MODE=token where the head uses a token, as
    README's cluster section says)."""
    log = tmp_path_factory.mktemp("ray-head") / "head.log"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    with log.open("w") as err:
        head = subprocess.Popen([sys.executable, "-c", HEAD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=err, text=True, env=env)
    try:
        assert head.stdout is not None and head.stdin is not None
        line = head.stdout.readline()
        assert line, f"the Ray head did not start: {log.read_text()[-3000:]}"
        started = json.loads(line)
        yield started["address"], ({"RAY_AUTH_MODE": started["auth_mode"]} if started["auth_mode"] else {})
    finally:
        if head.stdin is not None:
            head.stdin.close()       # the head shuts its Ray down
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait()


@pytest.fixture(scope="module", params=sorted(SMOKES))
def smoke(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, cache_dir: Path,
          ray_head: tuple[str, dict[str, str]]) -> SmokeRun:
    """The study's CLI smoke, run once for every test of that study."""
    study = request.param
    address, env = ray_head
    storage = tmp_path_factory.mktemp(f"results-{study}")
    proc = run_cli(study, "--smoke", "--storage", str(storage), "--cache-dir", str(cache_dir), "--address", address,
                   "--run", RUN, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return SmokeRun(study, SMOKES[study], storage / study / RUN, proc, cache_dir)


# --- every study ---------------------------------------------------------------

def test_run_finished_as_a_smoke(smoke: SmokeRun) -> None:
    assert smoke.info["status"] == "finished" and smoke.info["invocation"]["smoke"] is True


def test_trials_table(smoke: SmokeRun) -> None:
    table, expected = smoke.table, smoke.smoke
    assert len(table) == expected.trials
    assert set(table["status"]) <= STATUSES
    assert (table.loc[table["status"] == "complete", "epochs"] == expected.epochs).all()
    if expected.metric is not None:
        assert table[expected.metric].notna().all()
    for param in expected.params:
        assert table[param].notna().all(), param


def test_report_is_written(smoke: SmokeRun) -> None:
    assert smoke.report.startswith(f"# {smoke.study}: {smoke.smoke.report}")


@needs_pdflatex
def test_every_latex_table_compiles(smoke: SmokeRun, tmp_path: Path) -> None:
    """Every .tex the study's smoke wrote, in a minimal article with the packages
    its header names: no error, no overfull box, no float too large."""
    tables = sorted((smoke.run_dir / "tables").glob("*.tex"))
    assert tables
    problems = {t.name: p for t in tables if (p := compile_problems(t, tmp_path))}
    assert not problems, problems


def test_study_checks(smoke: SmokeRun) -> None:
    """The study's own checks (CHECKS below): its conditional knobs, its per-epoch
    metrics, its report. Each runs, and every failure is named."""
    failures: list[tuple[str, AssertionError]] = []
    for check in CHECKS[smoke.study]:
        try:
            check(smoke)
        except AssertionError as exc:
            failures.append((check.__name__, exc))
    if len(failures) == 1:
        raise failures[0][1]
    assert not failures, "\n\n".join(f"{name}: {exc}" for name, exc in failures)


# --- each study's own checks -----------------------------------------------------

def aug_random_only_with_augmented_images(run: SmokeRun) -> None:
    """augmentation: aug_random only exists when the training images are augmented."""
    table = run.table
    assert table.loc[table["train_aug"] == "none", "aug_random"].isna().all()
    assert table.loc[table["train_aug"] != "none", "aug_random"].notna().all()


def bbox_padding_only_for_the_bounding_box_crop(run: SmokeRun) -> None:
    """crop_size: the conditional bbox_padding is only sampled for the bounding-box crop."""
    table = run.table
    assert table.loc[table["crop_method"] == "cube", "bbox_padding"].isna().all()
    assert table.loc[table["crop_method"] == "bbox", "bbox_padding"].between(0.0, 0.4).all()
    assert set(table["cube_size"]) <= {150.0, 200.0, 250.0, 300.0, 350.0}


def film_blocks_stays_a_string(run: SmokeRun) -> None:
    """film_placement: film_blocks stays a string ("0,1" is not a number) and film_dim exists only with FiLM."""
    for trial_dir in run.run_dir.glob("trial_*"):
        params = json.loads((trial_dir / "params.json").read_text())
        assert isinstance(params["film_blocks"], str)
        assert ("film_dim" in params) == (params["film_blocks"] != "none")


def some_trial_complete(run: SmokeRun) -> None:
    assert (run.table["status"] == "complete").any()


def grunet_trials_table(run: SmokeRun) -> None:
    """grunet_arch: a positive best MSE; attention is sampled only for seq2seq trials."""
    table = run.table
    assert table["best_val_mse"].notna().all() and (table["best_val_mse"] > 0).all()
    assert table.loc[table["seq2seq"] == False, "attention"].isna().all()  # noqa: E712


def grunet_every_epoch_reports_mse_and_r2(run: SmokeRun) -> None:
    for trial_dir in run.trial_dirs():
        rows = run.rows(trial_dir)
        assert rows
        for row in rows:
            assert isinstance(row["val_mse"], float) and row["val_mse"] > 0
            assert isinstance(row["val_r2"], float) and row["val_r2"] <= 1.0
            assert 0.0 <= row["val_neg_frac"] <= 1.0


def grunet_report_has_every_factor(run: SmokeRun) -> None:
    for factor in ("hidden_size", "packed", "negrelu_weight", "seq2seq", "attention", "max_train_length"):
        assert f"## {factor}" in run.report


def accuracy_is_a_fraction(run: SmokeRun) -> None:
    """har_lstm: accuracy is in [0, 1]."""
    assert run.table["best_val_accuracy"].between(0.0, 1.0).all()


def psnr_above_noise(run: SmokeRun) -> None:
    table = run.table
    assert table["best_val_psnr"].notna().all() and (table["best_val_psnr"] > 5).all()


def every_epoch_reports_the_psnr_curve(run: SmokeRun) -> None:
    """cvae_video: val_psnr and one scalar per generated frame (clip_length 4 in the
    smoke block: frames 01..03), finite, every epoch of every trial."""
    frames = [f"val_psnr_frame_{k:02d}" for k in (1, 2, 3)]
    for trial_dir in run.trial_dirs():
        rows = run.rows(trial_dir)
        assert rows
        for row in rows:
            assert "val_psnr_frame_04" not in row
            values = [row[k] for k in frames]
            assert all(isinstance(v, float) and 5 < v < 100 for v in values)
            assert row["val_psnr"] == pytest.approx(sum(values) / len(values), rel=1e-6)


def conditional_cycle_knobs(run: SmokeRun) -> None:
    """kl_cycle: trials without annealing never sample the cycle and ratio."""
    table = run.table
    assert set(table["kl_anneal_type"]) <= {"none", "monotonic", "cyclical"}
    none = table[table["kl_anneal_type"] == "none"]
    assert none["kl_anneal_cycle"].isna().all() and none["kl_anneal_ratio"].isna().all()
    annealed = table[table["kl_anneal_type"] != "none"]
    assert annealed["kl_anneal_cycle"].notna().all() and annealed["kl_anneal_cycle"].isin([2, 4, 6, 8]).all()


def baseline_level_and_conditional_decay_knobs(run: SmokeRun) -> None:
    """teacher_forcing: trials without teacher forcing never sample its decay knobs."""
    table = run.table
    assert set(table["tfr"]) <= {0.0, 0.25, 0.5, 0.75, 1.0}
    no_tf = table[table["tfr"] == 0.0]
    assert no_tf["tfr_sde"].isna().all() and no_tf["tfr_d_step"].isna().all()
    assert table.loc[table["tfr"] > 0, "tfr_sde"].notna().all()


BUILDING = "building what every trial shares"


def shared_model_built_once_and_objectives_reported(run: SmokeRun) -> None:
    """mdn_sampling: the shared model is built once and cached, the trials only
    generate (every epoch reports the objectives), the trade-off report is written."""
    assert BUILDING in run.proc.stderr
    assert len(list(run.cache_dir.glob("mdn_sampling-shared-*.npz"))) == 1
    history = [row for trial_dir in run.trial_dirs() for row in run.rows(trial_dir)]
    assert history
    assert all({"gen_jerk_ratio", "gen_diversity", "emotion_consistency", "probe_accuracy"} <= set(r) for r in history)
    assert "Pareto front" in run.report
    assert (run.run_dir / "plots" / "pareto.png").is_file() or "No search trial ran the full budget" in run.report


def a_later_run_reads_the_shared_model_from_the_cache(run: SmokeRun) -> None:
    """mdn_sampling: a later run of the study (the driver's data step, what the CLI
    does before Ray starts) reads the shared model from the cache instead of
    training it again, and a trial built on what it read measures exactly what
    the CLI's trial measured at its first epoch. In-process: the second CLI run
    this replaces cost a whole smoke (Ray, workers, report) for this one check."""
    import torch

    from core.training import run_epochs
    from studies.driver import load_family_data, spec_of_run
    from trainables._loop import PLATFORM_KEYS

    spec = spec_of_run(run.run_dir)
    said = io.StringIO()
    with contextlib.redirect_stderr(said):
        arrays = load_family_data(spec, None, run.cache_dir)
    assert BUILDING not in said.getvalue(), said.getvalue()
    assert arrays is not None and any(k.startswith("shared/model/") for k in arrays)
    assert len(list(run.cache_dir.glob("mdn_sampling-shared-*.npz"))) == 1
    family = spec.family_info
    threads = torch.get_num_threads()
    try:
        for trial_dir in run.trial_dirs():
            params = json.loads((trial_dir / "params.json").read_text())
            torch.set_num_threads(max(1, int(params["cpus_per_trial"])))   # as the trial ran (trainables/_loop.py)
            experiment = family.build(params, arrays, "cpu", ignore=PLATFORM_KEYS)
            measured: dict[int, dict[str, float]] = {}
            run_epochs(experiment, max_epochs=1, on_epoch=measured.__setitem__)
            reported = run.rows(trial_dir)[0]
            assert reported["epoch"] == 1 and list(measured) == [1]
            for key in ("gen_jerk_ratio", "gen_diversity", "emotion_consistency", "probe_accuracy"):
                assert measured[1][key] == pytest.approx(reported[key], rel=1e-6, abs=1e-12), (trial_dir.name, key)
    finally:
        torch.set_num_threads(threads)


CHECKS: dict[str, tuple[Callable[[SmokeRun], None], ...]] = {
    "augmentation": (aug_random_only_with_augmented_images,),
    "crop_size": (bbox_padding_only_for_the_bounding_box_crop,),
    "film_placement": (film_blocks_stays_a_string,),
    "grunet_arch": (some_trial_complete, grunet_trials_table, grunet_every_epoch_reports_mse_and_r2,
                    grunet_report_has_every_factor),
    "har_lstm": (accuracy_is_a_fraction,),
    "kl_cycle": (some_trial_complete, psnr_above_noise, every_epoch_reports_the_psnr_curve, conditional_cycle_knobs),
    "mdn_sampling": (shared_model_built_once_and_objectives_reported, a_later_run_reads_the_shared_model_from_the_cache),
    "teacher_forcing": (some_trial_complete, psnr_above_noise, every_epoch_reports_the_psnr_curve,
                        baseline_level_and_conditional_decay_knobs),
}


def test_every_study_is_smoked() -> None:
    """A new bundled study gets its CLI smoke here (studies/*.yaml; mdn_ramp has its own file)."""
    studies_dir = Path(__file__).resolve().parents[2] / "studies"
    assert sorted(p.stem for p in studies_dir.glob("*.yaml")) == sorted([*SMOKES, "mdn_ramp"])
    assert set(CHECKS) == set(SMOKES)
