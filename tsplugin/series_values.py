"""What one series must hold to train: a non-empty list of finite numbers whose value encoding stays
finite in the model's dtype. The one check behind `tsconvert` (convert, validate) and training
(tsplugin.llamafactory); torch-free (numpy only), so the converter may import it.

Design choices:
- The check runs the model's own value encoding (`tsplugin.processing.sp_encode` unless an `encode`
  is passed), so it cannot drift from what training computes. The sp encoding subtracts the mean and
  scales into [-3, 3]: for finite, moderate values the encoded numbers always fit fp16/bf16/fp32. What
  breaks is float64 overflow inside the encoding (the mean of values near 1e308, or `x - mean`): the
  series becomes inf/NaN and training shows `grad_norm nan`. Encoded values above the dtype's largest
  finite number (fp16 65504, fp32 ~3.4e38) are refused too, for encodings that do not scale.
- A problem names the point (index and value) and the fix; the caller adds `file: record N: series K:`.
- Booleans are not numbers here (JSON `true` is not a measurement), nor are numeric strings: the
  converter is where a historian's "1,234.5" gets read, not training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

# Largest finite value per model dtype (torch.finfo(...).max, written out so no torch is needed).
DTYPE_MAX = {
    "float16": 65504.0,
    "bfloat16": 3.3895313892515355e38,
    "float32": 3.4028234663852886e38,
    "float64": 1.7976931348623157e308,
}
DTYPE_ALIASES = {"fp16": "float16", "half": "float16", "bf16": "bfloat16", "fp32": "float32", "float": "float32", "fp64": "float64"}

Encoder = Callable[[np.ndarray], Any]  # values -> (features (L, F) whose column 0 is the encoded value, ...)


@dataclass(frozen=True)
class SeriesProblem:
    """Why one series cannot train. `code`: not_a_list | empty_series | non_numeric | non_finite | magnitude."""

    code: str
    message: str
    index: int | None = None
    value: Any = None


def dtype_name(dtype: Any) -> str:
    """'float16' / 'bfloat16' / 'float32' / 'float64' from a string ('fp16', 'torch.float16') or a torch/numpy dtype."""
    name = str(dtype).replace("torch.", "")
    name = DTYPE_ALIASES.get(name, name)
    if name not in DTYPE_MAX:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {sorted(DTYPE_MAX)}")
    return name


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


def series_problem(values: Any, dtype: Any = "float32", encode: Encoder | None = None) -> SeriesProblem | None:
    """The first reason `values` cannot be one training series in a model of `dtype`, or None.

    `encode` maps the float64 values to `(features, ...)` (default: the sp encoding training uses).
    """
    if isinstance(values, np.ndarray) and values.ndim == 1:
        values = values.tolist()
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
    return encoding_problem(x, values, dtype, encode)


def encoding_problem(x: np.ndarray, values: Sequence[Any], dtype: Any = "float32", encode: Encoder | None = None) -> SeriesProblem | None:
    """Run the value encoding on finite float64 `x` and check its output fits `dtype`."""
    name = dtype_name(dtype)
    if encode is None:
        from tsplugin.processing import sp_encode as encode
    with np.errstate(over="ignore", invalid="ignore"):
        features = np.asarray(encode(x)[0], dtype=np.float64)
    encoded = features[:, 0] if features.ndim == 2 else features
    biggest = int(np.argmax(np.abs(x)))
    value = values[biggest]
    if not np.isfinite(encoded).all():
        return SeriesProblem(
            "magnitude",
            f"value {biggest} is {show_value(value)}: the value encoding (mean subtracted, scaled to [-3, 3]) "
            "overflows float64 for values this large and the model would see inf/NaN. Rescale the series "
            "(other units, or subtract a constant) or drop the record",
            biggest,
            value,
        )
    peak = float(np.abs(encoded).max())
    if peak > DTYPE_MAX[name]:
        at = int(np.argmax(np.abs(encoded)))
        return SeriesProblem(
            "magnitude",
            f"value {at} is {show_value(values[at])}: encoded it is {peak:.4g}, beyond {name}'s largest number "
            f"({DTYPE_MAX[name]:.4g}). Rescale the series or train in a wider dtype",
            at,
            values[at],
        )
    return None


__all__ = ["DTYPE_MAX", "SeriesProblem", "dtype_name", "encoding_problem", "series_problem", "show_value"]
