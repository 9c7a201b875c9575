"""JSON encoding for output lines. Float formatting is the hot spot, so orjson is used when it is
installed (shortest round-trip repr, like Python's ``repr``); the stdlib is the fallback.
Only finite floats reach here: NaN/inf were repaired or rejected before, so output is valid JSON."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

try:
    import orjson
except ImportError:  # pragma: no cover - exercised by the fallback test via monkeypatch
    orjson = None


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON (no ASCII escaping: the prompts are often Chinese)."""
    if orjson is not None:
        return orjson.dumps(obj)
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def dumps_series(values: np.ndarray) -> bytes:
    """``[v0,v1,...]`` for a finite float64 array."""
    if orjson is not None:
        return orjson.dumps(np.ascontiguousarray(values, dtype=np.float64), option=orjson.OPT_SERIALIZE_NUMPY)
    return json.dumps(values.tolist(), separators=(",", ":"), allow_nan=False).encode("ascii")


def record_line(fields: dict[str, Any], series: list[bytes]) -> bytes:
    """One output line: ``fields`` then ``"timeseries": [series...]``, without re-encoding the series."""
    head = dumps(fields)
    sep = b"," if len(fields) else b""
    return head[:-1] + sep + b'"timeseries":[' + b",".join(series) + b"]}\n"
