"""Train one hand_pose config briefly and save its prediction grid:

    python -m studies.tools.hand_pose_grid --epochs 12 --out grid.png [--set crop_method=bbox ...]

A quick look at what the model predicts, outside a study (no Ray).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.config import ConfigError
from core.experiments.hand_pose import save_prediction_grid
from core.experiments.registry import get_family
from core.training import run_epochs
from studies.errors import UserError
from studies.runs.storage import DEFAULT_CACHE_DIR
from studies.spec.study import parse_override


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studies.tools.hand_pose_grid", description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("hand_pose_grid.png"))
    parser.add_argument("--cache-dir", type=Path, default=None, help="synthetic data cache (default: the CLI's)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (YAML value)")
    args = parser.parse_args(argv)
    family = get_family("hand_pose")
    try:
        values: dict[str, object] = {}
        for text in args.set:
            parts, value = parse_override(text)
            values[".".join(parts)] = value
        config = family.config({**values, "max_epochs": args.epochs})
    except (ConfigError, UserError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    arrays = family.load_data(config, data_path=None, cache_dir=args.cache_dir or DEFAULT_CACHE_DIR)
    experiment = family.experiment_cls(config, arrays)

    def show(epoch: int, metrics: dict[str, float]) -> None:
        print(f"epoch {epoch}: train_loss {metrics['train_loss']:.4f}  val_error_mm {metrics['val_error_mm']:.2f}", flush=True)

    run_epochs(experiment, max_epochs=args.epochs, on_epoch=show)
    print(f"wrote {save_prediction_grid(experiment, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
