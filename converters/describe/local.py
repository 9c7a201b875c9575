"""Local changes: spikes by a Hampel filter, level shifts (steps and sudden ramps) from PELT change points.

- Spikes: the residual from a rolling median (window ~5% of the length, wider than a spike) over the
  robust noise level (MAD); a run whose peak exceeds SPIKE_Z is a spike at its peak, upward or downward
  by sign. The rolling median follows steps and ramps, so they leave no residual.
- Shifts: at each PELT change point (segments.py) the lines on either side are compared where they meet.
  A kink of the trend meets continuously; a step jumps at one point; a sudden increase/decrease is a
  short, steep segment (at most RAMP_MAX of the length) whose ends meet their neighbours continuously
  and whose neighbours differ in level. Position: the first point of the new level (step) or of the ramp.
- Confidence: how far the size exceeds the threshold, in noise units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import median_filter

from .robust import logistic, mad_sigma
from .segments import Line, change_points, lines

SPIKE_Z = 6.0
SHIFT_Z = 5.0
RAMP_MAX = 0.07  # longest ramp read as a sudden change, share of the length
SPIKE_WINDOW = 0.05  # rolling-median window, share of the length


@dataclass
class Change:
    type: str
    position: int
    amplitude: float
    confidence: float
    width: int = 0  # ramp length (sudden changes)

    def component(self, n: int) -> np.ndarray:
        """The change as an additive component (spikes: zero; they are replaced, not subtracted)."""
        t = np.arange(n)
        sign = 1.0 if self.type in ("step_up", "sudden_increase") else -1.0
        if self.type.startswith("step"):
            return sign * self.amplitude * (t >= self.position)
        if self.type.startswith("sudden"):
            return sign * self.amplitude * np.clip((t - self.position) / max(self.width, 1), 0.0, 1.0)
        return np.zeros(n)


def spike_window(n: int) -> int:
    return max(7, int(math.ceil(SPIKE_WINDOW * n)) | 1)


def find_spikes(d: np.ndarray) -> tuple[list[Change], np.ndarray]:
    """Spikes of ``d`` (seasonality removed) and ``d`` with each spike replaced by the rolling median."""
    n = len(d)
    med = median_filter(d, size=spike_window(n), mode="nearest")
    r = d - med
    sigma = mad_sigma(r)
    out, cleaned = [], d.copy()
    if sigma <= 0:
        return out, cleaned
    z = r / sigma
    hot = np.abs(z) > 3.0
    k = 0
    while k < n:
        if not hot[k]:
            k += 1
            continue
        j = k
        while j + 1 < n and hot[j + 1] and np.sign(z[j + 1]) == np.sign(z[k]):
            j += 1
        peak = k + int(np.argmax(np.abs(z[k : j + 1])))
        if abs(z[peak]) >= SPIKE_Z:
            kind = "upward_spike" if z[peak] > 0 else "downward_spike"
            conf = logistic(abs(z[peak]) - SPIKE_Z, 0.8)
            out.append(Change(kind, peak, float(abs(r[peak])), conf))
            cleaned[k : j + 1] = med[k : j + 1]
        k = j + 1
    return out, cleaned


def _shift_at(prev: Line, nxt: Line, at: float) -> float:
    return nxt.at(at) - prev.at(at)


def find_shifts(d: np.ndarray, sigma: float) -> tuple[list[Change], list[int]]:
    """Steps and sudden changes of ``d`` (seasonality and spikes removed); also every change point."""
    n = len(d)
    bkps = change_points(d, sigma)
    segs = lines(d, bkps)
    ramp_max = max(3, int(round(RAMP_MAX * n)))
    threshold = SHIFT_Z * sigma
    out: list[Change] = []
    i = 1
    while i < len(segs):
        prev, cur = segs[i - 1], segs[i]
        length = cur.end - cur.start
        if length <= ramp_max and i + 1 < len(segs):
            nxt = segs[i + 1]
            mid = (cur.start + cur.end) / 2
            total = _shift_at(prev, nxt, mid)
            j1 = cur.at(cur.start - 0.5) - prev.at(cur.start - 0.5)
            j2 = nxt.at(cur.end - 0.5) - cur.at(cur.end - 0.5)
            if abs(total) > threshold:
                conf = logistic(abs(total) / sigma - SHIFT_Z, 0.5)
                if max(abs(j1), abs(j2)) < 0.5 * abs(total) and length >= 2:
                    kind = "sudden_increase" if total > 0 else "sudden_decrease"
                    out.append(Change(kind, cur.start, float(abs(total)), conf, width=length))
                else:  # one of the ends is a jump: a step there (the short segment is noise around it)
                    at = cur.start if abs(j1) >= abs(j2) else cur.end
                    kind = "step_up" if total > 0 else "step_down"
                    out.append(Change(kind, at, float(abs(total)), conf))
                i += 2
                continue
        jump = _shift_at(prev, cur, cur.start - 0.5)
        if abs(jump) > threshold:
            kind = "step_up" if jump > 0 else "step_down"
            out.append(Change(kind, cur.start, float(abs(jump)), logistic(abs(jump) / sigma - SHIFT_Z, 0.5)))
        i += 1
    return out, bkps
