"""Series processing shared by training (LLaMA-Factory plugin) and inference (chat API).

Design choices:
- "sp" (value-preserving) encoding, as in ChatTS: centre on the mean, shrink only when the centred
  series leaves [-3, 3), and tell the model the offset/scale in a text prefix whose format is the
  checkpoint's release's (`tsplugin.processing.profiles`: `TSProfile`, `resolve_profile`, `format_prefix`).
- A placeholder `<ts><ts/>` (or `<ts></ts>`) becomes the prefix + exactly as many `<ts>` tokens as the
  encoder gives the series positions (ChatTS: ceil(L / patch_size); every encoder's rule lives in
  `tsplugin.processing.positions`); the model overwrites those positions with the encoder's outputs.
- Encoder input per series is an (L, 2) float32 array `[value, 1.0]`; a batch is zero padded to
  (S, T_max, 2) so the mask column (0 on padding) carries each series' true length.

No LLaMA-Factory import here; torch is only needed by `batch_series`.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

# What a placeholder is and where it may stand: tsplugin.processing.placeholders (one definition, also for tsconvert).
from tsplugin.processing.placeholders import TS_END_TOKEN as DEFAULT_TS_END_TOKEN
from tsplugin.processing.placeholders import TS_TOKEN as DEFAULT_TS_TOKEN
from tsplugin.processing.placeholders import count_placeholders, ts_placeholder
# How many `<ts>` positions a series costs, per encoder: tsplugin.processing.positions (one definition).
from tsplugin.processing.positions import num_patches, num_positions
from tsplugin.processing.profiles import (
    CONFIG_KEY,
    PROFILES,
    RECIPE_KEY,
    TSProfile,
    check_ts_token_ids,
    format_prefix,
    get_profile,
    prefix_from_stats,
    profile_names,
    register_profile,
    resolve_profile,
    sp_stats,
    tokenizer_file_token_ids,
)


def _features(x: np.ndarray, offset: float, scale: float) -> np.ndarray:
    """(L, 2) float32 ``[y, 1.0]`` rows from `sp_stats`' output (y = sp-encoded value)."""
    features = np.empty((x.size, 2), dtype=np.float32)
    features[:, 0] = (x + offset) / scale
    features[:, 1] = 1.0
    return features


def encode_series(values: Iterable[float] | np.ndarray) -> np.ndarray:
    """Encoder input of one series: an (L, 2) float32 array of ``[y, 1.0]`` rows (y = sp-encoded value)."""
    return _features(*sp_stats(values))


def sp_encode(values: Iterable[float] | np.ndarray, profile: str | TSProfile) -> tuple[np.ndarray, str]:
    """Value-preserving encoding of one series: ``(features, prefix)``, the series read once.

    features: (L, 2) float32 ``[value, 1.0]`` rows; prefix: what `profile`'s release writes before the
    series (`format_prefix`).
    """
    x, offset, scale = sp_stats(values)
    return _features(x, offset, scale), prefix_from_stats(x, offset, scale, profile)


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


def _expand(
    text: str,
    series_list: Sequence[Any],
    positions: Callable[[int], int],
    ts_token: str,
    ts_end_token: str,
    profile: str | TSProfile,
    with_features: bool,
) -> tuple[str, list[np.ndarray]]:
    """The i-th placeholder -> series i's prefix + `ts_token` * positions(L_i); each series read once
    (`sp_stats`), its features computed only `with_features`."""
    pattern = ts_placeholder(ts_token, ts_end_token).pattern
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
            x, offset, scale = sp_stats(values)
        except ValueError as err:
            raise ValueError(f"time series {i}: {err}") from None
        if with_features:
            features_list.append(_features(x, offset, scale))
        pieces.append(prefix_from_stats(x, offset, scale, profile) + ts_token * positions(x.size))
    it = iter(pieces)
    return pattern.sub(lambda _m: next(it), text), features_list


def _positions_of(patch_size: int | Callable[[int], int]) -> Callable[[int], int]:
    return patch_size if callable(patch_size) else (lambda length: num_patches(length, patch_size))


def expand_placeholders(
    text: str,
    series_list: Sequence[Any],
    patch_size: int | Callable[[int], int],
    ts_token: str = DEFAULT_TS_TOKEN,
    ts_end_token: str = DEFAULT_TS_END_TOKEN,
    *,
    profile: str | TSProfile,
) -> tuple[str, list[np.ndarray]]:
    """Replace the i-th placeholder with series i's prefix (as `profile`'s release writes it) + `ts_token` * num_patches.

    `patch_size` is a patch size (ceil(L / patch_size) positions) or a function length -> positions
    (encoders with other rules, `tsplugin.processing.positions`). Returns the expanded text and the
    per-series (L, 2) feature arrays, in placeholder order.
    """
    return _expand(text, series_list, _positions_of(patch_size), ts_token, ts_end_token, profile, with_features=True)


def expand_text(
    text: str,
    series_list: Sequence[Any],
    patch_size: int | Callable[[int], int],
    ts_token: str = DEFAULT_TS_TOKEN,
    ts_end_token: str = DEFAULT_TS_END_TOKEN,
    *,
    profile: str | TSProfile,
) -> str:
    """`expand_placeholders`' text alone: the prefixes are computed, the features are not (the training
    data path writes the text when it tokenises and encodes the features when it collates a batch)."""
    return _expand(text, series_list, _positions_of(patch_size), ts_token, ts_end_token, profile, with_features=False)[0]


def _config_dict(config: Any) -> dict[str, Any]:
    """A config object as a dict (transformers configs: `to_dict()`; anything else: its attributes)."""
    to_dict = getattr(config, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    names = [n for n in dir(config) if not n.startswith("_")]
    return {n: getattr(config, n) for n in names if not callable(getattr(config, n))}


class TimeSeriesProcessor:
    """Holds the position rule and token strings of one model; turns (text, series) into model inputs.

    The rule is ChatTS's ceil(L / patch_size), or, for `qwen_ts` models, the rule of the encoder named
    in the config's `ts.encoder` block (`tsplugin.processing.positions`; no torch, no weights).
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
        *,
        profile: str | TSProfile,
        profile_reason: str = "given",
    ):
        if encoder is None and forecast is None and (patch_size is None or int(patch_size) <= 0):
            raise ValueError(f"patch_size must be positive, got {patch_size}")
        self.patch_size = int(patch_size) if patch_size is not None else None
        self.encoder = dict(encoder) if encoder is not None else None
        self.forecast = dict(forecast) if forecast is not None else None
        self.ts_token = ts_token
        self.ts_end_token = ts_end_token
        self.profile = get_profile(profile)
        self.profile_reason = profile_reason

    def __repr__(self) -> str:
        rule = f"encoder={self.encoder.get('name')!r}" if self.encoder is not None else f"patch_size={self.patch_size}"
        if self.forecast is not None:
            rule = f"forecast seq_len={self.forecast.get('seq_len')}"
        return (
            f"TimeSeriesProcessor({rule}, profile={self.profile.name!r}, ts_token={self.ts_token!r}, "
            f"ts_end_token={self.ts_end_token!r})"
        )

    @classmethod
    def from_config(
        cls, config: Any, model_dir: str | os.PathLike | None = None, profile: str | None = None, **kwargs: Any
    ) -> "TimeSeriesProcessor":
        """Build from a model config (a config object or a plain config dict).

        The encoding profile comes from `resolve_profile(config, model_dir, profile)`: `profile` (the
        recipe's `timeseries_profile`) wins over config.json `ts_profile`, then what the checkpoint ships.
        A Time-LLM forecaster writes no prefix (it builds its own prompt), so it needs no profile.
        """
        data = config if isinstance(config, Mapping) else _config_dict(config)
        forecast = data.get("forecast")
        if isinstance(forecast, Mapping):  # timellm: Time-LLM forecaster
            return cls(None, forecast=dict(forecast), profile=profile or "tsfactory-v0",
                       profile_reason="Time-LLM forecaster: raw values, its own prompt, no series prefix", **kwargs)
        ts = data.get("ts")
        if not isinstance(ts, Mapping) or not (isinstance(ts.get("encoder"), Mapping) or "patch_size" in ts):
            raise ValueError(
                "model config has no `ts` block with a patch_size; is this a time-series model "
                "(model_type chatts/qwen3ts/qwen_ts)? Build one with `tsplugin init-model` or `tsplugin build-model`."
            )
        resolved, reason = resolve_profile(data, model_dir, profile)
        kwargs.update(profile=resolved, profile_reason=reason)
        if isinstance(ts.get("encoder"), Mapping):  # qwen_ts: registry encoder
            return cls(None, encoder=dict(ts["encoder"]), **kwargs)
        return cls(ts["patch_size"], **kwargs)

    @classmethod
    def from_pretrained(
        cls, model_dir: str | os.PathLike, profile: str | None = None, **kwargs: Any
    ) -> "TimeSeriesProcessor":
        """Build from a checkpoint directory (reads its config.json and file names; no weights, no shipped code)."""
        path = os.path.join(os.fspath(model_dir), "config.json")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path} not found: pass a local model directory containing config.json")
        with open(path, encoding="utf-8") as f:
            return cls.from_config(json.load(f), model_dir=model_dir, profile=profile, **kwargs)

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
        return sp_encode(values, self.profile)

    def prefix(self, values: Iterable[float]) -> str:
        """The text written before a series' `<ts>` positions (this checkpoint's profile)."""
        return format_prefix(values, self.profile)

    def num_patches(self, length: int) -> int:
        """`<ts>` positions a series of `length` points costs with this model's encoder."""
        if self.forecast is not None:
            if int(length) <= 0:
                raise ValueError(f"a time series has length {length}; it needs at least one value")
            return 1
        if self.encoder is not None:
            return num_positions(self.encoder, length)
        return num_patches(length, self.patch_size)

    def count_placeholders(self, text: str) -> int:
        return count_placeholders(text, self.ts_token, self.ts_end_token)

    def expand(self, text: str, series_list: Sequence[Any]) -> tuple[str, list[np.ndarray]]:
        return expand_placeholders(
            text, series_list, self.num_patches, self.ts_token, self.ts_end_token, profile=self.profile
        )

    def batch(self, features_list: Sequence[np.ndarray]) -> "torch.Tensor":  # noqa: F821
        return batch_series(features_list)

    def __call__(self, text: str, series_list: Sequence[Any]) -> tuple[str, "torch.Tensor"]:  # noqa: F821
        """Expand one text and return it with its batched series tensor (S, T_max, 2)."""
        new_text, feats = self.expand(text, series_list)
        return new_text, batch_series(feats)


__all__ = [
    "CONFIG_KEY",
    "DEFAULT_TS_END_TOKEN",
    "DEFAULT_TS_TOKEN",
    "PROFILES",
    "RECIPE_KEY",
    "TSProfile",
    "TimeSeriesProcessor",
    "batch_series",
    "check_ts_token_ids",
    "count_placeholders",
    "encode_series",
    "expand_placeholders",
    "expand_text",
    "format_prefix",
    "get_profile",
    "num_patches",
    "num_positions",
    "profile_names",
    "register_profile",
    "resolve_profile",
    "sp_encode",
    "sp_stats",
    "tokenizer_file_token_ids",
]
