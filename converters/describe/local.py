"""Local changes (spikes, steps, sudden increases/decreases) from PELT change points (segments.py).

A change point splits the series into least-squares lines. Long segments carry the trend; a local change
is a cluster of short segments (each at most RAMP_MAX of the length) between two long ones, or a jump
where two long segments meet:
- the level after the cluster minus the level before it (the two long lines extrapolated to the
  cluster's middle) is the shift; above the threshold it is a step (the lines jump at one point) or a
  sudden increase/decrease (the points inside lie on a ramp between the two levels);
- otherwise the largest deviation of the points inside from the line joining the two levels, above
  SPIKE_Z noise units, is an upward or downward spike at its peak;
- a trend kink meets continuously and leaves nothing.
Thresholds: a number of noise units (robust sigma of first differences) and a share of the series'
structural range, whichever is larger (a low-noise series must not report the misfit of its season).
Positions: the first point of the new level (step), of the ramp (sudden change), the peak (spike).
Confidence: how far the size exceeds the threshold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .robust import logistic
from .segments import Line, change_points, lines

SPIKE_Z = 6.0
SHIFT_Z = 3.5
RANGE_SHARE = 0.08  # a shift or spike is at least this share of the 5-95% range of the series
RAMP_MAX = 0.06  # longest cluster read as one local change, share of the length
WINDOW = 0.08  # a shift's shape is fitted on at most this share of the length on each side


@dataclass
class Change:
    type: str
    position: int
    amplitude: float
    confidence: float
    width: int = 0  # ramp length (sudden changes), points
    end: int = 0  # first point after a spike
    start: int = 0  # first point of a spike's cluster

    def component(self, n: int) -> np.ndarray:
        """The change as an additive component (zero for spikes: they are replaced, not subtracted)."""
        t = np.arange(n)
        sign = 1.0 if self.type in ("step_up", "sudden_increase") else -1.0
        if self.type.startswith("step"):
            return sign * self.amplitude * (t >= self.position)
        if self.type.startswith("sudden"):
            return sign * self.amplitude * np.clip((t - self.position) / max(self.width, 1), 0.0, 1.0)
        return np.zeros(n)


def _conf(size: float, threshold: float) -> float:
    return logistic(size / threshold - 1.0, 6.0)


def _shift_shape(d: np.ndarray, lo: int, hi: int, first: int, last: int, sigma: float) -> tuple[bool, int, int]:
    """(sudden, position, ramp width) of a level shift near [first, last] in the window d[lo:hi) that holds
    one line and the shift: the ramp (start p, width w up to RAMP_MAX of the length) whose model
    line + size x clip((t - p) / w, 0, 1) fits the window best by least squares. A width of 1 is a step
    at p + 1; a wider ramp is a sudden change only when it fits better than the best step by more than
    one parameter's BIC (sigma^2 log m)."""
    n, m = len(d), hi - lo
    t = np.arange(lo, hi, dtype=float)
    w_max = max(2, int(round(RAMP_MAX * n)))
    cands = [(p, w) for w in range(1, w_max + 1) for p in range(max(lo, first - w), min(hi - 2, last + 1) + 1)]
    G = np.array([np.clip((t - p) / w, 0.0, 1.0) for p, w in cands])  # (candidates, m)
    q, _ = np.linalg.qr(np.column_stack([np.ones(m), t - lo]))  # the line, projected out of both sides
    y = d[lo:hi] - q @ (q.T @ d[lo:hi])
    G = G - (G @ q) @ q.T
    gg = np.einsum("ij,ij->i", G, G)
    gain = np.where(gg > 1e-12, (G @ y) ** 2 / np.maximum(gg, 1e-12), 0.0)  # RSS drop of each candidate
    widths = np.array([w for _, w in cands])
    k_step = int(np.argmax(np.where(widths == 1, gain, -1.0)))
    k_ramp = int(np.argmax(np.where(widths >= 2, gain, -1.0)))
    if widths[k_ramp] >= 2 and gain[k_ramp] - gain[k_step] > sigma * sigma * math.log(max(m, 2)):
        return True, cands[k_ramp][0], cands[k_ramp][1]
    return False, cands[k_step][0] + 1, 0


def _cluster(d: np.ndarray, prev: Line, nxt: Line, start: int, end: int,
             shift_min: float, spike_min: float, sigma: float) -> Change | None:
    """What the short segments [start, end) between the long lines ``prev`` and ``nxt`` are, if anything."""
    t = np.arange(start, end)
    before, after = prev.at, nxt.at
    mid = (start + end - 1) / 2
    shift = after(mid) - before(mid)
    if abs(shift) > shift_min:
        up = shift > 0
        lo, hi = _window(len(d), prev.start, nxt.end, start, end)
        sudden, pos, width = _shift_shape(d, lo, hi, start, end - 1, sigma)
        if sudden:
            return Change("sudden_increase" if up else "sudden_decrease", pos, float(abs(shift)),
                          _conf(abs(shift), shift_min), width=width)
        return Change("step_up" if up else "step_down", pos, float(abs(shift)), _conf(abs(shift), shift_min))
    base = np.array([before(x) + (after(x) - before(x)) * (x - start) / max(end - start, 1) for x in t])
    dev = d[t] - base
    k = int(np.argmax(np.abs(dev)))
    if abs(dev[k]) > spike_min:
        kind = "upward_spike" if dev[k] > 0 else "downward_spike"
        return Change(kind, int(t[k]), float(abs(dev[k])), _conf(abs(dev[k]), spike_min), end=end, start=start)
    return None


def _window(n: int, lo: int, hi: int, start: int, end: int) -> tuple[int, int]:
    """The points around a shift at [start, end) its shape is read from: the long lines on both sides,
    at most WINDOW of the length each way (one line fits them both when the trend bends far away)."""
    reach = max(8, int(WINDOW * n))
    return max(lo, start - reach), min(hi, end + reach)


def thresholds(d: np.ndarray, sigma: float) -> tuple[float, float]:
    """(smallest shift, smallest spike) reported in ``d`` (seasonality removed), ``sigma`` its noise."""
    span = float(np.percentile(d, 95) - np.percentile(d, 5))
    return max(SHIFT_Z * sigma, RANGE_SHARE * span), max(SPIKE_Z * sigma, RANGE_SHARE * span)


def find_changes(d: np.ndarray, sigma: float) -> tuple[list[Change], np.ndarray]:
    """Local changes of ``d`` (seasonality removed) and ``d`` with every spike replaced by the line
    joining its neighbours (what is left for the trend)."""
    n = len(d)
    shift_min, spike_min = thresholds(d, sigma)
    segs = lines(d, change_points(d, sigma))
    short = max(3, int(round(RAMP_MAX * n)))
    out: list[Change] = []
    cleaned = d.copy()
    i = 0
    prev: Line | None = None
    while i < len(segs):
        if segs[i].end - segs[i].start > short:
            cur = segs[i]
            if prev is not None and prev.end == cur.start:  # two long lines meet: a step, or a kink (nothing)
                jump = cur.at(cur.start - 0.5) - prev.at(cur.start - 0.5)
                if abs(jump) > shift_min:
                    lo, hi = _window(n, prev.start, cur.end, cur.start, cur.start)
                    sudden, pos, width = _shift_shape(d, lo, hi, cur.start - 1, cur.start, sigma)
                    kind = ("sudden_increase" if jump > 0 else "sudden_decrease") if sudden else \
                        ("step_up" if jump > 0 else "step_down")
                    out.append(Change(kind, pos, float(abs(jump)), _conf(abs(jump), shift_min), width=width))
            prev = cur
            i += 1
            continue
        j = i
        while j + 1 < len(segs) and segs[j + 1].end - segs[j + 1].start <= short:
            j += 1
        nxt = segs[j + 1] if j + 1 < len(segs) else None
        start, end = segs[i].start, segs[j].end
        # a change needs the level on both sides: at an end of the series a cluster is where the first or
        # last line starts, not something that came and went
        change = _cluster(d, prev, nxt, start, end, shift_min, spike_min, sigma) if prev is not None and nxt is not None else None
        if change is not None:
            out.append(change)
            if change.type.endswith("spike"):
                t = np.arange(start, end)
                cleaned[start:end] = [prev.at(x) + (nxt.at(x) - prev.at(x)) * (x - start) / max(end - start, 1) for x in t]
        prev = nxt  # the long line after the cluster is the next reference
        i = j + 2 if nxt is not None else j + 1
    return out, cleaned


def _column(c: Change, n: int) -> np.ndarray:
    """The change's shape with unit size and its type's sign (a spike: a triangle of the cluster's width)."""
    if c.type.endswith("spike"):
        t = np.arange(n)
        half = max(1, c.end - c.position - 1)
        col = np.clip(1.0 - np.abs(t - c.position) / (half + 1), 0.0, None)
        return col if c.type == "upward_spike" else -col
    return c.component(n) / max(c.amplitude, 1e-300)


def joint_sizes(y: np.ndarray, structure: np.ndarray, changes: list[Change]) -> np.ndarray:
    """Each change's size (signed along its type's direction) when all of them are fitted by least squares
    together with ``structure`` (trend spline and seasonal component as columns)."""
    if not changes:
        return np.zeros(0)
    X = np.hstack([structure, np.column_stack([_column(c, len(y)) for c in changes])])
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    return coef[structure.shape[1]:]


def prune(y: np.ndarray, structure: np.ndarray, changes: list[Change], shift_min: float,
          spike_min: float) -> list[Change]:
    """Backward elimination of changes that do not survive a joint fit: refit every change with the trend
    and season (``structure``) and drop the one furthest below its threshold (or of the wrong sign) until
    all pass. A change read from one pass's misfit (an edge of a season whose amplitude absorbed a real
    step, a kink the trend missed) shrinks when the real cause is in the model beside it."""
    kept = list(changes)
    while kept:
        sizes = joint_sizes(y, structure, kept)
        mins = np.array([spike_min if c.type.endswith("spike") else shift_min for c in kept])
        k = int(np.argmin(sizes / mins))
        if sizes[k] >= mins[k]:
            for c, size, m in zip(kept, sizes, mins):  # the joint sizes are the better estimates
                c.amplitude, c.confidence = float(size), _conf(float(size), float(m))
            break
        kept.pop(k)
    return kept
