"""ChatTS-8B (and `tsplugin init-model` qwen3ts models) in vLLM: `Qwen3TSForCausalLM` (model_type
`qwen3ts`). vLLM's Qwen3 causal LM + tsplugin's encoder (`tsplugin.vllm.model_ts`)."""

from __future__ import annotations

from vllm.config import VllmConfig
from vllm.model_executor.models.interfaces import SupportsMultiModal
from vllm.model_executor.models.qwen3 import Qwen3ForCausalLM
from vllm.multimodal import MULTIMODAL_REGISTRY

from tsplugin.vllm.model_ts import TimeSeriesModelMixin
from tsplugin.vllm.processing import (
    TimeSeriesDummyInputsBuilder,
    TimeSeriesMultiModalProcessor,
    TimeSeriesProcessingInfo,
)


@MULTIMODAL_REGISTRY.register_processor(
    TimeSeriesMultiModalProcessor, info=TimeSeriesProcessingInfo, dummy_inputs=TimeSeriesDummyInputsBuilder
)
class Qwen3TSForCausalLM(TimeSeriesModelMixin, Qwen3ForCausalLM, SupportsMultiModal):
    def __init__(self, *, vllm_config: VllmConfig, prefix: str = "") -> None:
        super().__init__(vllm_config=vllm_config, prefix=prefix)
        self._add_ts_encoder(vllm_config.model_config.hf_config)


__all__ = ["Qwen3TSForCausalLM"]
