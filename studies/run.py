"""Run a hyperparameter study: ``python studies/run.py mdn_ramp``.

See ``python studies/run.py --help`` and the README for every option.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `python studies/run.py` puts studies/ on sys.path, not the repository root;
# add the root so `studies`, `core` and `trainables` import without installing.
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from studies.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
