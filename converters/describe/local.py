"""Local changes (spikes, steps, sudden increases/decreases) from PELT change points (segments.py).

A change point splits the series into least-squares lines. Long segments carry the trend; a local change
is a cluster of short segments (each at most RAMP_MAX of the length) between two long ones, or a jump
where two long segments meet:
- the level after the cluster minus the level before it (the two long lines extrapolated to the
  cluster's middle) is the shift; above the threshold, what it is comes from one least-squares fit on the
  window around it (_shape): a line plus the best of step, ramp (start and width) and triangular spike
  candidates. A ramp is a sudden increase/decrease when it beats the best step by one parameter's BIC;
  a spike when it beats every shift (a spike at a trend kink makes the two lines disagree too);
- otherwise the largest deviation of the points inside from the line joining the two levels, above
  SPIKE_Z noise units, is an upward or downward spike at its peak;
- a trend kink meets continuously and leaves nothing.
Then (prune) the changes of the final pass are refitted jointly with the trend and the season, and the
ones that shrink below their threshold go: they were one pass's misfit (a season edge whose amplitude a
real step inflated).
Thresholds: a number of noise units (robust sigma of first differences, MAD-based) and a share of the
series' structural range, whichever is larger (a low-noise series must not report the misfit of its
season). A shift is measured between two fitted lines, so its threshold (SHIFT_Z) is below a spike's.
Positions: the first point of the new level (step), of the ramp (sudden change), the peak (spike).
Confidence (what describe reports, set by prune from the final pass's joint fit): the probability that
the change's true size clears its threshold, given the estimate and its standard error; the provisional
one of earlier passes (_conf, the size over the threshold) is never reported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .robust import logistic
from .segments import Line, change_points, lines

SPIKE_Z = 6.0
SHIFT_Z = 3.5
SHIFT_SE_Z = 5.0  # ... or this many standard errors of the jump between the two lines, when that is less
SHIFT_FLOOR_Z = 2.0  # but never below this many noise units
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
    threshold: float = 0.0  # the size it had to exceed
    se: float = 0.0  # standard error of the size (the final joint fit's)

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
    """Provisional confidence of a pass's change (prune replaces it with ``confidence``)."""
    return logistic(size / threshold - 1.0, 6.0)


@dataclass
class _Shape:
    kind: str  # "step", "sudden", "spike" or "kink"
    position: int  # first point of the new level, start of the ramp, or the peak
    width: int  # ramp width (sudden), else 0
    size: float  # signed: the shift, or the spike's height


def _shape(d: np.ndarray, lo: int, hi: int, first: int, last: int, sigma: float) -> _Shape:
    """What a change near [first, last] is, from the window d[lo:hi) that holds one line and the change:
    the candidate column that, added to the line, fits the window best by least squares. Candidates:
    ramps clip((t - p) / w, 0, 1) with w up to RAMP_MAX of the length (w = 1: a step at p + 1),
    triangular spikes at p (half-width up to 1% of the length + 1, synth's and most outliers') and hinges
    max(t - p, 0), a trend kink. A ramp is a sudden change only when it beats the best step by more than
    one parameter's BIC (sigma^2 log m); a spike when it beats every shift (an excursion that comes
    back); a kink that beats every shift leaves nothing (the two lines meet where the trend turns: the
    trend's, not a local change)."""
    n, m = len(d), hi - lo
    t = np.arange(lo, hi, dtype=float)
    w_max = max(2, round(RAMP_MAX * n))
    ramps = [(p, w) for w in range(1, w_max + 1) for p in range(max(lo, first - w), min(hi - 2, last + 1) + 1)]
    spikes = [(p, h) for h in range(1, max(1, n // 100) + 2) for p in range(max(lo + 1, first - 1), min(hi - 1, last + 2))]
    kinks = list(range(max(lo + 1, first - 1), min(hi - 2, last + 1) + 1))
    G = np.array([np.clip((t - p) / w, 0.0, 1.0) for p, w in ramps]
                 + [np.clip(1.0 - np.abs(t - p) / (h + 1), 0.0, None) for p, h in spikes]
                 + [np.maximum(t - p, 0.0) for p in kinks])  # (candidates, m)
    q, _ = np.linalg.qr(np.column_stack([np.ones(m), t - lo]))  # the line, projected out of both sides
    y = d[lo:hi] - q @ (q.T @ d[lo:hi])
    G = G - (G @ q) @ q.T
    gg = np.maximum(np.einsum("ij,ij->i", G, G), 1e-12)
    gy = G @ y
    gain = gy ** 2 / gg  # RSS drop of each candidate
    kind = np.array([0 if w == 1 else 1 for _, w in ramps] + [2] * len(spikes) + [3] * len(kinks))
    best = {k: int(np.argmax(np.where(kind == k, gain, -1.0))) for k in (0, 1, 2, 3) if np.any(kind == k)}
    shift = best[0]
    if 1 in best and gain[best[1]] - gain[best[0]] > sigma * sigma * math.log(max(m, 2)):
        shift = best[1]
    if 2 in best and gain[best[2]] > gain[shift]:
        k = best[2]
        return _Shape("spike", spikes[k - len(ramps)][0], 0, float(gy[k] / gg[k]))
    if 3 in best and gain[best[3]] > gain[shift]:
        k = best[3]
        return _Shape("kink", kinks[k - len(ramps) - len(spikes)], 0, float(gy[k] / gg[k]))
    p, w = ramps[shift]
    size = float(gy[shift] / gg[shift])
    return _Shape("step", p + 1, 0, size) if w == 1 else _Shape("sudden", p, w, size)


def _change(shape: _Shape, shift: float, shift_min: float, spike_min: float, start: int, end: int) -> Change | None:
    """The change a shape read says, sized by the lines' shift (a level shift) or the fit (a spike); none
    for a kink."""
    if shape.kind == "kink":
        return None
    if shape.kind == "spike":
        size = abs(shape.size)
        if size <= spike_min:
            return None
        kind = "upward_spike" if shape.size > 0 else "downward_spike"
        return Change(kind, shape.position, size, _conf(size, spike_min), end=max(end, shape.position + 1),
                      start=min(start, shape.position), threshold=spike_min)
    up = shift > 0
    if shape.kind == "sudden":
        return Change("sudden_increase" if up else "sudden_decrease", shape.position, float(abs(shift)),
                      _conf(abs(shift), shift_min), width=shape.width, threshold=shift_min)
    return Change("step_up" if up else "step_down", shape.position, float(abs(shift)), _conf(abs(shift), shift_min),
                  threshold=shift_min)


def _cluster(d: np.ndarray, prev: Line, nxt: Line, start: int, end: int,
             shift_min: float, spike_min: float, sigma: float) -> Change | None:
    """What the short segments [start, end) between the long lines ``prev`` and ``nxt`` are, if anything."""
    t = np.arange(start, end)
    before, after = prev.at, nxt.at
    mid = (start + end - 1) / 2
    shift = after(mid) - before(mid)
    shift_min = _between_lines(shift_min, sigma, prev, nxt, RANGE_SHARE * _span(d))
    if abs(shift) > shift_min:
        lo, hi = _window(len(d), prev.start, nxt.end, start, end)
        return _change(_shape(d, lo, hi, start, end - 1, sigma), shift, shift_min, spike_min, start, end)
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
    span = _span(d)
    return max(SHIFT_Z * sigma, RANGE_SHARE * span), max(SPIKE_Z * sigma, RANGE_SHARE * span)


def _span(d: np.ndarray) -> float:
    return float(np.percentile(d, 95) - np.percentile(d, 5))


def _between_lines(shift_min: float, sigma: float, prev: Line, nxt: Line, range_min: float) -> float:
    """The smallest shift between two long lines: SHIFT_SE_Z standard errors of the difference of their
    ends (a fitted line's end value has variance ~ 4 sigma^2 / points), at least SHIFT_FLOOR_Z noise units,
    at most the global threshold, never below the share of the range (``range_min``). Long, quiet levels show a shift of a few noise units (the Nile's 1898
    drop is 2.5 sigma, 5.7 standard errors)."""
    m1, m2 = max(prev.end - prev.start, 2), max(nxt.end - nxt.start, 2)
    se = sigma * math.sqrt(4.0 / m1 + 4.0 / m2)
    return min(shift_min, max(SHIFT_SE_Z * se, SHIFT_FLOOR_Z * sigma, range_min))


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
                jump_min = _between_lines(shift_min, sigma, prev, cur, RANGE_SHARE * _span(d))
                if abs(jump) > jump_min:
                    lo, hi = _window(n, prev.start, cur.end, cur.start, cur.start)
                    change = _change(_shape(d, lo, hi, cur.start - 1, cur.start, sigma), jump, jump_min, spike_min,
                                     cur.start - 1, cur.start + 1)
                    if change is not None:
                        out.append(change)
                        if change.type.endswith("spike"):
                            _clean_spike(cleaned, prev, cur, change.start, change.end)
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
                _clean_spike(cleaned, prev, nxt, start, end)
        prev = nxt  # the long line after the cluster is the next reference
        i = j + 2 if nxt is not None else j + 1
    return out, cleaned


def _clean_spike(cleaned: np.ndarray, prev: Line, nxt: Line, start: int, end: int) -> None:
    """Replace a spike's points [start, end) by the line joining the levels on either side."""
    t = np.arange(start, end)
    cleaned[start:end] = [prev.at(x) + (nxt.at(x) - prev.at(x)) * (x - start) / max(end - start, 1) for x in t]


def _column(c: Change, n: int) -> np.ndarray:
    """The change's shape with unit size and its type's sign (a spike: a triangle of the cluster's width)."""
    if c.type.endswith("spike"):
        t = np.arange(n)
        half = max(1, c.end - c.position - 1)
        col = np.clip(1.0 - np.abs(t - c.position) / (half + 1), 0.0, None)
        return col if c.type == "upward_spike" else -col
    return c.component(n) / max(c.amplitude, 1e-300)


def joint_sizes(y: np.ndarray, structure: np.ndarray, changes: list[Change],
                sigma: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Each change's size (signed along its type's direction) when all of them are fitted by least squares
    together with ``structure`` (trend spline and seasonal component as columns), and its standard error
    (sigma sqrt of the diagonal of (X'X)^-1, ``sigma`` the noise level)."""
    if not changes:
        return np.zeros(0), np.zeros(0)
    X = np.hstack([structure, np.column_stack([_column(c, len(y)) for c in changes])])
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    k = structure.shape[1]
    se = sigma * np.sqrt(np.maximum(np.diag(np.linalg.pinv(X.T @ X))[k:], 0.0))
    return coef[k:], se


def confidence(size: float, threshold: float, se: float) -> float:
    """How sure a change is: the probability that its true size clears the threshold it was reported
    against, given its estimate and standard error (normal sampling error): Phi((size - threshold) / se)."""
    if se <= 0:
        return 1.0 if size > threshold else 0.0
    return 0.5 * math.erfc(-(size - threshold) / (se * math.sqrt(2.0)))


def prune(y: np.ndarray, structure: np.ndarray, changes: list[Change], shift_min: float,
          spike_min: float, sigma: float) -> list[Change]:
    """Backward elimination of changes that do not survive a joint fit: refit every change with the trend
    and season (``structure``) and drop the one furthest below its threshold (or of the wrong sign) until
    all pass. A change read from one pass's misfit (an edge of a season whose amplitude absorbed a real
    step, a kink the trend missed) shrinks when the real cause is in the model beside it. The changes
    kept get their joint size and its confidence (``confidence``; ``sigma`` the noise level)."""
    kept = list(changes)
    while kept:
        sizes, ses = joint_sizes(y, structure, kept, sigma)
        mins = np.array([c.threshold or (spike_min if c.type.endswith("spike") else shift_min) for c in kept])
        k = int(np.argmin(sizes / mins))
        if sizes[k] >= mins[k]:
            for c, size, m, se in zip(kept, sizes, mins, ses):  # the joint sizes are the better estimates
                c.amplitude, c.se = float(size), float(se)
                c.confidence = confidence(float(size), float(m), float(se))
                c.threshold = float(m)
            break
        kept.pop(k)
    return kept
