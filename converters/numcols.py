"""Number formats over whole pyarrow string columns: the CSV reader's slow path (some cells are text),
with the rules of numbers.py and memory bounded by the column, not by Python objects per cell.

Design choices:
- A cell that plainly is a finite number (``[+-]digits[.digits][e±dd]``, at most 300 digits) is
  classified and converted by pyarrow kernels (regex match, cast); those are nearly all cells. Only the
  rest (``Bad Input``, ``1,234.5``, ``NaN``) go through numbers.py's per-cell parsers, in slices of
  ``SLICE`` cells, so a 10-million-row file never becomes 10 million Python strings.
- Detection and messages are those of numbers.py (``choose`` mirrors its rules cell for cell: the first
  misfit in column-then-row order, the same cells quoted), so a file reads the same as before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .errors import RejectError
from .numbers import (
    _DOT_GROUPS,
    DETECTION_ORDER,
    NUMBER_FORMATS,
    _cell,
    _numeric_looking,
    _plain,
)

SLICE = 1 << 16
# Finite by construction: at most 200 integer digits and a two-digit exponent stay below 1e300.
_PLAIN = r"^[+-]?(?:[0-9]{1,200}\.?[0-9]{0,200}|\.[0-9]{1,200})(?:[eE][+-]?[0-9]{1,2})?$"
_DOT_GROUPS_RE = "^" + _DOT_GROUPS.pattern + "$"

Cell = tuple[int, int, str]  # (column position, data row from 1, stripped text): ordered as numbers.py scans


@dataclass
class _Column:
    name: str
    trimmed: pa.Array          # stripped cells (null where the CSV had none)
    fast: np.ndarray           # bool: a plain finite number, converted by pyarrow
    rest: np.ndarray           # int64 row indices (from 0) of the other non-blank, non-null-text cells
    blank: int = 0             # empty / null-text cells (missing)


@dataclass
class _Scan:
    """What numbers.choose_number_format looks at, gathered column by column."""

    first_numeric: Cell | None = None
    first_comma: Cell | None = None
    first_plain_ok: Cell | None = None       # numeric, read by plain, no comma
    first_plain_bad: Cell | None = None      # numeric, not read by plain
    misfit: dict[str, Cell | None] = field(default_factory=lambda: {f: None for f in DETECTION_ORDER})


def _min(a: Cell | None, b: Cell | None) -> Cell | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def columns(cols: dict[str, pa.ChunkedArray], null_text: list[str]) -> list[_Column]:
    """Classify every cell of the value columns with pyarrow kernels."""
    nulls = pa.array(null_text, pa.string())
    out = []
    for name, col in cols.items():
        col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
        if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
            col = pc.cast(col, pa.string())
        trimmed = pc.utf8_trim_whitespace(col)
        missing = pc.fill_null(pc.or_(pc.is_in(trimmed, value_set=nulls), pc.equal(trimmed, "")), True)
        fast = pc.and_(pc.fill_null(pc.match_substring_regex(trimmed, _PLAIN), False), pc.invert(missing))
        rest = pc.invert(pc.or_(missing, fast))
        out.append(_Column(name, trimmed, _bools(fast), pc.indices_nonzero(rest).to_numpy(zero_copy_only=False).astype(np.int64),
                           int(pc.sum(missing).as_py() or 0)))
    return out


def _bools(arr: pa.Array) -> np.ndarray:
    return arr.to_numpy(zero_copy_only=False).astype(bool, copy=False)


def _rest_cells(c: _Column) -> Iterator[tuple[int, str]]:
    """(row index from 0, stripped text) of the cells pyarrow did not convert, a slice at a time."""
    for start in range(0, len(c.rest), SLICE):
        idx = c.rest[start:start + SLICE]
        yield from zip(idx.tolist(), c.trimmed.take(pa.array(idx)).to_pylist())


def _scan(cols: list[_Column]) -> _Scan:
    scan = _Scan()
    for pos, c in enumerate(cols):
        fast_rows = np.flatnonzero(c.fast)
        if len(fast_rows):
            first = (pos, int(fast_rows[0]) + 1, c.trimmed[int(fast_rows[0])].as_py())
            scan.first_numeric = _min(scan.first_numeric, first)
            scan.first_plain_ok = _min(scan.first_plain_ok, first)
            # decimal-comma reads a plain cell with a point only as point groups (1.234 = 1234)
            dotted = pc.and_(pc.match_substring(c.trimmed, "."), pc.invert(pc.match_substring_regex(c.trimmed, _DOT_GROUPS_RE)))
            bad = np.flatnonzero(c.fast & _bools(pc.fill_null(dotted, False)))
            if len(bad):
                cell = (pos, int(bad[0]) + 1, c.trimmed[int(bad[0])].as_py())
                scan.misfit["decimal-comma"] = _min(scan.misfit["decimal-comma"], cell)
        for row, s in _rest_cells(c):
            if not _numeric_looking(s):
                continue
            cell = (pos, row + 1, s)
            scan.first_numeric = _min(scan.first_numeric, cell)
            if "," in s:
                scan.first_comma = _min(scan.first_comma, cell)
            if _plain(s) is None:
                scan.first_plain_bad = _min(scan.first_plain_bad, cell)
            elif "," not in s:
                scan.first_plain_ok = _min(scan.first_plain_ok, cell)
            for fmt in DETECTION_ORDER:
                if NUMBER_FORMATS.get(fmt)(s) is None:
                    scan.misfit[fmt] = _min(scan.misfit[fmt], cell)
    return scan


def choose(cols: list[_Column], requested: str, shown: str) -> str:
    """numbers.py's detection over classified columns; RejectError when no one format fits."""
    scan = _scan(cols)
    names = [c.name for c in cols]
    candidates = [requested] if requested != "auto" else list(DETECTION_ORDER)
    for name in candidates:
        misfit = scan.misfit.get(name) if name in scan.misfit else _explicit_misfit(cols, name)
        if misfit is None:
            if requested == "auto" and name != "plain":
                others = [o for o in DETECTION_ORDER[1:] if o != name and scan.misfit[o] is None]
                if others:
                    col, row, s = scan.first_comma or scan.first_numeric  # type: ignore[misc]
                    raise RejectError(
                        "ambiguous_number_format",
                        f"{shown}: column {names[col]!r} data row {row}: {s!r} reads as {name} or {others[0]} and no cell tells "
                        f"them apart. Pass --number-format {name} or --number-format {others[0]}",
                    )
            return name
        if requested != "auto":
            col, row, s = misfit
            raise RejectError(
                "mixed_number_format",
                f"{shown}: column {names[col]!r} data row {row}: {s!r} is a number but not in --number-format {requested}. "
                "Fix the cell or pass the file's --number-format (auto detects it)",
            )
    bad, good = scan.first_plain_bad, scan.first_plain_ok
    if bad is None:  # cannot happen: plain misfits are exactly the numeric cells plain does not read
        raise RuntimeError("no format fits but every numeric cell reads as plain")
    other = f" while data row {good[1]} has {good[2]!r}" if good else ""
    raise RejectError(
        "mixed_number_format",
        f"{shown}: column {names[bad[0]]!r} mixes number formats: data row {bad[1]} has {bad[2]!r}{other}. "
        "Write every number the same way, or pass --number-format to say which one is meant",
    )


def _explicit_misfit(cols: list[_Column], name: str) -> Cell | None:  # a format registered beyond DETECTION_ORDER
    parse = NUMBER_FORMATS.get(name)
    for pos, c in enumerate(cols):
        for row in np.flatnonzero(c.fast).tolist():
            s = c.trimmed[row].as_py()
            if parse(s) is None:
                return pos, row + 1, s
        for row, s in _rest_cells(c):
            if _numeric_looking(s) and parse(s) is None:
                return pos, row + 1, s
    return None


def values(c: _Column, fmt: str, missing: dict[str, int]) -> np.ndarray:
    """The column as float64 in format ``fmt`` (NaN = missing, counted by kind in ``missing``)."""
    text = c.trimmed
    if fmt == "decimal-comma":
        text = pc.replace_substring(text, ".", "")  # only point groups reach here (other points are misfits)
    elif fmt not in ("plain", "thousands-comma"):  # a registered format without a fast path: every cell per cell
        c = _Column(c.name, c.trimmed, np.zeros(len(c.fast), bool), np.sort(np.concatenate([np.flatnonzero(c.fast), c.rest])),
                    c.blank)
    out = pc.cast(pc.if_else(pa.array(c.fast), text, pa.scalar(None, pa.string())), pa.float64())
    arr = np.array(pc.fill_null(out, np.nan).to_numpy(zero_copy_only=False), dtype=np.float64)
    if c.blank:
        missing["empty_or_nan"] = missing.get("empty_or_nan", 0) + c.blank
    parse = NUMBER_FORMATS.get(fmt)
    for row, s in _rest_cells(c):
        arr[row] = _cell(s, parse, missing, set())
    return arr
