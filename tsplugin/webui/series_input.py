"""Series the web chat takes from uploaded CSV files, and the placeholders that stand for them.

No gradio or torch here: the web components (`tsplugin.webui.chat_panel`) call these functions and
show their errors. A CSV is read and cleaned exactly as `tsconvert` reads it (`converters.csvread`,
`converters.cleaning` with tsconvert's default policies): the value column is found by name
(case-insensitive, default `value`; several names give several series per file), rows are sorted by
the time column and gaps are interpolated. The messages are tsconvert's own, naming the file and the fix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from tsplugin.processing.placeholders import PLACEHOLDER, count_placeholders

DEFAULT_VALUE_COLS = "value"
DEFAULT_TIME_COL = "timestamp"


# The page's fields for tsconvert's CSV options (labels of `tsplugin.webui.chat_panel`'s text boxes).
VALUE_FIELD = 'the "Value column(s)" field'
TIME_FIELD = 'the "Time column" field'
_PAGE_WORDING = (
    ("Pass --value-col with one of them", f"Type one of them in {VALUE_FIELD}"),
    ("--value-col", VALUE_FIELD),
    ("--time-col", TIME_FIELD),
)
_CLI_OPTION = re.compile(r"(?<![\w-])--[a-z][a-z-]+")


class SeriesInputError(ValueError):
    """An uploaded file cannot give a series; the message names the file and the fix."""


def page_message(text: str) -> str:
    """tsconvert's message (file, problem, fix) as the web page says it: its options become the page's
    fields; an option the page does not have is named as tsconvert's."""
    for cli, page in _PAGE_WORDING:
        text = text.replace(cli, page)
    if _CLI_OPTION.search(text):
        text += " (that option is tsconvert's: convert the CSV with tsconvert, or fix the file and upload it again)"
    return text


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
            raise SeriesInputError(page_message(err.reject.message)) from None
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
