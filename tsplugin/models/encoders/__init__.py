"""Time-series encoders for `qwen_ts` models, in one registry.

Contract every encoder keeps (so the model, the processor and the projector never special-case one):
- built by `builder(ts_config: dict, llm_config) -> nn.Module`, where `ts_config` is the encoder block
  of the model config (`config.ts["encoder"]`) and `llm_config` the LLM's config (hidden size,
  word embeddings' size);
- `forward(timeseries (S, T_max, 2) [value, mask]) -> (features (P, d_out), counts (S,) long)`:
  the positions of all series concatenated in series order, `counts[i]` positions for series i;
- a position rule registered under the same name in `tsplugin.processing.positions` (how many
  positions a series of L points takes, the input width): the processor expands placeholders with it
  without torch or weights, and the builder's `num_positions(length, ts_config)` reads it;
- an `out_dim` attribute on the built module: the feature width the projector starts from.

Built-ins register themselves when this package is imported; `register_encoder` refuses duplicates and
`get_encoder` lists the valid names.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

from torch import nn

from tsplugin.processing.positions import POSITION_RULES, num_positions
from tsplugin.registry import Registry

EncoderBuilder = Callable[[dict, Any], nn.Module]


def _check_builder(name: str, builder: EncoderBuilder) -> None:
    if name not in POSITION_RULES:
        raise TypeError(f"encoder {name!r}: register its position rule first (tsplugin.processing.positions."
                        f"register_position_rule); rules: {', '.join(POSITION_RULES.names())}")


ENCODERS: Registry[EncoderBuilder] = Registry("time-series encoder", check=_check_builder)

# Modules that register the built-in encoders (imported at the end of this file).
_BUILTIN_MODULES = ("chatts_mlp", "patchtst", "timellm")


def register_encoder(name: str, builder: EncoderBuilder) -> EncoderBuilder:
    """Register `builder` under `name` (refuses duplicates); returns the builder, so it works as a decorator helper."""
    return ENCODERS.register(name, builder)


def get_encoder(name: str) -> EncoderBuilder:
    """The builder registered as `name`; unknown names raise with the list of valid ones."""
    return ENCODERS.get(name)


def build_encoder(ts_config: dict, llm_config: Any) -> nn.Module:
    """Build the encoder named by `ts_config["name"]`."""
    return get_encoder(_name_of(ts_config))(ts_config, llm_config)


def encoder_num_positions(ts_config: dict, length: int) -> int:
    """Positions (`<ts>` tokens) a series of `length` points costs with this encoder block (its rule in
    tsplugin.processing.positions)."""
    get_encoder(_name_of(ts_config))
    return num_positions(ts_config, length)


def _name_of(ts_config: dict) -> str:
    name = ts_config.get("name") if isinstance(ts_config, dict) else None
    if not isinstance(name, str):
        raise ValueError(f"encoder block {ts_config!r} has no `name`; valid: {', '.join(ENCODERS.names())}")
    return name


def series_lengths(timeseries: "Any") -> "Any":
    """True length of each series (S,) from the mask column of a (S, T_max, 2) batch."""
    return (timeseries[..., -1] > 0).sum(dim=1)


for _module in _BUILTIN_MODULES:
    try:
        importlib.import_module(f"{__name__}.{_module}")
    except ModuleNotFoundError as err:  # an encoder module not written yet in this checkout
        if err.name != f"{__name__}.{_module}":
            raise

__all__ = [
    "ENCODERS",
    "build_encoder",
    "encoder_num_positions",
    "get_encoder",
    "register_encoder",
    "series_lengths",
]
