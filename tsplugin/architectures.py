"""One spec per time-series model type, registered once; every table in tsplugin reads it.

An `ArchitectureSpec` holds what the rest of the plugin needs to know about a `model_type`: its config
and model classes, LLaMA-Factory's composite-model keys (which modules are the "vision tower", the
projector, the language model), the modules that are never quantised, the default chat template and
encoding profile, the decoder family of the released ChatTS architectures (so a plain Qwen2/Qwen3 maps
to one), the class names released checkpoints use, and the `ts` block `tsplugin init-model` writes.

Readers: `tsplugin.models` (Auto-class registration), `tsplugin.llamafactory.hooks` (composite keys,
quantisation skip), `tsplugin.chat` (default template), `tsplugin.build.init_model` (`--arch`,
`ts` block, `--base` model types), `tsplugin.planner.shapes` (which model types it counts),
`tsplugin.checkpoints.layouts` (released class names, tsplugin's model types) and
`tsplugin.processing.profiles` (init-model profiles, release detection).

Design choice, as transformers' `CONFIG_MAPPING_NAMES`: classes are named by dotted path and imported
only when asked for (`spec.config_class()`), so this module is standard library only and the
planner, `tsplugin inspect`, the transformers config hook and `tsplugin --help` never import torch.
As peft's `register_peft_method`, one call registers everything about a model type, and a second
registration of the same name is refused.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

from tsplugin.registry import Registry


def _resolve(dotted: str) -> Any:
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class ArchitectureSpec:
    """Everything tsplugin knows about one time-series `model_type`."""

    model_type: str
    description: str
    config_path: str  # dotted path of the PretrainedConfig subclass
    model_path: str  # dotted path of the model class (AutoModel / AutoModelForCausalLM give it)
    # LLaMA-Factory `_register_composite_model` keys: freezing, LoRA targeting and the encoder learning rate.
    projector_keys: tuple[str, ...]
    vision_model_keys: tuple[str, ...]
    language_model_keys: tuple[str, ...]
    # Never quantised (bitsandbytes `llm_int8_skip_modules`): everything that is not the language model.
    no_quantize_modules: tuple[str, ...]
    # The `timeseries` processor (AutoProcessor gives it); None: a forecaster that reads raw series, no chat.
    processor_path: str | None = None
    default_template: str | None = None  # LLaMA-Factory template a model of this type was trained with
    templates_by_decoder: Mapping[str, str] = field(default_factory=dict)  # text_config.model_type -> template
    default_profile: str | None = None  # `ts_profile` that `tsplugin init-model` writes
    # The decoder family of a fixed-backbone architecture (a plain checkpoint of this model_type maps here:
    # `init-model --base`, `tsplugin plan --model`); None: the decoder is `text_config`'s.
    backbone: str | None = None
    released_classes: tuple[str, ...] = ()  # `architectures` names of released checkpoints
    released_processor_classes: tuple[str, ...] = ()  # processor classes they ship (their code is never run)
    init_ts_block: Mapping[str, Any] | None = None  # `tsplugin init-model --arch`: the `ts` block (no hidden_size)
    planner: bool = False  # `tsplugin plan` counts this architecture's parameters exactly

    def __post_init__(self) -> None:  # read-only mappings: a reader's copy never changes the spec
        object.__setattr__(self, "templates_by_decoder", MappingProxyType(dict(self.templates_by_decoder)))
        if self.init_ts_block is not None:
            object.__setattr__(self, "init_ts_block", MappingProxyType(dict(self.init_ts_block)))

    @property
    def chat(self) -> bool:
        """A chat model: the `timeseries` processor, templates and `<ts>` placeholders."""
        return self.processor_path is not None

    def config_class(self) -> type:
        return _resolve(self.config_path)

    def model_class(self) -> type:
        return _resolve(self.model_path)

    def processor_class(self) -> type | None:
        return _resolve(self.processor_path) if self.processor_path else None

    def composite_keys(self) -> dict[str, list[str]]:
        """Keyword arguments of LLaMA-Factory's `_register_composite_model` (besides model_type)."""
        return {
            "projector_keys": list(self.projector_keys),
            "vision_model_keys": list(self.vision_model_keys),
            "language_model_keys": list(self.language_model_keys),
        }

    def template_for(self, decoder_model_type: str | None = None) -> str | None:
        """The default template; for a composite, the one of its decoder (`text_config.model_type`) when known."""
        return self.templates_by_decoder.get(decoder_model_type or "", self.default_template)


def _check_spec(name: str, spec: ArchitectureSpec) -> None:
    """A released class name or a backbone maps to one model type only."""
    for other in ARCHITECTURES.values():
        shared = set(spec.released_classes) & set(other.released_classes)
        if shared:
            raise ValueError(f"model_type {name!r}: released classes {sorted(shared)} already map to {other.model_type!r}")
        if spec.backbone and spec.backbone == other.backbone:
            raise ValueError(f"model_type {name!r}: backbone {spec.backbone!r} already maps to {other.model_type!r}")


ARCHITECTURES: Registry[ArchitectureSpec] = Registry("time-series model_type", check=_check_spec)


def register_architecture(spec: ArchitectureSpec) -> ArchitectureSpec:
    """Register a model type (refuses duplicates, and a released class name or backbone already claimed)."""
    return ARCHITECTURES.register(spec.model_type, spec)


def get_spec(model_type: str, where: str = "") -> ArchitectureSpec:
    """The spec of `model_type`; an unknown one lists the registered model types."""
    return ARCHITECTURES.get(model_type, where)


def model_types() -> tuple[str, ...]:
    """Every registered model type, in registration order."""
    return tuple(ARCHITECTURES)


def released_model_types() -> dict[str, str]:
    """Released class name (`architectures` of a ChatTS checkpoint) -> model_type."""
    return {name: spec.model_type for spec in ARCHITECTURES.values() for name in spec.released_classes}


def released_processor_classes() -> tuple[str, ...]:
    return tuple(name for spec in ARCHITECTURES.values() for name in spec.released_processor_classes)


def backbone_model_types() -> dict[str, str]:
    """A plain decoder's model_type (qwen2, qwen3) -> the fixed-backbone architecture built on it."""
    return {spec.backbone: spec.model_type for spec in ARCHITECTURES.values() if spec.backbone}


_CHATTS_PROCESSOR = "tsplugin.models.chatts.processing_chatts.ChatTSProcessor"
# ChatTS layout: the stock causal LM at the top (`model.*`, `lm_head`), the encoder (with its MLP) beside it.
_CHATTS_KEYS = dict(projector_keys=("ts_encoder.mlp",), vision_model_keys=("ts_encoder",), language_model_keys=("model", "lm_head"))

register_architecture(ArchitectureSpec(
    model_type="chatts",
    description="ChatTS-14B (Qwen2 backbone + ChatTS patch-MLP encoder)",
    config_path="tsplugin.models.chatts.configuration_chatts.ChatTSConfig",
    model_path="tsplugin.models.chatts.modeling_chatts.Qwen2TSForCausalLM",
    **_CHATTS_KEYS,
    no_quantize_modules=("ts_encoder",),
    processor_path=_CHATTS_PROCESSOR,
    default_template="chatts",
    default_profile="chatts-14b-0801",
    backbone="qwen2",
    released_classes=("Qwen2TSForCausalLM",),
    released_processor_classes=("Qwen2TSProcessor",),
    # The first ChatTS-14B release: patch 16, 5 layers, no position embedding.
    init_ts_block={"patch_size": 16, "num_layers": 5, "num_features": 2},
    planner=True,
))
register_architecture(ArchitectureSpec(
    model_type="qwen3ts",
    description="ChatTS-8B (Qwen3 backbone + ChatTS patch-MLP encoder with position embedding)",
    config_path="tsplugin.models.chatts.configuration_chatts.Qwen3TSConfig",
    model_path="tsplugin.models.chatts.modeling_chatts.Qwen3TSForCausalLM",
    **_CHATTS_KEYS,
    no_quantize_modules=("ts_encoder",),
    processor_path=_CHATTS_PROCESSOR,
    default_template="chatts8b",
    default_profile="chatts-8b",
    backbone="qwen3",
    released_classes=("Qwen3TSForCausalLM",),
    released_processor_classes=("Qwen3TSProcessor",),
    # ChatTS-8B: patch 8, position embedding, 8192 points.
    init_ts_block={"patch_size": 8, "num_layers": 5, "num_features": 2, "use_position_embedding": True,
                   "embedding_dim": 16, "max_sequence_length": 8192},
    planner=True,
))
register_architecture(ArchitectureSpec(
    model_type="qwen_ts",
    description="your own Qwen2/Qwen2.5/Qwen3 + a registry encoder + projector (`tsplugin build-model`)",
    config_path="tsplugin.models.qwen_ts.configuration_qwen_ts.QwenTSConfig",
    model_path="tsplugin.models.qwen_ts.modeling_qwen_ts.QwenTSForCausalLM",
    # The whole Qwen causal LM lives under `language_model`.
    projector_keys=("ts_projector",),
    vision_model_keys=("ts_encoder",),
    language_model_keys=("language_model",),
    no_quantize_modules=("ts_encoder", "ts_projector"),
    processor_path=_CHATTS_PROCESSOR,
    default_template="qwen_ts",
    templates_by_decoder={"qwen2": "qwen_ts", "qwen2_moe": "qwen_ts", "qwen3": "qwen3_ts", "qwen3_moe": "qwen3_ts"},
))
register_architecture(ArchitectureSpec(
    model_type="timellm",
    description="Time-LLM forecaster: frozen LLM + reprogramming + forecast head (`tsplugin build-forecaster`)",
    config_path="tsplugin.models.timellm.configuration_timellm.TimeLLMConfig",
    model_path="tsplugin.models.timellm.modeling_timellm.TimeLLMForForecasting",
    # Its output head plays the projector (trained, never a LoRA target).
    projector_keys=("ts_head",),
    vision_model_keys=("ts_encoder",),
    language_model_keys=("language_model",),
    no_quantize_modules=("ts_encoder", "ts_head"),
))

__all__ = [
    "ARCHITECTURES",
    "ArchitectureSpec",
    "backbone_model_types",
    "get_spec",
    "model_types",
    "register_architecture",
    "released_model_types",
    "released_processor_classes",
]
