"""What the composite configs (`qwen_ts`, `timellm`) share: the wrapped LLM's config kept whole as
`text_config` (with its model_type, like LLaVA), built by one helper, and the LLM sizes LLaMA-Factory,
DeepSpeed and PEFT read from the top-level config (`hidden_size`, `num_hidden_layers`, `vocab_size`)
forwarded to it, so they are stored once (in `text_config`) and never drift."""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

# Decoders the composites wrap (their causal LMs take `inputs_embeds`).
SUPPORTED_TEXT_MODEL_TYPES = ("qwen2", "qwen2_moe", "qwen3", "qwen3_moe")


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


class TextConfigSizesMixin:
    """`hidden_size`, `num_hidden_layers` and `vocab_size` of a composite config are its `text_config`'s."""

    text_config: PretrainedConfig

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
    def vocab_size(self, value: int) -> None:  # resize_token_embeddings sets it
        self.text_config.vocab_size = int(value)


__all__ = ["SUPPORTED_TEXT_MODEL_TYPES", "TextConfigSizesMixin", "build_text_config"]
