"""Cap series length. Default: keep the series whole. Methods keep spikes visible (LTTB, min/max)
or take the first N points (window: indices in the answer, e.g. anomaly start/end, stay valid)."""

from __future__ import annotations

from typing import Callable

import numpy as np

from .registry import Registry

Downsampler = Callable[[np.ndarray, int], np.ndarray]
DOWNSAMPLERS: Registry[Downsampler] = Registry("downsampling method")


def register_downsampler(name: str, fn: Downsampler) -> None:
    """Register a downsampling method (refuses duplicates)."""
    DOWNSAMPLERS.register(name, fn)


def get_downsampler(name: str) -> Downsampler:
    """Look up a method; unknown names list the valid ones."""
    return DOWNSAMPLERS.get(name)


def lttb_indices(y: np.ndarray, n_out: int) -> np.ndarray:
    """Largest-Triangle-Three-Buckets: indices of ``n_out`` points keeping the visual shape (x = index)."""
    n = len(y)
    if n_out >= n or n_out < 3:
        return np.arange(min(n, max(n_out, 0)))
    edges = np.linspace(1, n - 1, n_out - 1).astype(np.int64)  # n_out - 2 inner buckets
    out = np.empty(n_out, dtype=np.int64)
    out[0], out[-1] = 0, n - 1
    a = 0
    for i in range(n_out - 2):
        lo, hi = edges[i], max(edges[i + 1], edges[i] + 1)
        nlo, nhi = edges[i + 1], (edges[i + 2] if i + 2 < len(edges) else n)
        nhi = max(nhi, nlo + 1)
        cx = (nlo + nhi - 1) / 2.0
        cy = float(np.mean(y[nlo:nhi]))
        xs = np.arange(lo, hi)
        area = np.abs((a - cx) * (y[lo:hi] - y[a]) - (a - xs) * (cy - y[a]))
        a = int(lo + np.argmax(area))
        out[i + 1] = a
    return out


def _lttb(y: np.ndarray, n_out: int) -> np.ndarray:
    return y[lttb_indices(y, n_out)]


def _minmax(y: np.ndarray, n_out: int) -> np.ndarray:
    """Per bucket keep the min and the max, in time order: every spike survives."""
    n = len(y)
    if n_out >= n:
        return y
    buckets = max(n_out // 2, 1)
    edges = np.linspace(0, n, buckets + 1).astype(np.int64)
    idx = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        seg = y[lo:hi]
        i, j = lo + int(np.argmin(seg)), lo + int(np.argmax(seg))
        idx.extend(sorted({i, j}))
    return y[np.array(sorted(set(idx)), dtype=np.int64)]


def _window(y: np.ndarray, n_out: int) -> np.ndarray:
    return y[:n_out]


register_downsampler("lttb", _lttb)
register_downsampler("minmax", _minmax)
register_downsampler("window", _window)
