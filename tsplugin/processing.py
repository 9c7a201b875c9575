"""Series processing shared by training (LLaMA-Factory plugin) and inference (chat API).

Design choices:
- "sp" (value-preserving) encoding, as in ChatTS: centre on the mean, shrink only when the centred
  series leaves [-3, 3), and tell the model the offset/scale in a text prefix.
- A placeholder `<ts><ts/>` (or `<ts></ts>`) becomes the prefix + exactly ceil(L / patch_size)
  `<ts>` tokens; the model overwrites those positions with the encoder's patch embeddings.
- Encoder input per series is an (L, 2) float32 array `[value, 1.0]`; a batch is zero padded to
  (S, T_max, 2) so the mask column (0 on padding) carries each series' true length.

No LLaMA-Factory import here; torch is only needed by `batch_series`.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Callable, Iterable, Sequence

import numpy as np

DEFAULT_TS_TOKEN = "<ts>"
DEFAULT_TS_END_TOKEN = "<ts/>"
# Values whose centred magnitude reaches this are scaled down so that max |y| == SP_LIMIT.
SP_LIMIT = 3.0


def sp_encode(values: Iterable[float] | np.ndarray) -> tuple[np.ndarray, str]:
    """Value-preserving encoding of one series.

    Returns ``(features, prefix)``: features is an (L, 2) float32 array of ``[value, 1.0]`` rows and
    prefix is ``"[Value Offset: {-m:.4f}|Value Scaling: {s:.4f}]"``.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"a time series must be 1-D, got shape {tuple(x.shape)}")
    if x.size == 0:
        raise ValueError("a time series has length 0; every <ts><ts/> placeholder needs at least one value")
    bad = ~np.isfinite(x)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"time series has {int(bad.sum())} non-finite value(s) (first at index {first}: {x[first]}); "
            "remove or interpolate NaN/inf before encoding (tsconvert does this when converting)"
        )
    mean = float(x.mean())
    y = x - mean
    scale = 1.0
    peak = float(np.abs(y).max())
    if peak >= SP_LIMIT:
        scale = peak / SP_LIMIT
        y = y / scale
    features = np.empty((x.size, 2), dtype=np.float32)
    features[:, 0] = y
    features[:, 1] = 1.0
    prefix = f"[Value Offset: {-mean:.4f}|Value Scaling: {scale:.4f}]"
    return features, prefix


def num_patches(length: int, patch_size: int) -> int:
    """Number of encoder patches (= `<ts>` tokens) for a series of `length` points."""
    if patch_size <= 0:
        raise ValueError(f"patch_size must be positive, got {patch_size}")
    if length <= 0:
        raise ValueError(f"a time series has length {length}; it needs at least one value")
    return -(-int(length) // int(patch_size))


def batch_series(features_list: Sequence[np.ndarray]) -> "torch.Tensor":  # noqa: F821
    """Stack (L_i, 2) feature arrays into a zero-padded FloatTensor (S, T_max, 2) (mask 0 on padding)."""
    import torch

    if len(features_list) == 0:
        return torch.zeros((0, 0, 2), dtype=torch.float32)
    arrays = [np.asarray(f, dtype=np.float32) for f in features_list]
    for i, a in enumerate(arrays):
        if a.ndim != 2 or a.shape[1] != 2 or a.shape[0] == 0:
            raise ValueError(f"series {i}: expected a non-empty (L, 2) [value, mask] array, got shape {a.shape}")
    t_max = max(a.shape[0] for a in arrays)
    out = np.zeros((len(arrays), t_max, 2), dtype=np.float32)  # (S, T_max, 2)
    for i, a in enumerate(arrays):
        out[i, : a.shape[0]] = a
    return torch.from_numpy(out)


def _placeholder_pattern(ts_token: str, ts_end_token: str) -> re.Pattern[str]:
    spellings = [ts_token + ts_end_token]
    if ts_token.startswith("<"):  # also accept the XML-like closing tag: <ts></ts>
        spellings.append(ts_token + "</" + ts_token[1:])
    return re.compile("|".join(re.escape(s) for s in dict.fromkeys(spellings)))


def count_placeholders(text: str, ts_token: str = DEFAULT_TS_TOKEN, ts_end_token: str = DEFAULT_TS_END_TOKEN) -> int:
    """Number of series placeholders (`<ts><ts/>` or `<ts></ts>`) in `text`."""
    return len(_placeholder_pattern(ts_token, ts_end_token).findall(text))


def expand_placeholders(
    text: str,
    series_list: Sequence[Any],
    patch_size: int | Callable[[int], int],
    ts_token: str = DEFAULT_TS_TOKEN,
    ts_end_token: str = DEFAULT_TS_END_TOKEN,
) -> tuple[str, list[np.ndarray]]:
    """Replace the i-th placeholder with series i's sp prefix + `ts_token` * num_patches.

    `patch_size` is a patch size (ceil(L / patch_size) positions) or a function length -> positions
    (encoders with other rules, e.g. PatchTST's fixed window). Returns the expanded text and the
    per-series (L, 2) feature arrays, in placeholder order.
    """
    positions = patch_size if callable(patch_size) else (lambda length: num_patches(length, patch_size))
    pattern = _placeholder_pattern(ts_token, ts_end_token)
    n_placeholders = len(pattern.findall(text))
    if n_placeholders != len(series_list):
        raise ValueError(
            f"{n_placeholders} {ts_token}{ts_end_token} placeholder(s) in the text but {len(series_list)} "
            "time series; write exactly one placeholder per series, in order"
        )
    features_list: list[np.ndarray] = []
    pieces: list[str] = []
    for i, values in enumerate(series_list):
        try:
            features, prefix = sp_encode(values)
        except ValueError as err:
            raise ValueError(f"time series {i}: {err}") from None
        features_list.append(features)
        pieces.append(prefix + ts_token * positions(features.shape[0]))
    it = iter(pieces)
    return pattern.sub(lambda _m: next(it), text), features_list


class TimeSeriesProcessor:
    """Holds the position rule and token strings of one model; turns (text, series) into model inputs.

    The rule is ChatTS's ceil(L / patch_size), or, for `qwen_ts` models, the `num_positions` of the
    encoder named in the config's `ts.encoder` block (read from the registry; no weights are loaded).
    For `timellm` forecasters (a `forecast` block) every series costs ONE `<ts>` position: the forecaster
    never reads the record's text, it builds its own per-series prompt (tsplugin.models.timellm), and
    `is_forecaster` tells the data plugin to hand it raw values and the forecast targets.
    """

    def __init__(
        self,
        patch_size: int | None = None,
        ts_token: str = DEFAULT_TS_TOKEN,
        ts_end_token: str = DEFAULT_TS_END_TOKEN,
        encoder: dict[str, Any] | None = None,
        forecast: dict[str, Any] | None = None,
    ):
        if encoder is None and forecast is None and (patch_size is None or int(patch_size) <= 0):
            raise ValueError(f"patch_size must be positive, got {patch_size}")
        self.patch_size = int(patch_size) if patch_size is not None else None
        self.encoder = dict(encoder) if encoder is not None else None
        self.forecast = dict(forecast) if forecast is not None else None
        self.ts_token = ts_token
        self.ts_end_token = ts_end_token

    def __repr__(self) -> str:
        rule = f"encoder={self.encoder.get('name')!r}" if self.encoder is not None else f"patch_size={self.patch_size}"
        if self.forecast is not None:
            rule = f"forecast seq_len={self.forecast.get('seq_len')}"
        return f"TimeSeriesProcessor({rule}, ts_token={self.ts_token!r}, ts_end_token={self.ts_end_token!r})"

    @classmethod
    def from_config(cls, config: Any, **kwargs: Any) -> "TimeSeriesProcessor":
        """Build from a model config (object with a `ts` dict, or a plain config dict)."""
        forecast = config.get("forecast") if isinstance(config, dict) else getattr(config, "forecast", None)
        if isinstance(forecast, dict):  # timellm: Time-LLM forecaster
            return cls(None, forecast=forecast, **kwargs)
        ts = config.get("ts") if isinstance(config, dict) else getattr(config, "ts", None)
        if isinstance(ts, dict) and isinstance(ts.get("encoder"), dict):  # qwen_ts: registry encoder
            return cls(None, encoder=ts["encoder"], **kwargs)
        if not isinstance(ts, dict) or "patch_size" not in ts:
            raise ValueError(
                "model config has no `ts` block with a patch_size; is this a time-series model "
                "(model_type chatts/qwen3ts/qwen_ts)? Build one with `tsplugin init-model` or `tsplugin build-model`."
            )
        return cls(ts["patch_size"], **kwargs)

    @classmethod
    def from_pretrained(cls, model_dir: str | os.PathLike, **kwargs: Any) -> "TimeSeriesProcessor":
        """Build from a checkpoint directory (reads its config.json; no model weights are loaded)."""
        path = os.path.join(os.fspath(model_dir), "config.json")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path} not found: pass a local model directory containing config.json")
        with open(path, encoding="utf-8") as f:
            return cls.from_config(json.load(f), **kwargs)

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> list[str]:
        """Nothing to write: the patch size lives in config.json, the tokens in the tokenizer.

        LLaMA-Factory calls this on every processor it holds (checkpoints, export); the model's own
        files already carry everything `from_pretrained` reads back.
        """
        return []

    @property
    def is_forecaster(self) -> bool:
        """True for a Time-LLM forecaster: raw series in, forecast targets carried to the model."""
        return self.forecast is not None

    def encode(self, values: Iterable[float]) -> tuple[np.ndarray, str]:
        return sp_encode(values)

    def num_patches(self, length: int) -> int:
        """`<ts>` positions a series of `length` points costs with this model's encoder."""
        if self.forecast is not None:
            if int(length) <= 0:
                raise ValueError(f"a time series has length {length}; it needs at least one value")
            return 1
        if self.encoder is not None:
            from tsplugin.encoders import encoder_num_positions

            return encoder_num_positions(self.encoder, length)
        return num_patches(length, self.patch_size)

    def count_placeholders(self, text: str) -> int:
        return count_placeholders(text, self.ts_token, self.ts_end_token)

    def expand(self, text: str, series_list: Sequence[Any]) -> tuple[str, list[np.ndarray]]:
        return expand_placeholders(text, series_list, self.num_patches, self.ts_token, self.ts_end_token)

    def batch(self, features_list: Sequence[np.ndarray]) -> "torch.Tensor":  # noqa: F821
        return batch_series(features_list)

    def __call__(self, text: str, series_list: Sequence[Any]) -> tuple[str, "torch.Tensor"]:  # noqa: F821
        """Expand one text and return it with its batched series tensor (S, T_max, 2)."""
        new_text, feats = self.expand(text, series_list)
        return new_text, batch_series(feats)


__all__ = [
    "DEFAULT_TS_END_TOKEN",
    "DEFAULT_TS_TOKEN",
    "TimeSeriesProcessor",
    "batch_series",
    "count_placeholders",
    "expand_placeholders",
    "num_patches",
    "sp_encode",
]
