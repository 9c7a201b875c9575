"""What one series must hold to train: a non-empty list of numbers (not strings, booleans or null),
finite, whose value encoding stays finite. The one check behind `tsconvert validate` and training
(tsplugin.llamafactory); torch-free (numpy only).

Design choices:
- The magnitude part is `tsplugin.processing.encodable.check_encodable`, the function `tsconvert` runs at
  conversion: one definition. It refuses series whose mean or centred values (value - mean) overflow,
  or exceed the range of the dtype the centring is computed in.
- Training checks with fp32 whatever the model's dtype: the processor centres and scales in float64 on
  the host and hands the model float32 features within [-3, 3] (`tsplugin.processing.sp_encode`), so
  fp16/bf16 training never sees the centred values; refusing |value - mean| > 65504 for fp16 runs would
  refuse data that trains. `tsconvert --dtype fp16` is there for encoders that normalise in half precision.
- A problem names the point (index and value) and the fix; the caller adds `file: record N: series K:`.
- Booleans are not numbers here (JSON `true` is not a measurement), nor are numeric strings: the
  converter is where a historian's "1,234.5" gets read, not training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from tsplugin.processing.encodable import DEFAULT_DTYPE, check_encodable

# The dtype the host-side encoding's output is stored in (float32 feature arrays), see above.
TRAINING_CHECK_DTYPE = DEFAULT_DTYPE


@dataclass(frozen=True)
class SeriesProblem:
    """Why one series cannot train. `code`: not_a_list | empty_series | non_numeric | non_finite | magnitude."""

    code: str
    message: str
    index: int | None = None
    value: Any = None


def show_value(value: Any, limit: int = 40) -> str:
    """A short repr for messages: a 5000-digit integer or a long string is cut, with its length."""
    if isinstance(value, int) and not isinstance(value, bool):
        digits = len(str(abs(value))) if abs(value) < 10**4000 else None
        if digits is None or digits > limit:
            sign = "-" if value < 0 else ""
            return f"{sign}<an integer of {'over 4000' if digits is None else digits} digits>"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..." + f" ({len(text)} characters)"


def _point_problem(index: int, value: Any) -> SeriesProblem | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        kind = "a string" if isinstance(value, str) else type(value).__name__ if value is not None else "null"
        return SeriesProblem(
            "non_numeric",
            f"value {index} is {show_value(value)} ({kind}), not a number. Clean the data (`tsconvert` reads "
            "historian strings and repairs gaps) and convert again",
            index,
            value,
        )
    try:
        finite = math.isfinite(value)
    except OverflowError:  # an integer beyond float64
        return SeriesProblem(
            "magnitude",
            f"value {index} is {show_value(value)}, beyond float64 (about 1.8e308). Rescale the series (other "
            "units) or drop the record",
            index,
            value,
        )
    if not finite:
        return SeriesProblem(
            "non_finite",
            f"value {index} is {value!r}, not a finite number. Clean the data (`tsconvert` interpolates NaN "
            "runs) and convert again",
            index,
            value,
        )
    return None


def series_problem(values: Any, dtype: str = TRAINING_CHECK_DTYPE) -> SeriesProblem | None:
    """The first reason `values` cannot be one training series, or None (`dtype`: see check_encodable)."""
    if isinstance(values, np.ndarray) and values.ndim == 1:
        if values.dtype.kind == "f" and values.size:  # numbers: no Python pass unless check_encodable finds a problem
            if check_encodable(values, dtype) is None:  # (a NaN or inf is one)
                return None
        values = values.tolist()  # the list path names the point
    if not isinstance(values, (list, tuple)):
        return SeriesProblem("not_a_list", f"a series must be a non-empty list of numbers, got {show_value(values)}. Fix the record")
    if len(values) == 0:
        return SeriesProblem("empty_series", "no values. Give a non-empty list of numbers, or drop the series and its placeholder")
    x = None
    if set(map(type, values)) <= {float, int}:  # fast path (bool is its own type); the loop names the bad point
        try:
            x = np.asarray(values, dtype=np.float64)
        except OverflowError:  # an integer beyond float64
            x = None
        if x is not None and not np.isfinite(x).all():
            x = None
    if x is None:
        for index, value in enumerate(values):
            problem = _point_problem(index, value)
            if problem is not None:
                return problem
        x = np.asarray(values, dtype=np.float64)  # numbers of other float/int subclasses (numpy scalars)
    return encoding_problem(x, values, dtype)


def encoding_problem(x: np.ndarray, values: Sequence[Any], dtype: str = TRAINING_CHECK_DTYPE) -> SeriesProblem | None:
    """`check_encodable` on finite float64 `x`, as a SeriesProblem naming the point."""
    problem = check_encodable(x, dtype)
    if problem is None:
        return None
    value = values[problem.index]
    return SeriesProblem(
        "magnitude",
        f"value {problem.index} is {show_value(value)}: {problem.reason}, and the model would see inf/NaN. Rescale "
        "the series (other units, or subtract a constant) or drop the record",
        problem.index,
        value,
    )


__all__ = ["TRAINING_CHECK_DTYPE", "SeriesProblem", "encoding_problem", "series_problem", "show_value"]
