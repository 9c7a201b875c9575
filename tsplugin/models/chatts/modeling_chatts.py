"""ChatTS causal LMs (the released ChatTS-14B and ChatTS-8B architectures): a stock Qwen2/Qwen3 causal
LM plus `TimeSeriesCausalLMMixin` (`tsplugin.models.modeling_ts`).

Subclassing the stock `Qwen2ForCausalLM` / `Qwen3ForCausalLM` keeps `model.*` and `lm_head.weight` under
their released names and leaves every decoder feature (SDPA, gradient checkpointing, caches, PEFT) to
upstream.
"""

from __future__ import annotations

from transformers import Qwen2ForCausalLM, Qwen3ForCausalLM

from tsplugin.models.chatts.configuration_chatts import ChatTSConfig, Qwen3TSConfig
from tsplugin.models.modeling_ts import TimeSeriesCausalLMMixin


class Qwen2TSForCausalLM(TimeSeriesCausalLMMixin, Qwen2ForCausalLM):
    """ChatTS-14B architecture (model_type `chatts`)."""

    config_class = ChatTSConfig

    def __init__(self, config: ChatTSConfig):
        super().__init__(config)
        self._add_ts_encoder()
        self.post_init()


class Qwen3TSForCausalLM(TimeSeriesCausalLMMixin, Qwen3ForCausalLM):
    """ChatTS-8B architecture (model_type `qwen3ts`)."""

    config_class = Qwen3TSConfig

    def __init__(self, config: Qwen3TSConfig):
        super().__init__(config)
        self._add_ts_encoder()
        self.post_init()


__all__ = ["Qwen2TSForCausalLM", "Qwen3TSForCausalLM"]
