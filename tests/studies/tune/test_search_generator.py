"""A resume's trial count comes from the trial states Tune resumes, not from a
search_gen_state file of another snapshot (a snapshot torn by a kill or a full disk)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ray.tune.search import ConcurrencyLimiter, Searcher, SearchGenerator
from ray.tune.search.search_generator import SearchGenerator as TuneSearchGenerator

from studies.tune.search_generator import TrialCountedGenerator, trials_in_snapshot


class _Counting(Searcher):
    def __init__(self) -> None:
        super().__init__(metric="loss", mode="min")
        self.asked = 0

    def suggest(self, trial_id: str) -> dict:
        self.asked += 1
        return {"x": self.asked}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        pass

    def save_to_dir(self, checkpoint_dir: str, session_str: str = "default") -> None:
        pass

    def restore_from_dir(self, checkpoint_dir: str) -> None:
        pass


def _snapshot(dirpath: Path, *, trials: int, counter: int, finished: bool = False, stamp: str = "2026-12-02_01-00-00") -> None:
    """One experiment state with ``trials`` trials beside a generator state that counted ``counter``."""
    (dirpath / f"experiment_state-{stamp}.json").write_text(json.dumps({"trial_data": [["{}", "{}"]] * trials}))
    gen = TuneSearchGenerator(ConcurrencyLimiter(_Counting(), max_concurrent=2))
    gen._counter, gen._total_samples, gen._finished = counter, 8, finished
    gen.save_to_dir(str(dirpath), session_str=stamp)


def _restored(dirpath: Path) -> TrialCountedGenerator:
    gen = TrialCountedGenerator(ConcurrencyLimiter(_Counting(), max_concurrent=2))
    gen.restore_from_dir(str(dirpath))
    return gen


@pytest.mark.parametrize("counter", [5, 6, 7], ids=["count older", "whole", "count newer"])
def test_the_count_is_the_trial_states_count(tmp_path: Path, counter: int) -> None:
    _snapshot(tmp_path, trials=6, counter=counter)
    gen = _restored(tmp_path)
    assert gen._counter == 6 and gen._total_samples == 8 and not gen.is_finished()


def test_the_newest_experiment_state_is_the_one_counted(tmp_path: Path) -> None:
    _snapshot(tmp_path, trials=3, counter=3, stamp="2026-12-02_01-00-00")
    _snapshot(tmp_path, trials=7, counter=6, stamp="2026-12-02_01-05-00")
    assert trials_in_snapshot(tmp_path) == 7 and _restored(tmp_path)._counter == 7


def test_a_count_that_had_reached_num_samples_does_not_end_a_shorter_list(tmp_path: Path) -> None:
    # The newer generator state counted all 8 and said "finished"; the trial states know 7.
    _snapshot(tmp_path, trials=7, counter=8, finished=True)
    gen = _restored(tmp_path)
    assert not gen.is_finished() and gen._counter == 7


def test_a_whole_list_of_num_samples_is_finished(tmp_path: Path) -> None:
    _snapshot(tmp_path, trials=8, counter=7)
    assert _restored(tmp_path).is_finished()


def test_without_an_experiment_state_the_saved_count_stays(tmp_path: Path) -> None:
    gen = TuneSearchGenerator(ConcurrencyLimiter(_Counting(), max_concurrent=2))
    gen._counter, gen._total_samples = 4, 8
    gen.save_to_dir(str(tmp_path), session_str="s")
    assert trials_in_snapshot(tmp_path) is None and _restored(tmp_path)._counter == 4


def test_the_tuner_uses_it(tmp_path: Path) -> None:
    from studies.spec.study import STUDIES_DIR, load_spec
    from studies.tune.tuner import build_tuner

    spec = load_spec(STUDIES_DIR / "mdn_ramp.yaml", smoke=True)
    (tmp_path / "r").mkdir()
    alg = build_tuner(spec, tmp_path / "r", None, max_concurrent=2)._local_tuner._tune_config.search_alg
    assert isinstance(alg, TrialCountedGenerator) and isinstance(alg, SearchGenerator)
    assert isinstance(alg.searcher, ConcurrencyLimiter) and alg.searcher.max_concurrent == 2


def test_the_concurrency_limiter_holds_only_the_trials_the_resume_runs(tmp_path: Path) -> None:
    """The generator's file is older than the trial list: trial b was live then, and has
    ended since. Kept live, it would hold one of the slots for good."""
    trial_data = [[json.dumps({"trial_id": tid, "status": status}), "{}"]
                  for tid, status in (("a", "TERMINATED"), ("b", "TERMINATED"), ("c", "RUNNING"), ("d", "ERROR"))]
    (tmp_path / "experiment_state-2026-12-02_01-00-00.json").write_text(json.dumps({"trial_data": trial_data}))
    old = TuneSearchGenerator(ConcurrencyLimiter(_Counting(), max_concurrent=2))
    old._total_samples = 8
    for tid in ("a", "b", "c"):
        old.searcher.suggest(tid)
    old.searcher.on_trial_complete("a", {"loss": 1.0})
    old._counter = 3
    old.save_to_dir(str(tmp_path), session_str="2026-12-02_01-00-00")
    gen = _restored(tmp_path)
    limiter = gen.searcher
    assert limiter.live_trials == {"c", "d"} and limiter.num_unfinished_live_trials == 2   # the resume runs c and d again
    limiter.on_trial_complete("c", {"loss": 1.0})
    assert limiter.suggest("e") is not None   # a slot is free again; with b kept live it would not be
