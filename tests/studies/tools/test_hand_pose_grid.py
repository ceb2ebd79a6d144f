"""``python -m studies.tools.hand_pose_grid``: a trained config's prediction grid, and one-line errors."""

from __future__ import annotations

from studies.tools.hand_pose_grid import main

TINY = ["num_sequences=8", "frames_per_sequence=4", "channels=4", "hidden=16", "pca_dim=8", "val_fraction=0.25"]


def test_writes_the_grid(tmp_path, capsys):
    out = tmp_path / "grid.png"
    args = ["--epochs", "1", "--out", str(out), "--cache-dir", str(tmp_path)]
    assert main(args + [a for s in TINY for a in ("--set", s)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert "epoch 1: train_loss" in printed and f"wrote {out}" in printed


def test_a_bad_override_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "g.png"), "--set", "crop_method=sphere"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: `crop_method` is 'sphere'") and "\n" not in err
    assert not (tmp_path / "g.png").exists()
