"""One CSV -> encoded series: read, clean, length checks, optional downsampling, encoding for the output file.

This is the unit of work sent to the worker processes, so it takes and returns plain picklable
values and never raises for bad data: problems come back as a (code, message) pair.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tsplugin.processing.encodable import DEFAULT_DTYPE, check_encodable

from .cleaning import clean
from .csvread import read_series
from .downsample import get_downsampler
from .errors import RejectError
from .filetypes import JSON_STORAGE, encode_series
from .safeio import DEFAULT_MAX_CSV_BYTES, ReadLimits, read_confined


@dataclass(frozen=True)
class SeriesOptions:
    """CSV reading/cleaning options shared by every job of a run."""

    value_cols: tuple[str, ...] = ("value",)
    time_col: str | None = "timestamp"
    missing: str = "interpolate"
    max_missing: float = 0.5
    unsorted: str = "sort"
    duplicates: str = "first"
    min_length: int = 16
    max_length: int | None = None
    downsample: str = "lttb"
    number_format: str = "auto"
    dtype: str = DEFAULT_DTYPE
    max_csv_bytes: int = DEFAULT_MAX_CSV_BYTES
    allow_hard_links: bool = False
    encoding: str = "auto"  # csvread.AUTO_ENCODING
    storage: str = JSON_STORAGE  # how each series is encoded for the output file (filetypes.storage_for)

@dataclass
class SeriesResult:
    """Encoded series of one CSV (one per value column: JSON text or an array, `filetypes.encode_series`)
    plus what was changed."""

    encoded: list[Any]
    lengths: list[int]
    repairs: Counter
    notes: Counter

def load_series(root: str, rel: str, shown: str, opts: SeriesOptions) -> SeriesResult | tuple[str, str]:
    """Worker entry point for the CSV ``rel`` (a '/'-separated path) under the directory ``root``: a
    SeriesResult, or ``(reason_code, message)`` when the CSV is unusable. Never raises for one file:
    an unexpected failure becomes a ``csv_error`` rejection naming the exception."""
    try:
        return _load(Path(root), rel, shown, opts)
    except RejectError as err:
        return err.reject.code, err.reject.message
    except Exception as exc:  # one file must never stop the run
        detail = " ".join(str(exc).split())[:200]
        return "csv_error", (f"{shown}: could not be read ({type(exc).__name__}: {detail}). "
                             "Check that it is a CSV with a header line; report a bug if it is")


def load_many(jobs: list[tuple[str, str, str]], opts: SeriesOptions) -> list[SeriesResult | tuple[str, str]]:
    """A batch of (root, rel, shown) jobs in one task (less IPC per CSV)."""
    return [load_series(root, rel, shown, opts) for root, rel, shown in jobs]


def _load(root: Path, rel: str, shown: str, opts: SeriesOptions) -> SeriesResult:
    limits = ReadLimits(opts.max_csv_bytes, opts.allow_hard_links)
    data = read_confined(root, rel.split("/"), shown, limits)
    raw = read_series(root / rel, list(opts.value_cols), opts.time_col, shown, data=data, number_format=opts.number_format,
                      encoding=opts.encoding)
    repairs: Counter = Counter()
    notes: Counter = Counter(raw.notes)
    for kind, n in raw.missing.items():
        repairs[f"missing_{kind}"] += n
    values = clean(
        raw, shown,
        missing=opts.missing, max_missing=opts.max_missing,
        unsorted=opts.unsorted, duplicates=opts.duplicates, counts=repairs,
    )
    encoded, lengths = [], []
    for col, v in zip(opts.value_cols, values):
        if len(v) < opts.min_length:
            raise RejectError(
                "series_too_short",
                f"{shown}: {len(v)} points, fewer than --min-length {opts.min_length}. Drop the record or lower --min-length",
            )
        if v.size and float(v.min()) == float(v.max()):
            notes["constant_series"] += 1
        if opts.max_length is not None and len(v) > opts.max_length:
            v = get_downsampler(opts.downsample)(v, opts.max_length)
            notes[f"downsampled_{opts.downsample}"] += 1
        problem = check_encodable(v, opts.dtype)
        if problem is not None:
            raise RejectError(
                "value_out_of_range",
                f"{shown}: column {col!r} {problem.message()}: the model cannot encode it in {opts.dtype}. "
                "Fix the value, or rescale the column (e.g. divide by 1e6) so the values fit",
            )
        encoded.append(encode_series(v, opts.storage, shown, col))
        lengths.append(int(len(v)))
    return SeriesResult(encoded, lengths, repairs, notes)

__all__ = ["SeriesOptions", "SeriesResult", "load_many", "load_series"]
