"""Run a hyperparameter study: ``python studies/run.py mdn_ramp``.

See ``python studies/run.py --help`` and the README for every option.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `python studies/run.py` puts studies/ on sys.path, not the repository root.
# Take studies/ off (its modules would shadow a user's own packages named
# `spec`, `errors`, `progress`, ...) and add the root, so `studies`, `core`
# and `trainables` import without installing.
_HERE = Path(__file__).resolve().parent
_ROOT = str(_HERE.parent)
sys.path[:] = [p for p in sys.path if not (p and Path(p).resolve() == _HERE)]
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from studies.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
