"""The fixed cost of one command: where the wall time of ``--smoke`` of a study
goes outside the trials' own work, and what ``--report``, ``--runs`` and
``--list`` cost.

    python benchmarks/fixed_cost.py [--study mdn_ramp] [--repeat 2]

Phases of ``studies/run.py STUDY --smoke`` (from the command's start, the
run's ``run.json``, every trial's result records and the command's end):

- start-up: interpreter, imports, spec, data, the run folder (to ``started``);
- Ray start to the first trial's own clock (Ray, the Tuner and Optuna set-up,
  the first trial actor starting and importing its code);
- the trials: from the first trial's start to the last one's end; its part
  not covered by any trial (turnover between trials, the first epochs'
  one-off imports count as trial work here) is reported apart;
- after the trials: Tune's clean-up, Ray's shutdown, the report (tables,
  plots, HParams; ``stage_s.report`` in ``run.json``).

"Outside trial work" is the whole wall time minus the time at least one
trial was running. Each command is run ``--repeat`` times; the table shows
the median.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, machine, read_trials  # noqa: E402

RUN_PY = REPO / "studies" / "run.py"


def timed(args: list[str]) -> tuple[float, float, str]:
    """(start, end) wall-clock of the command, and its output."""
    start = time.time()
    proc = subprocess.run([sys.executable, str(RUN_PY), *args], cwd=REPO, capture_output=True, text=True)
    end = time.time()
    if proc.returncode != 0:
        sys.exit(f"studies/run.py {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return start, end, proc.stdout


def covered(intervals: list[tuple[float, float]]) -> float:
    """Length of the union of the intervals."""
    total, reach = 0.0, float("-inf")
    for lo, hi in sorted(intervals):
        if hi > reach:
            total += hi - max(lo, reach)
            reach = hi
    return total


def smoke_phases(study: str, storage: Path, name: str) -> dict[str, float]:
    start, end, _ = timed([study, "--smoke", "--storage", str(storage), "--run", name])
    run_dir = storage / study / name
    info = json.loads((run_dir / "run.json").read_text())
    trials = read_trials(run_dir)
    first, last = min(t.start for t in trials), max(t.end for t in trials)
    work = covered([(t.start, t.end) for t in trials])
    report_s = float(info.get("stage_s", {}).get("report", 0.0))
    return {"whole command": end - start, "start-up (imports, spec, data, run folder)": info["started"] - start,
            "Ray start to the first trial's clock": first - info["started"],
            "trials: first start to last end": last - first,
            "  of which no trial running (turnover)": (last - first) - work,
            "after the trials: Tune clean-up, Ray shutdown": end - last - report_s,
            "  the report (tables, plots, HParams)": report_s,
            "outside trial work": (end - start) - work, "trial work (union of trial clocks)": work,
            "trials": float(len(trials))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", default="mdn_ramp")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory(prefix="fixed-cost-") as tmp:
        storage = Path(tmp)
        runs = [smoke_phases(args.study, storage, f"s{i}") for i in range(args.repeat)]
        others: dict[str, list[float]] = {"--report": [], "--runs": [], "--list": []}
        for _ in range(args.repeat):
            for flag, extra in (("--report", ["--storage", str(storage), "--run", "s0"]), ("--runs", ["--storage", str(storage)]),
                                ("--list", [])):
                s, e, _ = timed([args.study, flag, *extra] if flag != "--list" else [flag])
                others[flag].append(e - s)
    print(f"\n`python studies/run.py {args.study} --smoke` ({int(runs[0]['trials'])} trials), median of {args.repeat}:\n")
    print("| phase | s |\n|---|---:|")
    for key in runs[0]:
        if key != "trials":
            print(f"| {key} | {statistics.median(r[key] for r in runs):.1f} |")
    print("\n| command | s |\n|---|---:|")
    for flag, times in others.items():
        print(f"| `{flag}` | {statistics.median(times):.1f} |")


if __name__ == "__main__":
    main()
