"""A driver killed inside an Optuna write leaves optuna.db-journal: the resume's
check rolls it back instead of calling the file damaged, and a journal whose file
was moved away is never rolled into a rebuilt study."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from studies.runs.optuna_rebuild import set_aside_stale_journal
from studies.runs.run_folder import check_optuna_study

# A write big enough to spill into the file before it commits, then a kill: a "hot" journal.
KILLED_MID_WRITE = """
import os, sqlite3, sys
con = sqlite3.connect(sys.argv[1])
con.execute("PRAGMA cache_size=1")
con.execute(f"PRAGMA synchronous={sys.argv[2]}")
con.execute("BEGIN")
con.execute("CREATE TABLE filler(x TEXT)")
con.executemany("INSERT INTO filler VALUES (?)", [("x" * 200,) for _ in range(5000)])
con.execute("UPDATE studies SET study_name = 'overwritten'")
os._exit(9)
"""


def _study_killed_mid_write(db: Path, synchronous: str = "FULL") -> None:
    optuna.create_study(study_name="s", storage=f"sqlite:///{db}").optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    subprocess.run([sys.executable, "-c", KILLED_MID_WRITE, str(db), synchronous], check=False)
    journal = db.with_name(db.name + "-journal")
    assert journal.stat().st_size > 0
    try:   # what a read-only check saw: the file refused
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
            con.execute("PRAGMA quick_check").fetchone()
        raise AssertionError("a read-only open took a hot journal")
    except sqlite3.OperationalError:
        pass


@pytest.mark.parametrize("synchronous", ["FULL", "OFF"])   # OFF: how the driver's searcher writes
def test_a_hot_journal_is_rolled_back_not_called_damaged(tmp_path: Path, synchronous: str) -> None:
    db = tmp_path / "optuna.db"
    _study_killed_mid_write(db, synchronous)
    check_optuna_study(db, "s")   # passes: the interrupted write is rolled back
    assert not db.with_name("optuna.db-journal").exists()
    assert len(optuna.load_study(study_name="s", storage=f"sqlite:///{db}").trials) == 3


def test_a_journal_whose_file_was_moved_away_is_set_aside(tmp_path: Path) -> None:
    db = tmp_path / "optuna.db"
    _study_killed_mid_write(db)
    db.rename(tmp_path / "optuna.db.damaged")   # the user moves the file aside; the journal stays
    aside = set_aside_stale_journal(db)
    assert aside is not None and aside.exists() and not db.with_name("optuna.db-journal").exists()
    fresh = optuna.create_study(study_name="rebuilt", storage=f"sqlite:///{db}")
    fresh.add_trial(optuna.trial.create_trial(params={"x": 0.5}, distributions={"x": optuna.distributions.FloatDistribution(0, 1)},
                                              value=1.0))
    check_optuna_study(db, "rebuilt")
    assert len(optuna.load_study(study_name="rebuilt", storage=f"sqlite:///{db}").trials) == 1
    assert set_aside_stale_journal(db) is None   # nothing stale any more
