"""The fixed cost of one command: where the wall time of ``--smoke`` of a study
goes outside the trials' own work, and what ``--report``, ``--runs`` and
``--list`` cost.

    python benchmarks/fixed_cost.py [--study mdn_ramp] [--repeat 2] [--baseline REV]
                                    [--report-run STUDY_SPEC RUN_FOLDER]

With ``--baseline REV`` every command also runs from a git worktree of REV,
alternating with this checkout, so a change is measured side by side in one
run (same machine, same load). ``--report-run`` adds ``--report`` and
``--runs`` on an existing run folder, where the report's cost at scale shows
(benchmarks/README.md, section 8, makes a 1,000-trial one with scale.py's spec).

Phases of ``studies/run.py STUDY --smoke`` (from the command's start, the
run's ``run.json``, every trial's result records and the command's end):

- start-up: interpreter, imports, spec, data, the run folder (to ``started``);
- Ray start to the first trial's own clock (Ray, the Tuner and Optuna set-up,
  the first trial actor starting and importing its code);
- the trials: from the first trial's start to the last one's end; its part
  not covered by any trial (turnover between trials, the first epochs'
  one-off imports count as trial work here) is reported apart;
- after the trials: Tune's clean-up, Ray's shutdown, the report (tables,
  plots, HParams; ``stage_s.report`` in ``run.json``). Ray's shutdown runs while
  the report is written, so the report's line includes whatever CPU the two
  share; the other line is the rest.

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
from contextlib import nullcontext
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, machine, read_trials, worktree  # noqa: E402


def timed(args: list[str], root: Path = REPO) -> tuple[float, float, str]:
    """(start, end) wall-clock of ``root``'s ``studies/run.py ARGS``, and its output."""
    start = time.time()
    proc = subprocess.run([sys.executable, str(root / "studies" / "run.py"), *args], cwd=root, capture_output=True,
                          text=True)
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


def smoke_phases(study: str, storage: Path, name: str, root: Path = REPO) -> dict[str, float]:
    start, end, _ = timed([study, "--smoke", "--storage", str(storage), "--run", name], root)
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
            "after the trials: Tune clean-up, Ray shutdown (beside the report)": end - last - report_s,
            "  the report (tables, plots, HParams)": report_s,
            "outside trial work": (end - start) - work, "trial work (union of trial clocks)": work,
            "trials": float(len(trials))}


def measure(root: Path, study: str, repeat: int, report_run: list[str] | None) -> tuple[list[dict[str, float]], dict[str, list[float]]]:
    """The smoke phases and the other commands' times, ``repeat`` times, from ``root``'s checkout."""
    with tempfile.TemporaryDirectory(prefix="fixed-cost-") as tmp:
        storage = Path(tmp)
        runs = [smoke_phases(study, storage, f"s{i}", root) for i in range(repeat)]
        others: dict[str, list[float]] = {}
        for _ in range(repeat):
            commands = [("--report (smoke run)", [study, "--report", "--storage", str(storage), "--run", "s0"]),
                        ("--runs", [study, "--runs", "--storage", str(storage)]), ("--list", ["--list"])]
            if report_run:
                spec, run_dir = report_run[0], Path(report_run[1])
                storage_of_run, run = str(run_dir.parents[1]), run_dir.name
                commands += [(f"--report ({run})", [spec, "--report", "--storage", storage_of_run, "--run", run]),
                             (f"--runs ({run_dir.parent.name})", [spec, "--runs", "--storage", storage_of_run])]
            for label, args in commands:
                s, e, _ = timed(args, root)
                others.setdefault(label, []).append(e - s)
    return runs, others


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", default="mdn_ramp")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--baseline", metavar="REV", help="also measure this git revision, side by side")
    parser.add_argument("--report-run", nargs=2, metavar=("STUDY_SPEC", "RUN_FOLDER"),
                        help="also time --report and --runs on this existing run")
    args = parser.parse_args()
    print(machine())
    roots = {"this checkout": REPO}
    with worktree(args.baseline) if args.baseline else nullcontext() as base:
        if base is not None:
            roots = {f"baseline {args.baseline}": base, **roots}
        measured = {name: measure(root, args.study, args.repeat, args.report_run) for name, root in roots.items()}
    names = list(measured)
    first_runs = measured[names[0]][0]
    print(f"\n`python studies/run.py {args.study} --smoke` ({int(first_runs[0]['trials'])} trials), median of {args.repeat}:\n")
    print("| phase | " + " | ".join(f"{n} s" for n in names) + " |\n|---|" + "---:|" * len(names))
    for key in first_runs[0]:
        if key != "trials":
            print(f"| {key} | " + " | ".join(f"{statistics.median(r[key] for r in measured[n][0]):.1f}" for n in names) + " |")
    print("\n| command | " + " | ".join(f"{n} s" for n in names) + " |\n|---|" + "---:|" * len(names))
    for label in measured[names[0]][1]:
        print(f"| `{label}` | " + " | ".join(f"{statistics.median(measured[n][1][label]):.1f}" for n in names) + " |")


if __name__ == "__main__":
    main()
