"""`TimeLLMConfig` (model_type `timellm`): a Qwen2/Qwen3 `text_config` + the `forecast` block.

`forecast` keys (defaults = the users' run guide, ETTm1 512 -> 96):
`seq_len` 512, `pred_len` 96, `patch_len` 16, `stride` 8, `d_model` 32 (patch embedding width),
`d_ff` 32 (LLM hidden channels read by the head, and the reprogramming key width per head),
`num_heads` 8, `num_prototypes` 1000, `dropout` 0.1, `top_k_lags` 5, `prototype_vocab` (how many
word-embedding rows the prototypes mix; None = the whole vocabulary), `description` (the dataset
description of the prompt). `ts_token_start_index` / `ts_token_end_index`: ids of `<ts>` / `<ts/>`.
"""

from __future__ import annotations

from typing import Any

from transformers import AutoConfig, PretrainedConfig

from tsplugin.models.configuration_ts import TextConfigSizesMixin, build_text_config

FORECAST_DEFAULTS: dict[str, Any] = {
    "seq_len": 512,
    "pred_len": 96,
    "patch_len": 16,
    "stride": 8,
    "d_model": 32,
    "d_ff": 32,
    "num_heads": 8,
    "num_prototypes": 1000,
    "dropout": 0.1,
    "top_k_lags": 5,
    "prototype_vocab": None,
    "description": "A time series.",
}
_POSITIVE = ("seq_len", "pred_len", "patch_len", "stride", "d_model", "d_ff", "num_heads", "num_prototypes", "top_k_lags")


def forecast_block(block: dict[str, Any] | None, hidden_size: int | None = None, vocab_size: int | None = None) -> dict[str, Any]:
    """The `forecast` block with defaults filled in; errors name the key and what is allowed."""
    block = dict(block or {})
    unknown = sorted(set(block) - set(FORECAST_DEFAULTS))
    if unknown:
        raise ValueError(f"timellm forecast block: unknown keys {unknown}; valid keys: {sorted(FORECAST_DEFAULTS)}")
    out = {**FORECAST_DEFAULTS, **block}
    for key in _POSITIVE:
        if not isinstance(out[key], int) or out[key] <= 0:
            raise ValueError(f"timellm forecast block: {key} must be a positive integer, got {out[key]!r}")
    if out["patch_len"] > out["seq_len"]:
        raise ValueError(f"timellm forecast block: patch_len {out['patch_len']} exceeds seq_len {out['seq_len']}")
    if hidden_size is not None and out["d_ff"] > hidden_size:
        raise ValueError(f"timellm forecast block: d_ff {out['d_ff']} exceeds the LLM hidden size {hidden_size} "
                         "(the head reads the first d_ff channels of the LLM's hidden states)")
    rows = out["prototype_vocab"]
    if rows is not None and (not isinstance(rows, int) or rows <= 0 or (vocab_size is not None and rows > vocab_size)):
        raise ValueError(f"timellm forecast block: prototype_vocab {rows!r} must be a positive integer <= the vocabulary "
                         f"size {vocab_size}, or null for the whole vocabulary")
    if not 0.0 <= float(out["dropout"]) < 1.0:
        raise ValueError(f"timellm forecast block: dropout {out['dropout']} must be in [0, 1)")
    return out


class TimeLLMConfig(TextConfigSizesMixin, PretrainedConfig):
    """Composite config: `text_config` (the frozen LLM) + `forecast` block + `<ts>` token ids."""

    model_type = "timellm"
    sub_configs = {"text_config": AutoConfig}

    def __init__(
        self,
        text_config: dict[str, Any] | PretrainedConfig | None = None,
        forecast: dict[str, Any] | None = None,
        ts_token_start_index: int | None = None,
        ts_token_end_index: int | None = None,
        **kwargs: Any,
    ):
        text_config = build_text_config(text_config, "timellm", default_type="qwen2")
        self.text_config = text_config
        self.forecast = forecast_block(forecast, int(text_config.hidden_size), int(text_config.vocab_size)) if forecast is not None else None
        self.ts_token_start_index = ts_token_start_index
        self.ts_token_end_index = ts_token_end_index
        kwargs.setdefault("tie_word_embeddings", bool(getattr(text_config, "tie_word_embeddings", False)))
        super().__init__(**kwargs)


__all__ = ["FORECAST_DEFAULTS", "TimeLLMConfig", "forecast_block"]
