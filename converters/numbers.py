"""Number formats of CSV cells: detected per file, or set with --number-format; never half-applied.

Formats (a registry, like every extension point):
- ``plain``: ``1234.5`` (what Python's float() reads; the default whenever every cell fits it).
- ``thousands-comma``: ``1,234.5`` (comma groups of three digits, point decimals); ``1234.5`` fits too.
- ``decimal-comma``: ``1.234,5`` or ``1234,5`` (point groups of three digits, comma decimals).

Detection (``auto``) looks at every numeric-looking cell of the file's value columns together: the
first format that reads all of them is used for the whole file (``plain`` first, so files that read
before read the same). When a cell fits one format and another cell does not, the file mixes
formats and the record is rejected, naming both cells; when only ambiguous cells (``1,234``) decide,
the record is rejected asking for --number-format. Cells that are not numbers in any format
("Bad Input", "") stay missing values, handled by --missing as before. With an explicit format a
numeric-looking cell that does not fit it is an error too, never interpolated over.
"""

from __future__ import annotations

import re
from typing import Callable, Iterable

import numpy as np

from .errors import RejectError
from .registry import Registry

# A cell parser returns the value, or None when the cell is not a number in that format.
CellParser = Callable[[str], "float | None"]
NUMBER_FORMATS: Registry[CellParser] = Registry("number format")

_THOUSANDS_COMMA = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d*)?")
_DECIMAL_COMMA = re.compile(r"[+-]?(?:\d{1,3}(?:\.\d{3})+|\d*),\d+")
_DOT_GROUPS = re.compile(r"[+-]?\d{1,3}(?:\.\d{3})+")


def _plain(s: str) -> float | None:
    if "_" in s:  # float() accepts "1_0"; a CSV number does not
        return None
    try:
        return float(s)
    except ValueError:
        return None


def _thousands_comma(s: str) -> float | None:
    if "," not in s:
        return _plain(s)
    return float(s.replace(",", "")) if _THOUSANDS_COMMA.fullmatch(s) else None


def _decimal_comma(s: str) -> float | None:
    if "," in s:
        return float(s.replace(".", "").replace(",", ".")) if _DECIMAL_COMMA.fullmatch(s) else None
    if "." in s:
        return float(s.replace(".", "")) if _DOT_GROUPS.fullmatch(s) else None
    return _plain(s)


NUMBER_FORMATS.register("plain", _plain)
NUMBER_FORMATS.register("thousands-comma", _thousands_comma)
NUMBER_FORMATS.register("decimal-comma", _decimal_comma)
DETECTION_ORDER = ("plain", "thousands-comma", "decimal-comma")


def get_number_format(name: str) -> CellParser | None:
    """The parser of a format (None for ``auto``); unknown names list the valid ones."""
    if name == "auto":
        return None
    return NUMBER_FORMATS.get(name)


def _numeric_looking(s: str) -> bool:
    """A finite number in at least one format (NaN/inf spellings count as missing, as before)."""
    for name in DETECTION_ORDER:
        v = NUMBER_FORMATS.get(name)(s)
        if v is not None and np.isfinite(v):
            return True
    return False


def choose_number_format(columns: dict[str, list[str | None]], requested: str, shown: str) -> str:
    """The one format for this file's value cells (see the module docstring); RejectError when none fits."""
    cells = [(col, row, s.strip()) for col, strings in columns.items() for row, s in enumerate(strings, start=1)
             if s is not None and s.strip()]
    numeric = [c for c in cells if _numeric_looking(c[2])]
    candidates = [requested] if requested != "auto" else list(DETECTION_ORDER)
    for name in candidates:
        parse = NUMBER_FORMATS.get(name)
        misfit = next((c for c in numeric if parse(c[2]) is None), None)
        if misfit is None:
            if requested == "auto" and name != "plain":
                # Another format reading every cell as well means the cells cannot tell them apart.
                others = [o for o in DETECTION_ORDER[1:] if o != name
                          and all(NUMBER_FORMATS.get(o)(c[2]) is not None for c in numeric)]
                if others:
                    col, row, s = next((c for c in numeric if "," in c[2]), numeric[0])
                    raise RejectError(
                        "ambiguous_number_format",
                        f"{shown}: column {col!r} data row {row}: {s!r} reads as {name} or {others[0]} and no cell tells "
                        f"them apart. Pass --number-format {name} or --number-format {others[0]}",
                    )
            return name
        if requested != "auto":
            col, row, s = misfit
            raise RejectError(
                "mixed_number_format",
                f"{shown}: column {col!r} data row {row}: {s!r} is a number but not in --number-format {requested}. "
                "Fix the cell or pass the file's --number-format (auto detects it)",
            )
    # No format reads every numeric cell: show a cell that plain reads and one it does not.
    bad = next(c for c in numeric if _plain(c[2]) is None)
    good = next((c for c in numeric if _plain(c[2]) is not None and "," not in c[2]), None)
    other = f" while data row {good[1]} has {good[2]!r}" if good else ""
    raise RejectError(
        "mixed_number_format",
        f"{shown}: column {bad[0]!r} mixes number formats: data row {bad[1]} has {bad[2]!r}{other}. "
        "Write every number the same way, or pass --number-format to say which one is meant",
    )


def parse_cells(strings: Iterable[str | None], fmt: str, missing: dict[str, int], null_text: Iterable[str]) -> np.ndarray:
    """Cells -> float64 in format ``fmt``; NaN for missing, counted by kind in ``missing``."""
    parse = NUMBER_FORMATS.get(fmt)
    nulls = set(null_text)
    strings = list(strings)
    out = np.empty(len(strings), dtype=np.float64)
    for i, s in enumerate(strings):
        out[i] = _cell(s, parse, missing, nulls)
    return out


def _cell(s: str | None, parse: CellParser, missing: dict[str, int], nulls: set[str]) -> float:
    if s is None or s.strip() in nulls:
        missing["empty_or_nan"] = missing.get("empty_or_nan", 0) + 1
        return np.nan
    v = parse(s.strip()) if parse is not _plain else parse(s)
    if v is None:
        missing["non_numeric"] = missing.get("non_numeric", 0) + 1
        return np.nan
    if not np.isfinite(v):
        key = "infinite" if np.isinf(v) else "empty_or_nan"
        missing[key] = missing.get(key, 0) + 1
        return np.nan
    return v
