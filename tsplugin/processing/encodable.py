"""Can a series survive the model's value encoding in a given dtype? One pure check (numpy only, no
torch) shared by `tsconvert` (at conversion) and the training-time series checks
(`tsplugin.processing.series_values`). Part of the torch-free contract, so converters import it and
it imports nothing of converters.

The encoding (chatts-facts.md, tsplugin.processing.sp_encode): m = mean(x); y = x - m; s = 1; if
any |y| >= 3 then s = max|y| / 3 and y = y / s. The model sees y (|y| <= 3) and the text prefix
carries m and s. What can break:
- the mean overflows float64 (values near 1e308 sum to inf), or ``x - m`` does: NaN features;
- the centred magnitude |x - m| exceeds the largest finite value of the dtype the encoding is
  computed in (fp16 65504, bf16 ~3.39e38, fp32 ~3.40e38): a processor or encoder that centres or
  scales in that dtype (instance normalisation inside the model under fp16) gets inf.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Largest finite value per dtype name (torch's finfo(...).max, written out so no torch import is needed).
DTYPE_MAX = {"fp16": 65504.0, "bf16": 3.3895313892515355e38, "fp32": 3.4028234663852886e38}
DTYPE_ALIASES = {"float16": "fp16", "half": "fp16", "bfloat16": "bf16", "float32": "fp32", "float": "fp32"}
DEFAULT_DTYPE = "fp32"


@dataclass(frozen=True)
class EncodingProblem:
    """Why one series cannot be encoded: the first offending point and value, and a sentence."""

    index: int
    value: float
    reason: str

    def message(self) -> str:
        return f"point {self.index} (value {self.value!r}): {self.reason}"


def canonical_dtype(name: str) -> str:
    """``fp16``/``bf16``/``fp32`` for a dtype name or alias; ValueError listing the valid names."""
    key = DTYPE_ALIASES.get(str(name).lower().replace("torch.", ""), str(name).lower())
    if key not in DTYPE_MAX:
        raise ValueError(f"unknown dtype {name!r}; valid: {', '.join(DTYPE_MAX)} (or {', '.join(DTYPE_ALIASES)})")
    return key


def safe_magnitude(dtype: str = DEFAULT_DTYPE) -> float:
    """Finite values with |x| <= this can form no series `check_encodable` refuses: |x - mean| <= 2 max|x| stays
    half the dtype's range away from its largest value (room for any rounding of the mean)."""
    return DTYPE_MAX[canonical_dtype(dtype)] / 4


def check_encodable(values: np.ndarray | list[float], dtype: str = DEFAULT_DTYPE) -> EncodingProblem | None:
    """None when the series encodes safely for a model computing in ``dtype``, else the first problem."""
    limit = DTYPE_MAX[canonical_dtype(dtype)]
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return None
    if float(np.abs(x).max()) <= safe_magnitude(dtype):  # a NaN or inf fails this test and is named below
        return None
    bad = ~np.isfinite(x)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        return EncodingProblem(i, float(x[i]), "not a finite number")
    with np.errstate(over="ignore", invalid="ignore"):
        mean = x.mean()
        if not np.isfinite(mean):
            i = int(np.argmax(np.abs(x)))
            return EncodingProblem(i, float(x[i]), "the series' mean overflows float64 (values this large cannot be centred)")
        y = x - mean
    bad = ~np.isfinite(y)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        return EncodingProblem(i, float(x[i]), f"subtracting the mean {mean:.6g} overflows to infinity")
    over = np.abs(y) > limit
    if over.any():
        i = int(np.flatnonzero(over)[0])
        return EncodingProblem(
            i, float(x[i]), f"|value - mean| = {abs(float(y[i])):.4g} exceeds the {canonical_dtype(dtype)} range (max {limit:.6g})"
        )
    return None
