"""A report table as a LaTeX file that compiles with pdflatex and fits an
article page (``tables/<name>.tex``; the .md and .csv beside it are written
from the same table, unchanged by anything here).

What the file holds, and why:

- A comment header: the packages it needs (``booktabs`` always, ``array``
  for a wrapped column, ``graphicx`` only when a table can be fitted no other
  way), the page it was sized for, and the full caption (the .md's).
- A short caption on the page: the caption's first sentence, cut at a clause
  boundary to at most ``SHORT_CAPTION`` characters, plus the legend of the
  significance marks when the table has a ``sig`` column.
- Every cell escaped, ``[`` included (a row that starts with ``[`` after
  ``\\\\`` or ``\\midrule`` would be read as an optional argument).
- Numeric columns right-aligned (every non-empty cell a number, optionally
  with ``± x``, ``[lo, hi]``, ``/n``, ``%``, ``<``, or marks), text left.
- A ``params`` column of ``k=v, k=v`` strings split into one column per
  parameter (blank where a parameter is not set).
- A text column with a cell longer than ``NOTE_CHARS`` characters becomes
  notes: its cells hold a letter, its texts follow the table once each.
- The width: the widest layout that fits ``TEXTWIDTH_PT`` with no scaling,
  tried at normal size, then ``\\small``, then ``\\footnotesize`` with less
  space between columns; long text wraps in a ``p`` column; a table still too
  wide is split into blocks of columns, each repeating the row's key columns.
  Widths are estimated from Computer Modern's metrics (the default font).
- A table too tall for a page is split into several floats, the later ones
  captioned "(continued)".
"""

from __future__ import annotations

import itertools
import math
import re
import unicodedata
from dataclasses import dataclass, field

import pandas as pd

TEXTWIDTH_PT = 345.0      # \textwidth of the article class at 10pt, one column
TEXTHEIGHT_PT = 550.0     # its \textheight
SHORT_CAPTION = 200       # characters of the caption's first sentence on the page (the mark legend may follow)
NOTE_CHARS = 40           # a text column with a longer cell is set as notes below the table
_FIT = 0.98               # of the text width: what the width estimate may use (it is an estimate)
_MAX_HEIGHT = 0.9         # of the text height: what one float may use

# Widths in pt of Computer Modern Roman 10pt (cmr10, OT1), as the escaped forms typeset; \small and
# \footnotesize (cmr9, cmr8) are 0.925 and 0.85 of these within 0.5%.
_CMR10 = dict(zip(
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~ ",
    [5.0] * 10 + [5.0, 5.56, 4.44, 5.56, 4.44, 3.06, 5.0, 5.56, 2.78, 3.06, 5.28, 2.78, 8.33, 5.56, 5.0, 5.56, 5.28,
                  3.92, 3.94, 3.89, 5.56, 5.28, 7.22, 5.28, 5.28, 4.44]
    + [7.5, 7.08, 7.22, 7.64, 6.81, 6.53, 7.85, 7.5, 3.61, 5.14, 7.78, 6.25, 9.17, 7.5, 7.78, 6.81, 7.78, 7.36, 5.56,
       7.22, 7.5, 7.5, 10.28, 7.5, 7.5, 6.11]
    + [2.78, 5.0, 8.33, 5.0, 8.33, 7.78, 2.78, 3.89, 3.89, 5.0, 7.78, 2.78, 3.33, 2.78, 5.0, 2.78, 2.78, 7.78, 7.78,
       7.78, 4.72, 7.78, 2.78, 5.0, 2.78, 5.0, 3.6, 2.78, 5.0, 2.78, 5.0, 5.0, 3.33]))
_WIDE = {"±": 7.78, "—": 10.0, "–": 5.0, "−": 7.78, "×": 7.78, "≤": 7.78, "≥": 7.78, "≈": 7.78, "→": 10.0}
_MINUS_PT = 7.78          # $-$, a number's minus sign

_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
            "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}",
            ">": r"\textgreater{}", "|": r"\textbar{}", '"': "''", "[": "{[}",
            "±": r"$\pm$", "—": "---", "–": "--", "−": "$-$", "×": r"$\times$", "≤": r"$\leq$", "≥": r"$\geq$",
            "≈": r"$\approx$", "→": r"$\rightarrow$", "²": r"\textsuperscript{2}", "³": r"\textsuperscript{3}",
            "…": r"\dots{}", "“": "``", "”": "''", "‘": "`", "’": "'", "\u00a0": "~", "µ": r"$\mu$",
            "\t": " ", "\n": " ", "\r": " "}
_GREEK = re.compile(r"GREEK (SMALL|CAPITAL) LETTER (\w+)$")
_TEX_GREEK = {*"alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi pi rho sigma tau upsilon phi "
              "chi psi omega Gamma Delta Theta Lambda Xi Pi Sigma Upsilon Phi Psi Omega".split()}

_NUM = r"(?:[<>]?[-+−]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?%?|[-+]?inf|nan)"
_NUMERIC_CELL = re.compile(rf"{_NUM}(?: ± {_NUM}| \[{_NUM}, {_NUM}\]|/{_NUM})?(?: ?\*{{1,3}})?")
_MINUS = re.compile(r"(?<![\deE])[-−](?=[\d.]|inf)")
_PARAM_ITEM = re.compile(r"([A-Za-z_][\w.]*)=(.*)")
_PARAM_SPLIT = re.compile(r", (?=[A-Za-z_][\w.]*=)")
_BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*")
_SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?]\*\*))\s+(?=[A-Z`*])")
_MARK = re.compile(r"(?<!\*)(\*{1,2}) p_holm < (\d+(?:\.\d+)?)")


# ------------------------------------------------------------------ text

def latex_escape(text: str) -> str:
    """``text`` as LaTeX text for pdflatex's default (OT1) fonts: every special
    character escaped, ``[`` braced (never read as an optional argument), ``--``
    kept two hyphens, a character LaTeX cannot set as is replaced."""
    out = []
    text = str(text)
    for i, ch in enumerate(text):
        if ch == "-" and text[i + 1:i + 2] == "-":
            out.append("-{}")              # two hyphens stay two (TeX would set an en dash)
        elif ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 128 or ch.isalpha() and ord(ch) < 256:
            out.append(ch)
        else:
            out.append(_unusual(ch))
    return "".join(out)


def _unusual(ch: str) -> str:
    name = unicodedata.name(ch, "")
    greek = _GREEK.match(name)
    if greek:
        letter = greek.group(2).lower().replace("lamda", "lambda")
        letter = letter.capitalize() if greek.group(1) == "CAPITAL" else letter
        if letter in _TEX_GREEK:
            return f"$\\{letter}$"
    plain = unicodedata.normalize("NFKD", ch).encode("ascii", "ignore").decode()
    return latex_escape(plain) if plain else "?"


def _markdown_plain(markdown: str) -> str:
    """A Markdown caption's text: bold and code marks dropped (a legend's literal ``*`` kept)."""
    return _BOLD.sub(r"\1", markdown).replace("`", "")


def short_caption(markdown: str, *, marks: bool = True) -> str:
    """The caption shown on the page, as plain text: the first sentence (after any
    leading notice in bold, which follows it as its first clause), cut at a clause
    boundary outside parentheses to at most ``SHORT_CAPTION`` characters; then,
    with ``marks``, the legend of the significance marks the caption defines."""
    sentences, legend = _caption_parts(markdown, marks=marks)
    return " ".join(sentences + ([", ".join(legend) + "."] if legend else []))


def _caption_parts(markdown: str, *, marks: bool) -> tuple[list[str], list[str]]:
    """(the short caption's sentences, each ending in a full stop; the mark legend's items)."""
    sentences = [s.strip() for s in _SENTENCE_END.split(markdown.strip()) if s.strip()]
    notices = []
    while len(sentences) > 1 and _BOLD.fullmatch(sentences[0].rstrip()):
        notices.append(_clause(_markdown_plain(sentences.pop(0)), SHORT_CAPTION * 5 // 8))
    parts = [_clause(_markdown_plain(sentences[0]), SHORT_CAPTION)] if sentences else []
    parts = [p if p.endswith((".", "?", "!", "…")) else p + "." for p in parts + notices]
    legend = list(dict.fromkeys(f"{m} p_holm < {p}" for m, p in _MARK.findall(_markdown_plain(markdown))))
    return parts, legend if marks else []


def _clause(sentence: str, limit: int) -> str:
    """``sentence`` if short enough, else its head cut at a clause boundary outside
    parentheses within ``limit`` characters: the last ``;`` or ``—`` in its second
    half, else the last ``:`` there, else the last ``,`` there, else the last
    boundary of any kind; with none, at a word with an ellipsis."""
    sentence = sentence.strip()
    if len(sentence) <= limit:
        return sentence
    depth, found = 0, {}
    for i, ch in enumerate(sentence[:limit + 1]):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth = max(0, depth - 1)
        elif depth == 0 and ch in ",;:—" and i >= 24 and sentence[i + 1:i + 2] == " ":
            found[i] = {";": 0, "—": 0, ":": 1, ",": 2}[ch]
    late = [(strength, -i) for i, strength in found.items() if i >= limit // 2]
    cut = -min(late)[1] if late else max(found, default=0)
    if cut:
        return sentence[:cut].rstrip(" —")
    return sentence[:limit].rsplit(" ", 1)[0].rstrip(",;:") + "…"


# ------------------------------------------------------------------ columns

def numeric_cell(cell: str) -> bool:
    """A shown number: ``0.5``, ``-3e-05``, ``<0.001``, ``76.4%``, ``0.8 ± 0.1``,
    ``0.1 [-0.2, 0.3]``, ``3/3``, optionally followed by ``*`` marks."""
    return bool(_NUMERIC_CELL.fullmatch(cell.strip()))


def numeric_column(cells: list[str]) -> bool:
    """Right-aligned: every non-empty cell a number, and at least one."""
    filled = [c for c in cells if c.strip()]
    return bool(filled) and all(numeric_cell(c) for c in filled)


def _width(text: str, *, numeric: bool = False) -> float:
    """Width in pt at 10pt of ``text`` as ``_cell`` typesets it."""
    w = sum(_CMR10.get(ch, _WIDE.get(ch, 5.0)) for ch in text)
    if numeric:
        w += len(_MINUS.findall(text)) * (_MINUS_PT - _CMR10["-"])
    return w


def _cell(text: str, numeric: bool) -> str:
    if not numeric:
        return latex_escape(text)
    return "$-$".join(latex_escape(part) for part in _MINUS.split(text))


@dataclass
class _Column:
    header: str
    cells: list[str]
    numeric: bool
    group: str = ""              # a header over several columns: "params", or the shared head of "m mean", "m sd"
    notes: list[str] = field(default_factory=list)   # texts of a note column, in order of their letters


def _columns(shown: pd.DataFrame) -> list[_Column]:
    cols: list[_Column] = []
    for name in shown.columns:
        cells = ["" if pd.isna(v) else str(v) for v in shown[name]]
        split = _split_params(cells) if str(name) == "params" else None
        if split is not None:
            cols += [_Column(k, v, numeric_column(v), group="params") for k, v in split.items()]
        else:
            cols.append(_Column(str(name), cells, numeric_column(cells)))
    _group_by_head(cols)
    _drop_the_rows_name(cols)
    for i, c in enumerate(cols):
        if i and not c.numeric and max((len(x) for x in c.cells), default=0) > NOTE_CHARS:
            cols[i] = _as_notes(c)
    return cols


def _group_by_head(cols: list[_Column]) -> None:
    """Two or more neighbouring columns named ``<head> <what>`` with one head
    (``gen_jerk_ratio mean``, ``gen_jerk_ratio sd``) get the head as a group
    header over them, and ``<what>`` as their own."""
    heads = [c.header.rsplit(" ", 1)[0] if " " in c.header and not c.group else None for c in cols]
    i = 0
    while i < len(cols):
        j = i
        while j + 1 < len(cols) and heads[i] is not None and heads[j + 1] == heads[i]:
            j += 1
        if j > i:
            for c in cols[i:j + 1]:
                c.group, c.header = c.header.rsplit(" ", 1)
        i = j + 1


def _drop_the_rows_name(cols: list[_Column]) -> None:
    """In a text column of ``k=v`` cells where ``k`` is the row's first cell
    (leave-one-out: factor ``lr``, set to ``lr=0.001``), the cells show ``v``."""
    if not cols:
        return
    for c in cols[1:]:
        if c.numeric or c.group:
            continue
        stripped = [x[len(k) + 1:] if k and x.startswith(f"{k}=") else None for k, x in zip(cols[0].cells, c.cells)]
        if any(v is not None for v in stripped) and all(v is not None or "=" not in x
                                                         for v, x in zip(stripped, c.cells)):
            c.cells = [x if v is None else v for v, x in zip(stripped, c.cells)]
            c.numeric = numeric_column(c.cells)


def _split_params(cells: list[str]) -> dict[str, list[str]] | None:
    """``k=v, k=v`` cells as one column per key (first-seen order), or None if a cell is not of that form."""
    rows: list[dict[str, str]] = []
    for cell in cells:
        items = [_PARAM_ITEM.fullmatch(part) for part in _PARAM_SPLIT.split(cell)] if cell.strip() else []
        if not all(items):
            return None
        rows.append({m.group(1): m.group(2) for m in items if m})
    keys = list(dict.fromkeys(k for row in rows for k in row))
    return {k: [row.get(k, "") for row in rows] for k in keys} or None


def _as_notes(c: _Column) -> _Column:
    texts = list(dict.fromkeys(x for x in c.cells if x.strip()))
    letters = {t: _letter(i) for i, t in enumerate(texts)}
    return _Column(c.header, [f"({letters[x]})" if x.strip() else "" for x in c.cells], False, c.group, notes=texts)


def _letter(i: int) -> str:
    return chr(ord("a") + i) if i < 26 else _letter(i // 26 - 1) + chr(ord("a") + i % 26)


# ------------------------------------------------------------------ layout

@dataclass(frozen=True)
class _Size:
    command: str        # "" for \normalsize
    scale: float        # of cmr10's widths
    sep: float          # \tabcolsep, pt
    leading: float      # \baselineskip, pt


_SIZES = (_Size("", 1.0, 6.0, 12.0), _Size(r"\small", 0.925, 5.0, 11.0), _Size(r"\small", 0.925, 4.0, 11.0),
          _Size(r"\footnotesize", 0.85, 4.0, 9.5), _Size(r"\footnotesize", 0.85, 3.0, 9.5))


@dataclass(frozen=True)
class _Placed:
    index: int                # into the table's columns
    width: float              # content width, pt
    wrap: bool                # a p column of that width
    header: tuple[str, ...]   # header lines


def _header_lines(name: str, target: float, scale: float) -> tuple[str, ...]:
    """``name`` in lines of at most ``target`` pt where it can be: broken between
    words, and inside a word too wide alone after an underscore."""
    tokens: list[tuple[str, str]] = []        # (text, what joins it to the one before)
    for k, word in enumerate(name.split(" ")):
        parts = [t for t in re.split(r"(?<=_)", word) if t] if _width(word) * scale > target else [word]
        tokens += [(t, " " if k and not j else "") for j, t in enumerate(parts)]
    lines, line = [], ""
    for text, join in tokens:
        if line and _width(line + join + text) * scale > target:
            lines.append(line)
            line = text
        else:
            line = line + join + text if line else text
    return tuple([*lines, line])


def _measure(c: _Column, scale: float) -> tuple[float, float, tuple[str, ...]]:
    """(natural width, narrowest wrapped width or the natural one, header lines at the natural width)."""
    cells = max((_width(x, numeric=c.numeric) for x in c.cells), default=0.0) * scale
    head = _width(c.header) * scale
    pieces = [t for t in re.split(r"(?<=_)| ", c.header) if t]
    widest_piece = max((_width(t) for t in pieces), default=0.0) * scale
    lines: tuple[str, ...] = (c.header,)
    if head > 1.15 * cells + 6 and len(pieces) > 1:
        lines = _header_lines(c.header, max(cells, widest_piece, 0.55 * head), scale)
    natural = max(cells, max(_width(x) for x in lines) * scale)
    if c.numeric:
        return natural, natural, lines
    longest_word = max((_width(w) for x in c.cells for w in x.split()), default=0.0) * scale
    return natural, min(natural, max(longest_word, widest_piece, 80 * scale)), lines


def _runs(cols: list[_Column], indices: list[int]) -> list[list[int]]:
    """``indices`` in runs of neighbours with one group (a column without one: a run of its own)."""
    runs: list[list[int]] = []
    for i in indices:
        if runs and cols[i].group and cols[runs[-1][-1]].group == cols[i].group:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def _group_excess(cols: list[_Column], indices: list[int], widths: dict[int, float], size: _Size) -> float:
    """How much wider the group headers are than the columns they span, in all."""
    excess = 0.0
    for run in _runs(cols, indices):
        if cols[run[0]].group:
            span = sum(widths[i] for i in run) + 2 * size.sep * (len(run) - 1)
            excess += max(0.0, _width(cols[run[0]].group) * size.scale - span)
    return excess


def _fit(cols: list[_Column], indices: list[int], size: _Size, width: float) -> list[_Placed] | None:
    """The columns ``indices`` at ``size`` within ``width`` (text columns wrapped as
    needed), or None if they do not fit."""
    measured = {i: _measure(cols[i], size.scale) for i in indices}
    seps = 2 * size.sep * (len(indices) - 1)
    natural = sum(m[0] for m in measured.values()) + seps
    if natural + _group_excess(cols, indices, {i: m[0] for i, m in measured.items()}, size) <= width:
        return [_Placed(i, measured[i][0], False, measured[i][2]) for i in indices]
    wrappable = [i for i in indices if measured[i][1] < measured[i][0]]
    fixed = natural - sum(measured[i][0] for i in wrappable)
    room, need = width - fixed, sum(measured[i][1] for i in wrappable)
    if not wrappable or room < need:
        return None
    span = sum(measured[i][0] - measured[i][1] for i in wrappable)
    placed = []
    for i in indices:
        nat, narrow, lines = measured[i]
        if i in wrappable:
            w = math.floor(narrow + (nat - narrow) * (room - need) / span)
            placed.append(_Placed(i, w, True, _header_lines(cols[i].header, w, size.scale)))
        else:
            placed.append(_Placed(i, nat, False, lines))
    if _group_excess(cols, indices, {p.index: p.width for p in placed}, size) > 0:
        return None
    return placed


@dataclass(frozen=True)
class _Layout:
    size: _Size
    blocks: list[list[_Placed]]
    scaled: bool = False      # the last resort: \resizebox to the text width


def _layout(cols: list[_Column]) -> _Layout:
    """One block at the largest size that fits; else the fewest blocks, at the
    largest size that needs no more; else (nothing fits) scaled to the width."""
    width = TEXTWIDTH_PT * _FIT
    everything = list(range(len(cols)))
    for size in _SIZES:
        placed = _fit(cols, everything, size, width)
        if placed is not None:
            return _Layout(size, [placed])
    best: _Layout | None = None
    for size in _SIZES:
        blocks = _blocks(cols, size, width)
        if blocks is not None and (best is None or len(blocks) < len(best.blocks)):
            best = _Layout(size, blocks)
    if best is not None:
        return best
    size = _SIZES[-1]
    measured = [(i, _measure(cols[i], size.scale)) for i in everything]
    return _Layout(size, [[_Placed(i, m[0], False, m[2]) for i, m in measured]], scaled=True)


def _keys(cols: list[_Column], size: _Size, width: float) -> list[int]:
    """The columns that name a row, repeated in every block: the first, and the
    text columns right after it until the rows are told apart (up to three in
    all, within 0.6 of the width)."""
    keys, used = [0], _measure(cols[0], size.scale)[0]
    for i in range(1, min(3, len(cols) - 1)):
        w = _measure(cols[i], size.scale)[0] + 2 * size.sep
        named = list(zip(*(cols[k].cells for k in keys)))
        if len(set(named)) == len(named) or cols[i].numeric or cols[i].group or cols[i].notes \
                or used + w > 0.6 * width:
            break
        keys.append(i)
        used += w
    return keys


def _blocks(cols: list[_Column], size: _Size, width: float) -> list[list[_Placed]] | None:
    """Blocks of columns that each fit, each led by the key columns; a group's
    columns kept in one block where they fit, the parameters' ending theirs."""
    keys = _keys(cols, size, width)
    blocks: list[list[_Placed]] = []
    current: list[int] = []

    def close() -> None:
        nonlocal current
        if current:
            placed = _fit(cols, keys + current, size, width)
            assert placed is not None
            blocks.append(placed)
            current = []

    for run in _runs(cols, list(range(len(keys), len(cols)))):
        if _fit(cols, keys + current + run, size, width) is None:
            close()
            for i in run:                     # a run too wide alone: column by column
                if _fit(cols, keys + current + [i], size, width) is None:
                    close()
                    if _fit(cols, keys + [i], size, width) is None:
                        return None
                current.append(i)
        else:
            current += run
        if cols[run[0]].group == "params":
            close()
    close()
    return _balanced(cols, keys, size, width, blocks) if blocks else None


def _balanced(cols: list[_Column], keys: list[int], size: _Size, width: float,
              greedy: list[list[_Placed]]) -> list[list[_Placed]]:
    """As many blocks as ``greedy`` (which fills each in turn), the columns split
    between them where the widest block is narrowest: a split that keeps ``p``
    beside ``p_holm`` where the first block has room for one of them only."""
    runs = _runs(cols, list(range(len(keys), len(cols))))
    k = len(greedy)
    if not 1 < k <= 4 or any(_fit(cols, keys + r, size, width) is None for r in runs):
        return greedy
    forced = {j + 1 for j, r in enumerate(runs[:-1]) if cols[r[0]].group == "params"}

    def widest(blocks: list[list[_Placed]]) -> float:
        return max(sum(p.width for p in b) + 2 * size.sep * (len(b) - 1) for b in blocks)

    best, best_width = greedy, widest(greedy)
    for breaks in itertools.combinations(range(1, len(runs)), k - 1):
        if not forced <= set(breaks):
            continue
        edges = [0, *breaks, len(runs)]
        placed = [_fit(cols, keys + [i for r in runs[a:b] for i in r], size, width) for a, b in zip(edges, edges[1:])]
        if all(p is not None for p in placed):
            blocks = [p for p in placed if p is not None]
            if widest(blocks) < best_width - 0.5:
                best, best_width = blocks, widest(blocks)
    return best


# ------------------------------------------------------------------ rendering

def _spec(c: _Column, p: _Placed) -> str:
    if p.wrap:
        return rf">{{\raggedright\arraybackslash}}p{{{p.width:.0f}pt}}"
    return "r" if c.numeric else "l"


def _header_cell(c: _Column, p: _Placed) -> str:
    lines = [latex_escape(x) for x in p.header]
    if len(lines) == 1:
        return lines[0]
    return rf"\begin{{tabular}}[b]{{@{{}}{'r' if c.numeric else 'l'}@{{}}}}" + r"\\".join(lines) + r"\end{tabular}"


def _header_rows(cols: list[_Column], block: list[_Placed]) -> list[str]:
    """The header: a row of group headers over their columns (ruled under) where
    the block has any, then one of the columns' own."""
    rows = []
    runs = _runs(cols, [p.index for p in block])
    if any(cols[r[0]].group for r in runs):
        cells, rules, at = [], [], 1
        for r in runs:
            if cols[r[0]].group:
                cells.append(rf"\multicolumn{{{len(r)}}}{{c}}{{{latex_escape(cols[r[0]].group)}}}")
                rules.append(rf"\cmidrule(lr){{{at}-{at + len(r) - 1}}}")
            else:
                cells += [""] * len(r)
            at += len(r)
        rows += [" & ".join(cells) + r" \\", " ".join(rules)]
    rows.append(" & ".join(_header_cell(cols[p.index], p) for p in block) + r" \\")
    return rows


def _row_height(cols: list[_Column], layout: _Layout, row: int) -> float:
    """Estimated height in pt of one row over every block."""
    total = 0.0
    for block in layout.blocks:
        lines = 1
        for p in block:
            if p.wrap:
                w = _width(cols[p.index].cells[row]) * layout.size.scale
                lines = max(lines, math.ceil(1.15 * w / p.width) if p.width else 1)
        total += lines * layout.size.leading
    return total


def _chunks(cols: list[_Column], layout: _Layout, n_rows: int, caption_pt: float) -> list[range]:
    """Rows per float: as many as fit ``_MAX_HEIGHT`` of the page with the caption, headers and notes."""
    heads = sum((max(len(p.header) for p in b) + 2.5) * layout.size.leading + 6 for b in layout.blocks)
    notes = sum(1 + sum(math.ceil((_width(t) * layout.size.scale + 30) / TEXTWIDTH_PT) for t in c.notes)
                for c in cols if c.notes) * layout.size.leading
    room = TEXTHEIGHT_PT * _MAX_HEIGHT - caption_pt - heads - notes
    chunks, start, used = [], 0, 0.0
    for r in range(n_rows):
        h = _row_height(cols, layout, r)
        if r > start and used + h > room:
            chunks.append(range(start, r))
            start, used = r, 0.0
        used += h
    chunks.append(range(start, n_rows))
    return chunks


def _tabular(cols: list[_Column], block: list[_Placed], rows: range) -> list[str]:
    spec = "".join(_spec(cols[p.index], p) for p in block)
    out = [rf"\begin{{tabular}}{{@{{}}{spec}@{{}}}}", r"\toprule", *_header_rows(cols, block), r"\midrule"]
    for r in rows:
        out.append(" & ".join(_cell(cols[p.index].cells[r], cols[p.index].numeric) for p in block) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}"]
    return out


def _notes(cols: list[_Column]) -> list[str]:
    out = []
    for c in cols:
        if c.notes:
            out.append(rf"\emph{{{latex_escape(c.header)}}}:")
            out += [rf"\par\hangindent=1em ({_letter(i)})~{latex_escape(t)}" for i, t in enumerate(c.notes)]
    return out


def _comment(text: str, width: int = 100) -> list[str]:
    """``text`` as LaTeX comment lines (TeX's ``^^`` notation defused)."""
    lines, line = [], ""
    for w in text.replace("^^", "^ ^").split():
        if line and len(line) + 1 + len(w) > width - 4:
            lines.append(line)
            line = w
        else:
            line = f"{line} {w}" if line else w
    return [f"%   {x}" for x in [*lines, line] if x]


def latex_table(shown: pd.DataFrame, caption: str, label: str) -> str:
    """The .tex of a report table: ``shown`` (the display strings the .md shows),
    ``caption`` (Markdown: a short form goes on the page, all of it into the
    file's comment header), ``label`` (the ``\\label``)."""
    cols = _columns(shown)
    n_rows = len(shown)
    sentences, legend = _caption_parts(caption, marks=any(c.header == "sig" for c in cols))
    short = " ".join([latex_escape(x) for x in sentences]
                     + ([", ".join(rf"\mbox{{{latex_escape(x)}}}" for x in legend) + "."] if legend else []))
    if not cols:
        cols, n_rows = [_Column("", [], False)], 0
    layout = _layout(cols)
    caption_pt = 12.0 * math.ceil(_width(" ".join(sentences + legend)) / TEXTWIDTH_PT) + 14.0
    chunks = _chunks(cols, layout, n_rows, caption_pt)
    packages = ["booktabs"] + (["array"] if any(p.wrap for b in layout.blocks for p in b) else []) \
        + (["graphicx"] if layout.scaled else [])
    out = ["% A report table for pdflatex (studies/report/latex.py); its preamble needs:",
           *(rf"% needs \usepackage{{{p}}}" for p in packages),
           f"% Sized for a {TEXTWIDTH_PT:g}pt \\textwidth (article class, 10pt). The full caption (the .md's):",
           *_comment(_markdown_plain(caption))]
    for k, rows in enumerate(chunks):
        out += [r"\begin{table}", r"\centering"]
        if k:
            out += [r"\addtocounter{table}{-1}", rf"\caption{{{short} (continued)}}"]
        else:
            out += [rf"\caption{{{short}}}", rf"\label{{{re.sub(r'[^A-Za-z0-9:_.-]', '-', label)}}}"]
        out.append(r"\smallskip")
        if layout.size.command:
            out.append(layout.size.command)
        if layout.size.sep != 6.0:
            out.append(rf"\setlength{{\tabcolsep}}{{{layout.size.sep:g}pt}}")
        for b, block in enumerate(layout.blocks):
            if b:
                out += ["", r"\medskip"]
            body = _tabular(cols, block, rows)
            out += [r"\resizebox{\linewidth}{!}{%", *body, "}"] if layout.scaled else body
        notes = _notes(cols) if k == len(chunks) - 1 else []
        if notes:
            out += ["", r"\smallskip", r"{\raggedright", *notes, r"\par}"]
        out.append(r"\end{table}")
    return "\n".join(out) + "\n"
