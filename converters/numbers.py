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

This module holds the per-cell rules; numcols.py applies them to whole CSV columns (pyarrow kernels for
the plain cells, these parsers for the rest).
"""

from __future__ import annotations

import re
from typing import Callable

import numpy as np

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
