"""ChatTS model classes, registered with the transformers Auto classes on import.

After `import tsplugin.models`, `AutoConfig` / `AutoModelForCausalLM.from_pretrained(dir)` build
`ChatTSConfig` + `Qwen2TSForCausalLM` for model_type `chatts` and `Qwen3TSConfig` +
`Qwen3TSForCausalLM` for model_type `qwen3ts`, and `QwenTSConfig` + `QwenTSForCausalLM` for model_type
`qwen_ts` (your own Qwen2/Qwen3 + encoder + projector, see `tsplugin.models.qwen_ts`), and
`TimeLLMConfig` + `TimeLLMForForecasting` for model_type `timellm` (Time-LLM's forecaster, see
`tsplugin.models.timellm`).

Released ChatTS checkpoints carry an `auto_map` pointing at their own .py files. In an environment with
tsfactory installed that code never runs: the start-up hook normalises every config transformers reads
(`tsplugin.checkpoints.layouts`: model_type from the released class name, `auto_map` dropped) and registers these
classes, so `AutoConfig` / `AutoModel(ForCausalLM)` / `AutoProcessor` give tsplugin's classes with
`trust_remote_code` true or false, from a local directory or a Hub ID.
Registration is idempotent: importing (or reloading) this package twice does not raise. The model types
and their classes come from the one spec registry, `tsplugin.architectures`.
"""

from __future__ import annotations

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoProcessor

from tsplugin.architectures import ARCHITECTURES, get_spec
from tsplugin.models.chatts.configuration_chatts import ChatTSConfig, Qwen2TSConfig, Qwen3TSConfig
from tsplugin.models.chatts.modeling_chatts import Qwen2TSForCausalLM, Qwen3TSForCausalLM
from tsplugin.models.modeling_ts import TimeSeriesCausalLMMixin
from tsplugin.models.chatts.processing_chatts import ChatTSProcessor
from tsplugin.models.qwen_ts import QwenTSConfig, QwenTSForCausalLM
from tsplugin.models.timellm import TimeLLMConfig, TimeLLMForForecasting
from tsplugin.models.encoders.ts_embedding import TimeSeriesEmbedding


def register_auto_classes() -> None:
    """Register every architecture with AutoConfig / AutoModel / AutoModelForCausalLM, and the chat models
    with AutoProcessor (safe to call repeatedly). AutoModel gives the causal LM, as the released
    checkpoints' auto_map does."""
    for spec in ARCHITECTURES.values():
        config_cls, model_cls = spec.config_class(), spec.model_class()
        if config_cls.model_type != spec.model_type:
            raise TypeError(f"{spec.config_path}.model_type is {config_cls.model_type!r}, its spec says {spec.model_type!r}")
        AutoConfig.register(spec.model_type, config_cls, exist_ok=True)
        AutoModel.register(config_cls, model_cls, exist_ok=True)
        AutoModelForCausalLM.register(config_cls, model_cls, exist_ok=True)
        if spec.chat:  # a forecaster reads raw series: no processor
            AutoProcessor.register(config_cls, spec.processor_class(), exist_ok=True)


def get_architecture(model_type: str) -> tuple[type, type]:
    """(config class, model class) of a model_type (`tsplugin.architectures`); lists the valid names when unknown."""
    spec = get_spec(model_type)
    return spec.config_class(), spec.model_class()


def is_timeseries_model(model: object) -> bool:
    """True for a model (possibly wrapped, e.g. by PEFT) that has a ChatTS `ts_encoder`."""
    get_base = getattr(model, "get_base_model", None)
    base = get_base() if callable(get_base) else model
    return isinstance(base, TimeSeriesCausalLMMixin)


register_auto_classes()

__all__ = [
    "ARCHITECTURES",
    "ChatTSConfig",
    "ChatTSProcessor",
    "Qwen2TSConfig",
    "Qwen2TSForCausalLM",
    "Qwen3TSConfig",
    "Qwen3TSForCausalLM",
    "QwenTSConfig",
    "QwenTSForCausalLM",
    "TimeLLMConfig",
    "TimeLLMForForecasting",
    "TimeSeriesCausalLMMixin",
    "TimeSeriesEmbedding",
    "get_architecture",
    "get_spec",
    "is_timeseries_model",
    "register_auto_classes",
]
