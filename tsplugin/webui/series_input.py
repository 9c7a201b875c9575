"""Series the web chat takes from uploaded CSV files, and the placeholders that stand for them.

No gradio or torch here: the web components (`tsplugin.webui.chat_panel`) call these functions and
show their errors. A CSV is read and cleaned exactly as `tsconvert` reads it (`converters.csvread`,
`converters.cleaning` with tsconvert's default policies): the value column is found by name
(case-insensitive, default `value`; several names give several series per file), rows are sorted by
the time column and gaps are interpolated. The messages are tsconvert's own, naming the file and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from tsplugin.processing.placeholders import PLACEHOLDER, count_placeholders

DEFAULT_VALUE_COLS = "value"
DEFAULT_TIME_COL = "timestamp"


class SeriesInputError(ValueError):
    """An uploaded file cannot give a series; the message names the file and the fix."""


@dataclass(frozen=True)
class NamedSeries:
    """One series as the chat shows it: where it came from and its values."""

    name: str  # "file.csv" (one value column) or "file.csv: column"
    values: tuple[float, ...]


def parse_columns(text: str | None) -> list[str]:
    """`"value, load"` -> ["value", "load"]; empty text means tsconvert's default (`value`)."""
    names = [part.strip() for part in (text or "").split(",") if part.strip()]
    return names or [DEFAULT_VALUE_COLS]


def read_uploads(
    paths: Sequence[str | Path], value_cols: str | None = DEFAULT_VALUE_COLS, time_col: str | None = DEFAULT_TIME_COL
) -> list[NamedSeries]:
    """One series per (file, value column), in upload order then column order."""
    from converters.cleaning import clean  # lazy: tsconvert's CSV reader (pyarrow), when a CSV is uploaded
    from converters.csvread import read_series
    from converters.errors import RejectError

    columns = parse_columns(value_cols)
    out: list[NamedSeries] = []
    for path in paths:
        path = Path(path)
        shown = path.name
        if path.suffix.lower() != ".csv":
            raise SeriesInputError(f"{shown} is not a .csv file. Upload one CSV per series (a header such as timestamp,value)")
        try:
            cleaned = clean(read_series(path, columns, (time_col or "").strip() or None, shown), shown)
        except RejectError as err:
            raise SeriesInputError(err.reject.message) from None
        for column, values in zip(columns, cleaned):
            name = shown if len(columns) == 1 else f"{shown}: {column}"
            out.append(NamedSeries(name, tuple(float(v) for v in values)))
    return out


def insert_placeholders(question: str, count: int) -> str:
    """Append `<ts><ts/>` until the question holds at least `count` placeholders (never removes any)."""
    missing = count - count_placeholders(question or "")
    if missing <= 0:
        return question
    text = (question or "").rstrip()
    return (text + " " if text else "") + " ".join([PLACEHOLDER] * missing)
