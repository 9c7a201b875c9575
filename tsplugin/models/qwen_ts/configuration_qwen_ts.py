"""`QwenTSConfig` (model_type `qwen_ts`): any Qwen2 / Qwen2.5 / Qwen3 config + an encoder + a projector.

The LLM's own config is kept whole as `text_config` (with its model_type), like LLaVA: a qwen_ts
checkpoint records exactly which decoder it wraps, and a new Qwen release needs no change here.
`ts` holds `encoder` (a registry name + its parameters, see `tsplugin.models.encoders`) and `projector` (a
name from `tsplugin.models.projectors`); `ts_token_start_index` / `ts_token_end_index` are the ids of
`<ts>` / `<ts/>` in the checkpoint's tokenizer (never literals).
"""

from __future__ import annotations

from typing import Any

from transformers import AutoConfig, PretrainedConfig

from tsplugin.models.configuration_ts import SUPPORTED_TEXT_MODEL_TYPES, TextConfigSizesMixin, build_text_config


def check_ts_block(ts: Any) -> dict[str, Any]:
    """Validate `ts` = {"encoder": {"name": ..., ...}, "projector": name}; unknown names list the valid ones."""
    from tsplugin.models.encoders import get_encoder  # lazy: these registries import torch; a config reads without it
    from tsplugin.models.projectors import get_projector

    if not isinstance(ts, dict) or not isinstance(ts.get("encoder"), dict) or not isinstance(ts.get("projector"), str):
        raise ValueError(
            f"qwen_ts config `ts` must be {{'encoder': {{'name': ..., <params>}}, 'projector': <name>}}, got {ts!r}; "
            "write one with `tsplugin build-model`"
        )
    get_encoder(ts["encoder"].get("name", "<missing name>"))
    get_projector(ts["projector"])
    return {"encoder": dict(ts["encoder"]), "projector": ts["projector"]}


class QwenTSConfig(TextConfigSizesMixin, PretrainedConfig):
    """Composite config: `text_config` (Qwen2/Qwen3) + `ts` block + `<ts>` token ids."""

    model_type = "qwen_ts"
    sub_configs = {"text_config": AutoConfig}

    def __init__(
        self,
        text_config: dict[str, Any] | PretrainedConfig | None = None,
        ts: dict[str, Any] | None = None,
        ts_token_start_index: int | None = None,
        ts_token_end_index: int | None = None,
        **kwargs: Any,
    ):
        text_config = build_text_config(text_config, "qwen_ts", default_type="qwen3")
        self.text_config = text_config
        self.ts = check_ts_block(ts) if ts is not None else None
        self.ts_token_start_index = ts_token_start_index
        self.ts_token_end_index = ts_token_end_index
        # The decoder's embedding tying lives in text_config; mirror it so transformers ties the inner lm_head.
        kwargs.setdefault("tie_word_embeddings", bool(getattr(text_config, "tie_word_embeddings", False)))
        super().__init__(**kwargs)


__all__ = ["QwenTSConfig", "SUPPORTED_TEXT_MODEL_TYPES", "build_text_config", "check_ts_block"]
