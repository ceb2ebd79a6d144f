"""The answer's claims as data: each one the very row of a table it cites.

Why data before words: a sentence rendered from a row cannot say more than the
row does, and a test (or a benchmark with exact truth) can check each claim
against its table, or against the truth, claim by claim.

Kinds, and what each asserts:

- ``difference``: ``level`` differs from ``reference`` in ``direction``
  ("better"/"worse") by ``estimate`` [``lo``, ``hi``] (level minus
  reference, the metric's units), with the mark ``mark`` ("*" or "**") of
  ``table``'s row. Under ``condition`` ({factor: level}) the difference is
  the one *within* that level of the other factor (an interaction said
  aloud), not the global one.
- ``no_difference``: no level of the factor differs from the reference at
  the table's correction level. A statement about the test, never "no effect".
- ``ranking``: ``factor`` has the largest main effect, separated from the
  next (``estimate``: the share of bootstrap refits that rank it first).
- ``no_ranking``: the importance ranking is not separated.
- ``declined``: the evidence cannot support a claim about ``factor``;
  ``text`` says why and which run would answer it.
- ``best``: the best measured config (a fact about one trial or a designed
  re-run, not a population claim).
- ``note``: anything else the reader needs (a smoke banner, where two kinds
  of evidence measure different things).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

KINDS = ("difference", "no_difference", "ranking", "no_ranking", "declined", "best", "note")
EVIDENCE = ("designed: leave-one-out", "designed: confirmation", "designed: screening", "modelled", "observed", "none")


@dataclass(frozen=True)
class Claim:
    kind: str
    evidence: str
    text: str                          # the sentence as the answer prints it (Markdown)
    factor: str | None = None
    rung: int | None = None            # the epoch the evidence is at
    level: str | None = None
    reference: str | None = None
    direction: str | None = None       # "better" | "worse" (level vs reference), for a difference
    estimate: float = math.nan
    lo: float = math.nan
    hi: float = math.nan
    mark: str = ""
    condition: dict[str, str] = field(default_factory=dict)
    table: str | None = None           # the file it cites, relative to the run folder
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"claim kind {self.kind!r} is not one of {KINDS}")
        if self.evidence not in EVIDENCE:
            raise ValueError(f"claim evidence {self.evidence!r} is not one of {EVIDENCE}")
        if self.kind == "difference" and self.direction not in ("better", "worse"):
            raise ValueError("a difference claim needs a direction, 'better' or 'worse'")
