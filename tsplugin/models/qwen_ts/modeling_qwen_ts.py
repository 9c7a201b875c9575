"""`QwenTSForCausalLM`: a Qwen2/Qwen3 causal LM + a registry time-series encoder + a projector.

Layout (parameter prefixes): `language_model.*` (the stock `Qwen2ForCausalLM` / `Qwen3ForCausalLM`
built from `config.text_config`, its own `model.*` and `lm_head.*` inside), `ts_encoder.*`,
`ts_projector.*`. Why a whole causal LM under `language_model` rather than LLaVA's split
`model.language_model` + `lm_head`:
- the decoder class is chosen by `text_config.model_type`, so its forward, loss, caches, SDPA,
  gradient checkpointing and weight tying stay upstream's; this file only merges series;
- LLaMA-Factory's composite keys are three disjoint prefixes (`language_model`, `ts_encoder`,
  `ts_projector`): freezing, `lora_target: all` (it skips `lm_head` and the projector by name),
  `additional_target: ts_projector` and the 4-bit skip list match by those names;
- `build-model` copies a Qwen checkpoint's state dict verbatim into `language_model`, and export /
  PEFT merge see ordinary Linear layers with unchanged names.

The forward contract is the ChatTS one (`TimeSeriesCausalLMMixin.merge_ts_inputs`): `<ts>` positions
are replaced, in order, by projector(encoder(timeseries)); a count mismatch raises with both numbers;
`timeseries` is consumed at prefill only.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

from tsplugin.models.encoders import build_encoder
from tsplugin.models.modeling_ts import TimeSeriesCausalLMMixin, scatter_ts_features
from tsplugin.models.projectors import build_projector

from tsplugin.models.qwen_ts.configuration_qwen_ts import QwenTSConfig
from tsplugin.processing.positions import positions_formula

# Points in the constant series that keeps encoder + projector in the graph on text-only batches.
_DUMMY_POINTS = 16


class QwenTSPreTrainedModel(PreTrainedModel):
    config_class = QwenTSConfig
    base_model_prefix = ""
    supports_gradient_checkpointing = True
    _no_split_modules = ["Qwen2DecoderLayer", "Qwen3DecoderLayer", "Qwen2MoeDecoderLayer", "Qwen3MoeDecoderLayer"]
    _skip_keys_device_placement = ["past_key_values"]
    _supports_flash_attn = True
    _supports_sdpa = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _can_compile_fullgraph = False

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        # The decoder initialises itself (its own _init_weights); encoder/projector get Xavier-normal.
        if isinstance(module, nn.Linear):
            nn.init.xavier_normal_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.xavier_normal_(module.weight)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


class QwenTSForCausalLM(TimeSeriesCausalLMMixin, QwenTSPreTrainedModel, GenerationMixin):
    """model_type `qwen_ts`: forward(input_ids, timeseries (S, T, 2), ...) -> causal-LM output."""

    config_class = QwenTSConfig

    def __init__(self, config: QwenTSConfig):
        super().__init__(config)
        if not isinstance(config.ts, dict):
            raise ValueError("QwenTSForCausalLM needs a config with a `ts` block; write one with `tsplugin build-model`")
        # Built directly (not AutoModel.from_config, which copies the config): the decoder shares
        # `config.text_config`, so resizing the vocabulary updates the one config that is saved.
        lm_class = MODEL_FOR_CAUSAL_LM_MAPPING[type(config.text_config)]
        self.language_model = lm_class(config.text_config)
        self.ts_encoder = build_encoder(config.ts["encoder"], config.text_config)
        in_dim = getattr(self.ts_encoder, "out_dim", None)
        if in_dim is None:
            raise ValueError(f"encoder {config.ts['encoder'].get('name')!r} does not expose `out_dim`")
        self.ts_projector = build_projector(config.ts["projector"], in_dim, config.text_config.hidden_size)
        # Encoders that read the LLM's vocabulary (Time-LLM's text prototypes) get a live accessor, not a
        # copy: resized or PEFT-wrapped embeddings are seen, and the state dict holds no duplicate.
        bind = getattr(self.ts_encoder, "bind_word_embeddings", None)
        if callable(bind):
            bind(self.get_input_embeddings)
        self.post_init()

    # --- embeddings: the decoder's own ---------------------------------------------------------
    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.language_model.get_output_embeddings()

    def set_output_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_output_embeddings(value)

    def get_decoder(self) -> nn.Module:
        return self.language_model.get_decoder()

    # --- series ---------------------------------------------------------------------------------
    def ts_features(self, timeseries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """projector(encoder(timeseries)): ((P, hidden), counts (S,))."""
        features, counts = self.ts_encoder(timeseries)  # (P, d_enc)
        first = next(self.ts_projector.parameters(), None)
        if first is not None:
            features = features.to(first.dtype)
        return self.ts_projector(features), counts  # (P, hidden)

    def embed_timeseries(
        self, input_ids: torch.LongTensor, inputs_embeds: torch.Tensor, timeseries: torch.Tensor
    ) -> torch.Tensor:
        features, _ = self.ts_features(timeseries)
        encoder = self.config.ts["encoder"]
        rule = f"the {encoder['name']!r} encoder's {positions_formula(encoder)}"
        return scatter_ts_features(input_ids, inputs_embeds, features, self._ts_token_id(), timeseries.shape[0], rule)

    def _dummy_encoder_term(self, like: torch.Tensor) -> torch.Tensor:
        dummy = torch.zeros((1, _DUMMY_POINTS, 2), device=like.device)
        dummy[..., 1] = 1.0  # all points valid
        features, _ = self.ts_features(dummy)
        return features.sum().to(like.dtype) * 0.0

    def language_model_forward(self, **kwargs: Any):
        """The wrapped Qwen causal LM's forward (its loss, caches and attention), once series are merged."""
        return self.language_model(**kwargs)


__all__ = ["QwenTSForCausalLM", "QwenTSPreTrainedModel"]
