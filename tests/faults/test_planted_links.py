"""--report on a run folder received from someone else (the README calls it safe there):
links planted in the report's folders are never followed, and the spec's text cannot add
lines of its own to the report. The attack as found: `tables/ablation.md` a link to the
victim's `~/.ssh/authorized_keys` and the spec's description holding a public key on a
line of its own; `--report` replaced the victim's file with one holding that key."""

from __future__ import annotations

import os
from pathlib import Path

from tests.conftest import run_cli
from tests.studies.report.test_report_files import write_run_folder

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPlantedPlantedPlantedPlantedPlanted attacker@elsewhere"


def _received_run(tmp_path: Path) -> Path:
    run_dir = tmp_path / "received" / "mdn_ramp" / "r1"
    write_run_folder(run_dir, per_shape=3, with_failed=False)
    spec = run_dir / "spec.yaml"
    lines = spec.read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("description:"))
    end = next(i for i in range(at + 1, len(lines)) if not lines[i].startswith("  "))   # the folded text's last line
    lines[at:end] = [f'description: "A study.\\n\\n{KEY}\\n\\nMore text."']
    spec.write_text("\n".join(lines) + "\n")
    return run_dir


def test_report_never_writes_through_a_planted_link(tmp_path: Path) -> None:
    run_dir = _received_run(tmp_path)
    victim = tmp_path / "home" / ".ssh" / "authorized_keys"
    victim.parent.mkdir(parents=True)
    victim.write_text("ssh-ed25519 AAAAmine me@here\n")
    (run_dir / "tables").mkdir()
    (run_dir / "tables" / "ablation.md").symlink_to(victim)
    (run_dir / "plots").mkdir()
    elsewhere = tmp_path / "elsewhere.png"
    elsewhere.write_bytes(b"mine")
    (run_dir / "plots" / "learning_curves.png").symlink_to(elsewhere)
    proc = run_cli("mdn_ramp", "--report", "--run", "r1", "--storage", str(tmp_path / "received"), timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert victim.read_text() == "ssh-ed25519 AAAAmine me@here\n" and elsewhere.read_bytes() == b"mine"
    report = run_dir / "tables" / "ablation.md"
    assert not report.is_symlink() and report.is_file() and not (run_dir / "plots" / "learning_curves.png").is_symlink()
    assert f"{run_dir / 'tables' / 'ablation.md'}: a symbolic link (to {victim})" in proc.stderr, proc.stderr
    # The spec's description is one line of the report: no line of it is the key alone.
    lines = report.read_text().splitlines()
    assert KEY not in lines and any(KEY in line and "A study." in line for line in lines)


def test_a_report_folder_that_is_a_link_is_refused(tmp_path: Path) -> None:
    run_dir = _received_run(tmp_path)
    target = tmp_path / "home" / ".config"
    target.mkdir(parents=True)
    os.symlink(target, run_dir / "tables")
    proc = run_cli("mdn_ramp", "--report", "--run", "r1", "--storage", str(tmp_path / "received"), timeout=300)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        f"error: {run_dir / 'tables'}: a symbolic link (to {target}); the report writes only into the run's own "
        "folders: remove the link, then run the command again"], proc.stderr
    assert not list(target.iterdir())
