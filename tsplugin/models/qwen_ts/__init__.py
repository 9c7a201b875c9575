"""`qwen_ts`: build your own time-series LLM on a Qwen2/Qwen2.5/Qwen3 base (encoder + projector registries)."""

from tsplugin.models.qwen_ts.configuration_qwen_ts import QwenTSConfig
from tsplugin.models.qwen_ts.modeling_qwen_ts import QwenTSForCausalLM

__all__ = ["QwenTSConfig", "QwenTSForCausalLM"]
