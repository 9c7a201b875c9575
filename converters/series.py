"""One CSV -> encoded series: read, clean, length checks, optional downsampling, JSON encoding.

This is the unit of work sent to the worker processes, so it takes and returns plain picklable
values and never raises for bad data: problems come back as a (code, message) pair.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from .cleaning import clean
from .csvread import read_series
from .downsample import get_downsampler
from .errors import RejectError
from .jsonenc import dumps_series

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

@dataclass
class SeriesResult:
    """Encoded series of one CSV (one per value column) plus what was changed."""

    encoded: list[bytes]
    lengths: list[int]
    repairs: Counter
    notes: Counter

def load_series(path: str, shown: str, opts: SeriesOptions) -> SeriesResult | tuple[str, str]:
    """Worker entry point: a SeriesResult, or ``(reason_code, message)`` when the CSV is unusable."""
    try:
        return _load(Path(path), shown, opts)
    except RejectError as err:
        return err.reject.code, err.reject.message

def load_many(jobs: list[tuple[str, str]], opts: SeriesOptions) -> list[SeriesResult | tuple[str, str]]:
    """A batch of (path, shown) jobs in one task (less IPC per CSV)."""
    return [load_series(path, shown, opts) for path, shown in jobs]


def _load(path: Path, shown: str, opts: SeriesOptions) -> SeriesResult:
    raw = read_series(path, list(opts.value_cols), opts.time_col, shown)
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
    for v in values:
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
        encoded.append(dumps_series(v))
        lengths.append(int(len(v)))
    return SeriesResult(encoded, lengths, repairs, notes)

__all__ = ["SeriesOptions", "SeriesResult", "load_many", "load_series"]
