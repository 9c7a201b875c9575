"""What every tsplugin model in vLLM adds to vLLM's own causal LM: `ts_encoder` and the series splice.

Design choices (as `tsplugin.models.modeling_ts` on the transformers side):
- Subclass vLLM's `Qwen2ForCausalLM` / `Qwen3ForCausalLM` (`tsplugin.vllm.chatts` / `.qwen3ts`), so
  `model.*` and `lm_head.weight` keep the released names and vLLM's decoder, KV cache, batching and
  attention backends stay upstream's. The encoder is tsplugin's own `TimeSeriesEmbedding`, built by
  the same `build_ts_encoder` the transformers classes use (profile, last-patch padding, layer norm).
- Weights: vLLM's `AutoWeightsLoader` (the parent's `load_weights`) finds `ts_encoder.*` by name in the
  checkpoint's shards (.safetensors or fp16 .bin) and casts them to the model dtype.
- vLLM runs `get_multimodal_embeddings` on the series of the scheduled requests (one (L, 2) tensor
  each), then `get_input_embeddings` overwrites each `<ts>` position with the next patch embedding,
  exactly as `scatter_ts_features` does on the transformers path.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn.utils.rnn import pad_sequence

from vllm.model_executor.models.utils import merge_multimodal_embeddings

from tsplugin.models.modeling_ts import build_ts_encoder
from tsplugin.processing.placeholders import TS
from tsplugin.vllm.processing import FIELD, MODALITY


class TimeSeriesModelMixin:
    """Bases: `(TimeSeriesModelMixin, <vLLM causal LM>, SupportsMultiModal)` (the protocol last, as vLLM's own
    models list it); call `_add_ts_encoder(hf_config)` at the end of `__init__`."""

    supports_multimodal = True

    model: Any

    @classmethod
    def get_placeholder_str(cls, modality: str, i: int) -> str | None:
        if modality == MODALITY:
            return TS.name  # "<ts><ts/>": the user writes it in the text
        raise ValueError(f"{cls.__name__} takes the {MODALITY!r} modality only, not {modality!r}")

    def _add_ts_encoder(self, config: Any) -> None:
        """`config`: the checkpoint's transformers config (`vllm_config.model_config.hf_config`)."""
        self.ts_encoder, self.ts_profile_reason = build_ts_encoder(config, type(self).__name__)
        token_id = getattr(config, "ts_token_start_index", None)
        if token_id is None:
            raise ValueError(
                f"{type(self).__name__}: config.json has no ts_token_start_index (the id of the <ts> token); "
                "tsplugin init-model and the released checkpoints write it"
            )
        self.ts_token_id = int(token_id)

    def get_language_model(self) -> torch.nn.Module:
        return self

    def get_multimodal_embeddings(self, **kwargs: object) -> tuple[torch.Tensor, ...] | list:
        """One (positions, hidden) tensor per series, in order: the encoder's patch embeddings."""
        series = kwargs.get(FIELD)
        if series is None:
            return []
        rows = list(series.unbind(0)) if torch.is_tensor(series) else list(series)  # each (L_i, 2)
        if not rows:
            return []
        batch = pad_sequence([r.reshape(-1, 2) for r in rows], batch_first=True)  # (S, T_max, 2), mask 0 on padding
        features, counts = self.ts_encoder(batch)  # (P, hidden), (S,)
        return torch.split(features, counts.tolist())

    def get_input_embeddings(self, input_ids: torch.Tensor, multimodal_embeddings: Any = None) -> torch.Tensor:
        inputs_embeds = self.model.get_input_embeddings(input_ids)
        if multimodal_embeddings is not None and len(multimodal_embeddings) != 0:
            inputs_embeds = merge_multimodal_embeddings(input_ids, inputs_embeds, multimodal_embeddings, self.ts_token_id)
        return inputs_embeds

    def forward(self, input_ids, positions, intermediate_tensors=None, inputs_embeds=None, **kwargs: object):
        if intermediate_tensors is None and inputs_embeds is None and kwargs.get(FIELD) is not None:
            # vLLM V1 always passes inputs_embeds for multimodal models; this keeps a direct call correct.
            inputs_embeds = self.get_input_embeddings(input_ids, self.get_multimodal_embeddings(**kwargs))
            input_ids = None
        return self.model(input_ids, positions, intermediate_tensors, inputs_embeds)


__all__ = ["TimeSeriesModelMixin"]
