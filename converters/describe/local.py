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

from dataclasses import dataclass

import numpy as np

from .robust import logistic
from .segments import Line, change_points, lines

SPIKE_Z = 6.0
SHIFT_Z = 5.0
RANGE_SHARE = 0.08  # a shift or spike is at least this share of the 5-95% range of the series
RAMP_MAX = 0.06  # longest cluster read as one local change, share of the length


@dataclass
class Change:
    type: str
    position: int
    amplitude: float
    confidence: float
    width: int = 0  # ramp length (sudden changes), points
    end: int = 0  # first point after a spike

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


def _cluster(d: np.ndarray, prev: Line, nxt: Line, start: int, end: int,
             shift_min: float, spike_min: float) -> Change | None:
    """What the short segments [start, end) between the long lines ``prev`` and ``nxt`` are, if anything."""
    t = np.arange(start, end)
    before, after = prev.at, nxt.at
    mid = (start + end - 1) / 2
    shift = after(mid) - before(mid)
    if abs(shift) > shift_min:
        frac = (d[t] - np.array([before(x) for x in t])) / shift  # 0 at the old level, 1 at the new one
        between = np.flatnonzero((frac > 0.2) & (frac < 0.8))
        up = shift > 0
        if len(between) >= 2:
            first = int(t[between[0]])
            # the ramp starts where the series leaves the old level: one point before the first point inside
            pos = max(start, first - 1) if frac[between[0]] > 0.5 / max(len(between), 1) else first
            width = int(t[between[-1]] - pos + 1)
            return Change("sudden_increase" if up else "sudden_decrease", pos, float(abs(shift)),
                          _conf(abs(shift), shift_min), width=width)
        pos = int(t[np.argmax(frac >= 0.5)]) if np.any(frac >= 0.5) else end
        return Change("step_up" if up else "step_down", pos, float(abs(shift)), _conf(abs(shift), shift_min))
    base = np.array([before(x) + (after(x) - before(x)) * (x - start) / max(end - start, 1) for x in t])
    dev = d[t] - base
    k = int(np.argmax(np.abs(dev)))
    if abs(dev[k]) > spike_min:
        kind = "upward_spike" if dev[k] > 0 else "downward_spike"
        return Change(kind, int(t[k]), float(abs(dev[k])), _conf(abs(dev[k]), spike_min), end=end)
    return None


def find_changes(d: np.ndarray, sigma: float) -> tuple[list[Change], np.ndarray]:
    """Local changes of ``d`` (seasonality removed) and ``d`` with every spike replaced by the line
    joining its neighbours (what is left for the trend)."""
    n = len(d)
    span = float(np.percentile(d, 95) - np.percentile(d, 5))
    shift_min = max(SHIFT_Z * sigma, RANGE_SHARE * span)
    spike_min = max(SPIKE_Z * sigma, RANGE_SHARE * span)
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
                    out.append(Change("step_up" if jump > 0 else "step_down", cur.start, float(abs(jump)),
                                      _conf(abs(jump), shift_min)))
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
        change = _cluster(d, prev, nxt, start, end, shift_min, spike_min) if prev is not None and nxt is not None else None
        if change is not None:
            out.append(change)
            if change.type.endswith("spike"):
                t = np.arange(start, end)
                cleaned[start:end] = [prev.at(x) + (nxt.at(x) - prev.at(x)) * (x - start) / max(end - start, 1) for x in t]
        prev = nxt  # the long line after the cluster is the next reference
        i = j + 2 if nxt is not None else j + 1
    return out, cleaned
