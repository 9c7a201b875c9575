"""ChatTS-14B in vLLM: `Qwen2TSForCausalLM` (model_type `chatts`; the first release's `model_type: qwen2`
config names the same architecture and is normalised to `chatts` when transformers reads it,
`tsplugin.checkpoints.layouts`). vLLM's Qwen2 causal LM + tsplugin's encoder (`tsplugin.vllm.model_ts`)."""

from __future__ import annotations

from vllm.config import VllmConfig
from vllm.model_executor.models.interfaces import SupportsMultiModal
from vllm.model_executor.models.qwen2 import Qwen2ForCausalLM
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
class Qwen2TSForCausalLM(TimeSeriesModelMixin, Qwen2ForCausalLM, SupportsMultiModal):
    def __init__(self, *, vllm_config: VllmConfig, prefix: str = "") -> None:
        super().__init__(vllm_config=vllm_config, prefix=prefix)
        self._add_ts_encoder(vllm_config.model_config.hf_config)


__all__ = ["Qwen2TSForCausalLM"]
