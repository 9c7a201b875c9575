"""Simple forecasting baselines a model must beat, fitted on the train split and tuned on the val split.

Every function works channel-independently on rows: ``inputs`` (rows, seq) input windows and
``truth`` (rows, pred) their futures, one row per window and target, on the normalised scale.
The test windows choose nothing.

- naive: the last input value repeated;
- seasonal naive: the value one season earlier (``season`` <= seq). The season is chosen (unless the
  user gives one): candidates are the peaks of the train split's autocorrelation (of the levels and of
  the first differences, so a trend does not hide the period) and their neighbours (an integer lag only
  brackets a period such as 10.8), each scored by its seasonal-naive MSE on every window before the
  test split (train + val: the method fits nothing, and val alone can be a handful of overlapping
  windows: sunspots' 9 pick 10 where train's 97 pick 11); the lowest wins. No peak: season 1, i.e. the
  naive forecast;
- drift: the line through the first and last input values, extended (exact on a straight line);
- ridge: one linear map window -> horizon with an intercept, ridge penalty chosen on the val windows
  from a log grid (closed form through one SVD of the train inputs; the intercept is not penalised).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

PEAKS = 5                                               # autocorrelation peaks per transform tried on val
ALPHAS = tuple(10.0 ** e for e in np.arange(-6, 4.5, 0.5))  # ridge penalty per train row (x rows)


def naive(inputs: np.ndarray, pred_len: int) -> np.ndarray:
    return np.repeat(inputs[:, -1:], pred_len, axis=1)


def seasonal_naive(inputs: np.ndarray, pred_len: int, season: int) -> np.ndarray:
    """Step h (0-based) repeats input point seq - season + h % season."""
    seq = inputs.shape[1]
    if not 1 <= season <= seq:
        raise ValueError(f"season {season} must be between 1 and the input length {seq}")
    return inputs[:, seq - season + np.arange(pred_len) % season]


def drift(inputs: np.ndarray, pred_len: int) -> np.ndarray:
    """Last value + h * slope of the first-to-last line (h = 1..pred_len); the naive forecast for seq 1."""
    seq = inputs.shape[1]
    slope = (inputs[:, -1:] - inputs[:, :1]) / (seq - 1) if seq > 1 else np.zeros_like(inputs[:, :1])
    return inputs[:, -1:] + slope * np.arange(1, pred_len + 1)


def mse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean((a - b) ** 2))


def autocorrelation(rows: np.ndarray, max_lag: int) -> np.ndarray:
    """Pooled autocorrelation r[0..max_lag] of equal-length rows, each demeaned (lags past a row's end: 0)."""
    x = rows - rows.mean(axis=1, keepdims=True)
    var = float(np.mean(x * x))
    r = np.zeros(max_lag + 1)
    if var == 0.0:
        return r
    for k in range(min(max_lag, x.shape[1] - 1) + 1):
        r[k] = float(np.mean(x[:, : x.shape[1] - k] * x[:, k:])) / var
    return r


def acf_peaks(rows: np.ndarray, max_lag: int, top: int = PEAKS) -> list[int]:
    """Lags 2..max_lag where the autocorrelation is a positive local maximum, the `top` highest first."""
    r = autocorrelation(rows, max_lag + 1)
    peaks = [k for k in range(2, max_lag + 1) if r[k] > 0 and r[k] > r[k - 1] and r[k] >= r[k + 1]]
    return sorted(peaks, key=lambda k: -r[k])[:top]


@dataclass
class SeasonChoice:
    season: int
    source: str                                               # "given" (--season), "train+val" or "none" (no peak)
    scores: dict[int, float] = field(default_factory=dict)    # candidate -> seasonal-naive MSE on train + val windows


def choose_season(train_inputs: np.ndarray, train_truth: np.ndarray, val_inputs: np.ndarray, val_truth: np.ndarray) -> SeasonChoice:
    """The seasonal-naive period: train autocorrelation peaks (+-1), lowest MSE on the train and val windows."""
    seq, pred = train_inputs.shape[1], train_truth.shape[1]
    full = np.hstack([train_inputs, train_truth])
    peaks = set(acf_peaks(full, seq)) | set(acf_peaks(np.diff(full, axis=1), seq))
    candidates = sorted({s + d for s in peaks for d in (-1, 0, 1)} & set(range(2, seq + 1)))
    if not candidates:
        return SeasonChoice(1, "none")
    inputs, truth = np.vstack([train_inputs, val_inputs]), np.vstack([train_truth, val_truth])
    scores = {s: mse(seasonal_naive(inputs, pred, s), truth) for s in candidates}
    return SeasonChoice(min(candidates, key=lambda s: (scores[s], s)), "train+val", scores)


@dataclass
class Ridge:
    """A fitted window -> horizon linear map: predict(x) = (x - x_mean) @ weights + y_mean."""

    weights: np.ndarray
    x_mean: np.ndarray
    y_mean: np.ndarray
    alpha: float                                           # penalty per train row
    val_mse: dict[float, float] = field(default_factory=dict)

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        return (inputs - self.x_mean) @ self.weights + self.y_mean


def fit_ridge(train_inputs: np.ndarray, train_truth: np.ndarray, val_inputs: np.ndarray, val_truth: np.ndarray,
              alphas: tuple[float, ...] = ALPHAS) -> Ridge:
    """Ridge on the train windows, penalty alpha * rows chosen by val MSE (ties: the larger penalty)."""
    x_mean, y_mean = train_inputs.mean(axis=0), train_truth.mean(axis=0)
    u, s, vt = np.linalg.svd(train_inputs - x_mean, full_matrices=False)
    uty = u.T @ (train_truth - y_mean)                      # (k, pred)
    n = len(train_inputs)
    fits, scores = {}, {}
    for alpha in alphas:
        w = vt.T @ ((s / (s * s + alpha * n))[:, None] * uty)  # (seq, pred)
        fits[alpha] = w
        scores[alpha] = mse((val_inputs - x_mean) @ w + y_mean, val_truth)
    best = min(alphas, key=lambda a: (scores[a], -a))
    return Ridge(fits[best], x_mean, y_mean, best, scores)


__all__ = ["ALPHAS", "Ridge", "SeasonChoice", "acf_peaks", "autocorrelation", "choose_season", "drift", "fit_ridge", "mse",
           "naive", "seasonal_naive"]
