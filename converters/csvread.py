"""Read one series CSV with pyarrow: detect encoding and delimiter, find columns by name.

Returns the value columns as float64 with non-numbers turned into NaN (counted by kind, the
cleaning step decides what to do with them) and the timestamps as int64 when they parse.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from .errors import RejectError

ENCODINGS = ("utf-8", "gbk")
DELIMITERS = (",", ";", "\t")
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


def _decode(data: bytes, shown: str) -> tuple[str, str]:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    for enc in ENCODINGS:
        try:
            return data.decode(enc), enc
        except UnicodeDecodeError:
            continue
    raise RejectError(
        "unreadable_csv", f"{shown}: not UTF-8 or GBK text. Re-save the CSV as UTF-8"
    )


def _sniff_delimiter(header: str) -> str:
    counts = {d: header.count(d) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


def read_series(path: Path, value_cols: list[str], time_col: str | None, shown: str) -> RawSeries:
    """Read ``path``; ``shown`` is how the file is named in messages (relative to --csv-dir)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise RejectError(
            "missing_csv", f"{shown} not found in --csv-dir. Put the CSV there or pass --csv-pattern matching your file names"
        ) from None
    except OSError as exc:
        raise RejectError("unreadable_csv", f"{shown}: cannot read: {exc.strerror}") from None
    text, enc = _decode(data, shown)
    end = text.find("\n")
    header_line = (text if end < 0 else text[:end]).rstrip("\r")
    if not header_line.strip():
        raise RejectError("empty_series", f"{shown} is empty (no header line). Export the series with a header such as timestamp,value")
    delim = _sniff_delimiter(header_line)
    header = next(csv.reader([header_line], delimiter=delim))
    by_norm = {}
    for raw in header:
        by_norm.setdefault(norm_name(raw), raw)
    wanted = []
    for col in value_cols:
        raw = by_norm.get(norm_name(col))
        if raw is None:
            cols = ", ".join(repr(h.strip()) for h in header)
            raise RejectError(
                "missing_value_column",
                f"{shown} has no column {col!r} (columns: {cols}). Pass --value-col with one of them",
            )
        wanted.append(raw)
    time_raw = by_norm.get(norm_name(time_col)) if time_col else None
    if enc != "utf-8" or data.startswith(b"\xef\xbb\xbf"):
        data = text.encode("utf-8")
    include = wanted + ([time_raw] if time_raw is not None and time_raw not in wanted else [])
    table = _read_table(data, delim, include, wanted, shown)
    raw = RawSeries(values=[], times=None)
    for col in wanted:
        raw.values.append(_to_float(table.column(col), raw.missing))
    if time_raw is not None:
        raw.times = _to_times(table.column(time_raw), raw.notes)
    elif time_col:
        raw.notes.append("no_time_column")
    return raw


def _read_table(data: bytes, delim: str, include: list[str], wanted: list[str], shown: str) -> pa.Table:
    # 256 KiB blocks: a ~140 KB series file is one block; pyarrow's 1 MiB default costs ~30% more CPU here.
    read = pacsv.ReadOptions(use_threads=False, block_size=1 << 18)
    parse = pacsv.ParseOptions(delimiter=delim, newlines_in_values=False)
    try:
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
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        strings = col.to_pylist()
        out = np.empty(len(strings), dtype=np.float64)
        for i, s in enumerate(strings):
            out[i] = _parse_cell(s, missing)
        return out
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


def _parse_cell(s: str | None, missing: dict[str, int]) -> float:
    if s is None or s.strip() in NULL_TEXT:
        missing["empty_or_nan"] = missing.get("empty_or_nan", 0) + 1
        return np.nan
    try:
        if "_" in s:  # float() accepts "1_0"; a CSV number does not
            raise ValueError(s)
        v = float(s)
    except ValueError:
        missing["non_numeric"] = missing.get("non_numeric", 0) + 1
        return np.nan
    if not np.isfinite(v):
        key = "infinite" if np.isinf(v) else "empty_or_nan"
        missing[key] = missing.get(key, 0) + 1
        return np.nan
    return v


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
