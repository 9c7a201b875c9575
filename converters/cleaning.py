"""Explicit, counted repairs: timestamp order, duplicate timestamps, missing values.

Each problem has a policy chosen on the command line; every row moved or dropped and every cell
filled is counted so the report shows exactly what was changed. Policies live in registries.
"""

from __future__ import annotations

from collections import Counter
from typing import Callable

import numpy as np

from .csvread import RawSeries
from .errors import RejectError
from .registry import Registry

# A missing-value policy gets (values, missing-mask) for one column and returns the new values
# plus the row mask to keep; it may raise RejectError.
MissingPolicy = Callable[[np.ndarray, np.ndarray, str], tuple[np.ndarray, np.ndarray]]
MISSING_POLICIES: Registry[MissingPolicy] = Registry("missing-value policy")
UNSORTED_POLICIES: Registry[str] = Registry("unsorted-timestamp policy")
DUPLICATE_POLICIES: Registry[str] = Registry("duplicate-timestamp policy")


def register_missing_policy(name: str, fn: MissingPolicy) -> None:
    """Register a missing-value policy (refuses duplicates)."""
    MISSING_POLICIES.register(name, fn)


def get_missing_policy(name: str) -> MissingPolicy:
    """Look up a missing-value policy; unknown names list the valid ones."""
    return MISSING_POLICIES.get(name)


def _interpolate(values: np.ndarray, bad: np.ndarray, shown: str) -> tuple[np.ndarray, np.ndarray]:
    good = ~bad
    idx = np.arange(len(values))
    out = values.copy()
    # Linear between neighbours; leading/trailing gaps take the nearest valid value.
    out[bad] = np.interp(idx[bad], idx[good], values[good])
    return out, np.ones(len(values), dtype=bool)


def _drop(values: np.ndarray, bad: np.ndarray, shown: str) -> tuple[np.ndarray, np.ndarray]:
    return values, ~bad


def _reject(values: np.ndarray, bad: np.ndarray, shown: str) -> tuple[np.ndarray, np.ndarray]:
    first = int(np.argmax(bad))
    raise RejectError(
        "missing_values",
        f"{shown}: {int(bad.sum())} missing or non-numeric values (first at data row {first + 1}) and --missing reject. "
        "Fix the CSV or pass --missing interpolate/drop",
    )


register_missing_policy("interpolate", _interpolate)
register_missing_policy("drop", _drop)
register_missing_policy("reject", _reject)
for _name in ("sort", "reject"):
    UNSORTED_POLICIES.register(_name, _name)
for _name in ("first", "last", "reject"):
    DUPLICATE_POLICIES.register(_name, _name)


def clean(
    raw: RawSeries,
    shown: str,
    *,
    missing: str = "interpolate",
    max_missing: float = 0.5,
    unsorted: str = "sort",
    duplicates: str = "first",
    counts: Counter | None = None,
) -> list[np.ndarray]:
    """Apply the policies to one CSV's columns; returns the cleaned series, updates ``counts``."""
    counts = counts if counts is not None else Counter()
    values = list(raw.values)
    n = len(values[0]) if values else 0
    if n == 0:
        raise RejectError("empty_series", f"{shown} has a header but no data rows. Export the data or drop the record")
    t = raw.times
    if t is not None and n > 1:
        if np.any(t[1:] < t[:-1]):
            if UNSORTED_POLICIES.get(unsorted) == "reject":
                back = int(np.argmax(t[1:] < t[:-1])) + 2
                raise RejectError(
                    "unsorted_timestamps",
                    f"{shown}: timestamps go backwards at data row {back} and --unsorted reject. Sort the CSV or pass --unsorted sort",
                )
            order = np.argsort(t, kind="stable")
            counts["rows_reordered"] += int(np.sum(order != np.arange(n)))
            t = t[order]
            values = [v[order] for v in values]
        dup = t[1:] == t[:-1]
        if dup.any():
            policy = DUPLICATE_POLICIES.get(duplicates)
            if policy == "reject":
                row = int(np.argmax(dup)) + 2
                raise RejectError(
                    "duplicate_timestamps",
                    f"{shown}: {int(dup.sum())} duplicate timestamps (first at sorted row {row}) and --duplicates reject. "
                    "Deduplicate the CSV or pass --duplicates first/last",
                )
            keep = np.ones(n, dtype=bool)
            if policy == "first":
                keep[1:] = ~dup
            else:
                keep[:-1] = ~dup
            counts["duplicate_rows_dropped"] += int((~keep).sum())
            values = [v[keep] for v in values]
            n = int(keep.sum())
    bad_any = np.zeros(n, dtype=bool)
    for v in values:
        bad_any |= np.isnan(v)
    n_bad = int(bad_any.sum())
    if n_bad:
        if n_bad == n:
            raise RejectError("empty_series", f"{shown}: all {n} values are missing or non-numeric. Fix the CSV or --value-col")
        if n_bad / n > max_missing:
            raise RejectError(
                "too_many_missing",
                f"{shown}: {n_bad} of {n} rows ({n_bad / n:.0%}) have missing or non-numeric values, above --max-missing "
                f"{max_missing:g}. Fix the CSV or raise --max-missing",
            )
        policy_fn = get_missing_policy(missing)
        keep = np.ones(n, dtype=bool)
        out = []
        for v in values:
            bad = np.isnan(v)
            if bad.any():
                v, k = policy_fn(v, bad, shown)
                keep &= k
            out.append(v)
        if missing == "drop":
            counts["cells_dropped"] += int(sum(int(np.isnan(v).sum()) for v in values))
            counts["rows_dropped_missing"] += int((~keep).sum())
            out = [v[keep] for v in out]
        else:
            label = "cells_interpolated" if missing == "interpolate" else f"cells_filled_{missing}"
            counts[label] += int(sum(int(np.isnan(v).sum()) for v in values))
        values = out
    return values
