"""Read one series CSV with pyarrow: detect encoding and delimiter, find columns by name.

Returns the value columns as float64 with non-numbers turned into NaN (counted by kind, the
cleaning step decides what to do with them) and the timestamps as int64 when they parse.
"""

from __future__ import annotations

import codecs
import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from . import numcols
from .errors import InputError, RejectError
from .numbers import get_number_format
from .safeio import ReadLimits, read_named_file

AUTO_ENCODING = "auto"  # UTF-8, or GBK when confirmed (see _decode)
DELIMITERS = (",", ";", "\t")
_LINE_END = re.compile(r"\r\n|\r|\n")
NULL_TEXT = ["", "NaN", "nan", "NAN", "NA", "N/A", "n/a", "null", "NULL", "None", "none"]


@dataclass
class RawSeries:
    """What was read from one CSV, before cleaning."""

    values: list[np.ndarray]                 # one float64 array per value column; NaN = missing
    times: np.ndarray | None                 # int64 timestamps (or None: no usable time column)
    missing: dict[str, int] = field(default_factory=dict)  # kind -> cells
    notes: list[str] = field(default_factory=list)


def norm_name(name: str) -> str:
    """Column names match ignoring case, surrounding whitespace and a BOM."""
    return name.replace("\ufeff", "").strip().casefold()


def check_value_cols(value_cols: tuple[str, ...] | list[str]) -> None:
    """A usage error (InputError, exit 2) when --value-col names a column twice (case, space and BOM
    insensitive, as columns match) or names nothing: every record would fail the same way."""
    seen: dict[str, str] = {}
    for col in value_cols:
        key = norm_name(col)
        if not key:
            raise InputError(f"--value-col {col!r} is empty. Pass the name of a value column")
        if key in seen:
            raise InputError(f"--value-col {col!r} names the same column as --value-col {seen[key]!r} (names match ignoring "
                             "case and spaces). Pass each column once")
        seen[key] = col


def check_encoding(encoding: str) -> str:
    """The --encoding value as given ('auto' or a codec Python knows), else a usage error naming the choices."""
    if encoding == AUTO_ENCODING:
        return encoding
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise InputError(f"--encoding {encoding!r}: unknown encoding. Pass auto, utf-8, gbk, cp1252, latin-1, ...") from None
    return encoding


def _decode(data: bytes, shown: str, encoding: str = AUTO_ENCODING) -> tuple[str, str]:
    """The CSV's text and the encoding used. ``auto`` takes only what it can confirm: UTF-8, or GBK when
    every non-ASCII pair is a GB2312 character (Latin-1 text such as '°C' never is); anything else is
    a rejection that says which --encoding to pass."""
    if data.startswith(codecs.BOM_UTF8):
        data = data[3:]
    if encoding != AUTO_ENCODING:
        try:
            return data.decode(encoding), encoding
        except UnicodeDecodeError as exc:
            raise RejectError("unreadable_csv", f"{shown}: not {encoding} text ({_where(data, exc)}). Pass the file's "
                              "--encoding or re-save the CSV as UTF-8") from None
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as exc:
        first = exc
    try:
        data.decode("gb2312")
        return data.decode("gbk"), "gbk"
    except UnicodeDecodeError:
        pass
    raise RejectError(
        "unreadable_csv",
        f"{shown}: not UTF-8 text ({_where(data, first)}) and not confirmably GBK. Pass its encoding: --encoding cp1252 "
        "(or latin-1) for Western European text such as '°C', --encoding gbk for Chinese; or re-save the CSV as UTF-8",
    )


def _where(data: bytes, exc: UnicodeDecodeError) -> str:
    line = data.count(b"\n", 0, exc.start) + 1
    return f"byte 0x{data[exc.start]:02x} on line {line}"


def _sniff_delimiter(header: str) -> str:
    counts = {d: header.count(d) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


def read_series(path: Path, value_cols: list[str], time_col: str | None, shown: str, *, data: bytes | None = None,
                number_format: str = "auto", limits: ReadLimits | None = None, encoding: str = AUTO_ENCODING) -> RawSeries:
    """Read one CSV; ``shown`` is how the file is named in messages (relative to --csv-dir).

    ``data`` is the file's bytes when the caller already read them (tsconvert reads inside --csv-dir
    with :func:`converters.safeio.read_confined`); otherwise ``path`` is a file the user named and is
    read with :func:`converters.safeio.read_named_file` (regular file only, never blocking, size limit).
    """
    if data is None:
        data = read_named_file(path, shown, limits or ReadLimits())
    get_number_format(number_format)  # unknown names list the valid ones
    text, enc = _decode(data, shown, encoding)
    header_line = _LINE_END.split(text, 1)[0]  # CR, LF or CRLF, like the CSV parser
    if not header_line.strip():
        raise RejectError("empty_series", f"{shown} is empty (no header line). Export the series with a header such as timestamp,value")
    delim = _sniff_delimiter(header_line)
    header = next(csv.reader([header_line], delimiter=delim))
    by_norm: dict[str, list[int]] = {}
    for i, raw_name in enumerate(header):
        by_norm.setdefault(norm_name(raw_name), []).append(i)
    wanted = []
    for col in value_cols:
        found = by_norm.get(norm_name(col))
        if found is None:
            raise RejectError(
                "missing_value_column",
                f"{shown} has no column {col!r} (columns: {_list_columns(header)}). Pass --value-col with one of them",
            )
        if len(found) > 1:
            raise _ambiguous(shown, col, found, header, "--value-col")
        wanted.append(header[found[0]])
    time_raw = None
    if time_col and norm_name(time_col) in by_norm:
        found = by_norm[norm_name(time_col)]
        if len(found) > 1:
            raise _ambiguous(shown, time_col, found, header, "--time-col")
        time_raw = header[found[0]]
    if enc != "utf-8" or data.startswith(b"\xef\xbb\xbf"):
        data = text.encode("utf-8")
    include = wanted + ([time_raw] if time_raw is not None and time_raw not in wanted else [])
    as_text = number_format not in ("auto", "plain")
    table = _read_table(data, delim, include, wanted, shown, as_text)
    raw = RawSeries(values=[], times=None)
    cols = {c: table.column(c) for c in wanted}
    if any(pa.types.is_string(c.type) or pa.types.is_large_string(c.type) for c in cols.values()):
        classified = numcols.columns(cols, NULL_TEXT)  # columnar: no Python object per cell
        fmt = numcols.choose(classified, number_format, shown)
        if fmt != "plain":
            raw.notes.append(f"number_format_{fmt.replace('-', '_')}")
        for c in classified:
            raw.values.append(numcols.values(c, fmt, raw.missing))
    else:
        for col in wanted:
            raw.values.append(_to_float(cols[col], raw.missing))
    if time_raw is not None:
        raw.times = _to_times(table.column(time_raw), raw.notes)
    elif time_col:
        raw.notes.append("no_time_column")
    return raw


def _list_columns(header: list[str], limit: int = 20, width: int = 40) -> str:
    """The header's names for a message, bounded (a binary file's first line can be anything)."""
    names = [repr(h.strip() if len(h.strip()) <= width else h.strip()[:width] + "...") for h in header[:limit]]
    more = f", ... ({len(header) - limit} more)" if len(header) > limit else ""
    return ", ".join(names) + more


def _ambiguous(shown: str, col: str, found: list[int], header: list[str], option: str) -> RejectError:
    where = ", ".join(f"{i + 1} ({header[i].strip()!r})" for i in found)
    return RejectError(
        "ambiguous_column",
        f"{shown}: {len(found)} columns match {col!r}: columns {where}. Rename one in the CSV so {option} names exactly one",
    )


def _read_table(data: bytes, delim: str, include: list[str], wanted: list[str], shown: str, as_text: bool = False) -> pa.Table:
    # 256 KiB blocks: a ~140 KB series file is one block; pyarrow's 1 MiB default costs ~30% more CPU here.
    read = pacsv.ReadOptions(use_threads=False, block_size=1 << 18)
    parse = pacsv.ParseOptions(delimiter=delim, newlines_in_values=False)
    try:
        if as_text:  # an explicit --number-format: every cell goes through its parser
            raise pa.ArrowInvalid("conversion error (number format given)")
        conv = pacsv.ConvertOptions(
            include_columns=include,
            column_types={c: pa.float64() for c in wanted},
            null_values=NULL_TEXT,
            strings_can_be_null=True,
        )
        return pacsv.read_csv(pa.BufferReader(data), read_options=read, parse_options=parse, convert_options=conv)
    except pa.ArrowInvalid as exc:
        if "conversion error" not in str(exc):
            raise RejectError("unreadable_csv", f"{shown}: {_short(exc)}. Fix the CSV (every row needs the header's columns)") from None
    # Some cells are text ("Bad Input", "I/O Timeout"): read the value columns as strings instead.
    conv = pacsv.ConvertOptions(include_columns=include, column_types={c: pa.string() for c in wanted})
    try:
        return pacsv.read_csv(pa.BufferReader(data), read_options=read, parse_options=parse, convert_options=conv)
    except pa.ArrowInvalid as exc:
        raise RejectError("unreadable_csv", f"{shown}: {_short(exc)}. Fix the CSV") from None


def _short(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0]


def _to_float(col: pa.ChunkedArray, missing: dict[str, int]) -> np.ndarray:
    nulls = col.null_count
    arr = _numpy(col, np.float64, np.nan)
    if nulls:
        missing["empty_or_nan"] = missing.get("empty_or_nan", 0) + nulls
    nan = np.isnan(arr)
    n_nan = int(nan.sum()) - nulls
    if n_nan:
        missing["empty_or_nan"] = missing.get("empty_or_nan", 0) + n_nan
    inf = np.isinf(arr)
    if inf.any():
        missing["infinite"] = missing.get("infinite", 0) + int(inf.sum())
        arr = np.where(inf, np.nan, arr)
    return arr


def _numpy(col: pa.ChunkedArray, dtype: type, fill: float | None = None) -> np.ndarray:
    """Fixed-width column -> numpy through its data buffer. pyarrow's own to_numpy imports pandas
    on first use, about 1 s of CPU in every worker process."""
    if fill is not None and col.null_count:
        col = pc.fill_null(col, fill)
    parts = []
    for chunk in col.chunks:
        data = chunk.buffers()[1]
        parts.append(np.frombuffer(data, dtype=dtype, count=chunk.offset + len(chunk))[chunk.offset:] if data else
                     np.empty(0, dtype=dtype))
    return np.concatenate(parts) if len(parts) != 1 else parts[0].copy()


def _to_times(col: pa.ChunkedArray, notes: list[str]) -> np.ndarray | None:
    if col.null_count:
        notes.append("timestamps_unparsed")
        return None
    t = col.type
    if pa.types.is_date(t):
        col = pc.cast(col, pa.timestamp("s"))
        t = col.type
    if pa.types.is_timestamp(t):
        return _numpy(pc.cast(col, pa.int64()), np.int64)
    if pa.types.is_integer(t):
        return _numpy(pc.cast(col, pa.int64()), np.int64)
    if pa.types.is_floating(t):
        return _numpy(pc.cast(col, pa.float64()), np.float64, np.nan)
    try:
        parsed = pc.strptime(col, format="%Y/%m/%d %H:%M:%S", unit="ns")
        return _numpy(pc.cast(parsed, pa.int64()), np.int64)
    except (pa.ArrowInvalid, NotImplementedError):
        pass
    try:
        import pandas as pd  # only for unusual timestamp formats

        parsed = pd.to_datetime(pd.Series(col.to_pylist()), errors="raise", format="mixed")
        return parsed.astype("int64").to_numpy()
    except (ValueError, TypeError, OverflowError):
        notes.append("timestamps_unparsed")
        return None
