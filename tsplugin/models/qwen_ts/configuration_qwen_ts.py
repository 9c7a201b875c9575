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
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

# Decoders this composite wraps (their causal LMs take `inputs_embeds`).
SUPPORTED_TEXT_MODEL_TYPES = ("qwen2", "qwen2_moe", "qwen3", "qwen3_moe")


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


def build_text_config(text_config: dict[str, Any] | PretrainedConfig | None, owner: str, default_type: str) -> PretrainedConfig:
    """The LLM config of a composite model (`owner`: its model_type, for messages): from the dict config.json
    stores, a config object, or `default_type`'s defaults; only the Qwen2/Qwen3 families."""
    if isinstance(text_config, dict):
        text_type = text_config.get("model_type", default_type)
        if text_type not in SUPPORTED_TEXT_MODEL_TYPES:
            raise ValueError(f"{owner} text_config has model_type {text_type!r}; supported: {list(SUPPORTED_TEXT_MODEL_TYPES)}")
        return CONFIG_MAPPING[text_type](**{k: v for k, v in text_config.items() if k != "model_type"})
    if text_config is None:
        return CONFIG_MAPPING[default_type]()
    if getattr(text_config, "model_type", None) not in SUPPORTED_TEXT_MODEL_TYPES:
        raise ValueError(
            f"{owner} text_config has model_type {getattr(text_config, 'model_type', None)!r}; "
            f"supported: {list(SUPPORTED_TEXT_MODEL_TYPES)}"
        )
    return text_config


class QwenTSConfig(PretrainedConfig):
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

    @property
    def hidden_size(self) -> int:
        """The LLM hidden size (LLaMA-Factory and DeepSpeed read `config.hidden_size`)."""
        return int(self.text_config.hidden_size)

    @hidden_size.setter
    def hidden_size(self, value: int) -> None:  # LLaMA-Factory's configure_visual_model may set it
        self.text_config.hidden_size = int(value)

    @property
    def num_hidden_layers(self) -> int:
        return int(self.text_config.num_hidden_layers)

    @property
    def vocab_size(self) -> int:
        return int(self.text_config.vocab_size)

    @vocab_size.setter
    def vocab_size(self, value: int) -> None:
        self.text_config.vocab_size = int(value)


__all__ = ["QwenTSConfig", "SUPPORTED_TEXT_MODEL_TYPES", "check_ts_block"]
