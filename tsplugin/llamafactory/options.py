"""YAML options the plugin adds to LLaMA-Factory's `FinetuningArguments`, and what they drive.

LLaMA-Factory rejects unknown YAML keys, so new options must be dataclass fields of its own argument
classes. `extend_finetuning_arguments` returns a subclass with the fields below; the hook installs it
before LLaMA-Factory's parser is built, so `llamafactory-cli train x.yaml` accepts them.

How the encoder trains, with LLaMA-Factory's own options:
- default (`freeze_vision_tower: true`): encoder frozen, LoRA adapts the LLM only;
- `additional_target: ts_encoder` (LoRA): the encoder trains fully, saved with the adapter;
- `lora_target: none` (LoRA, time-series models): no LoRA layer in the LLM; only `additional_target`
  modules train (Time-LLM's frozen, possibly 4-bit, LLM with a trained reprogramming layer and head);
- `lora_timeseries_encoder: true` (LoRA): LoRA also adapts the encoder's linear layers (LLaMA-Factory's
  `lora_target: all` cannot: the encoder's layers are named 0, 2, 4, ... inside an nn.Sequential);
- `timeseries_learning_rate: 1e-4`: the encoder's own learning rate in any of these
  (ChatTS-Training's `timeseries_sft_lr`); a Time-LLM forecaster's head (`ts_head`) trains at it too.

Training that does not blow up (`tsplugin.nan_guard`, attached by the `llamafactory.train.tuner` hook):
- `timeseries_nan_guard: true`: skip updates whose loss or gradients are non-finite, log the rows of the
  offending batch, stop (non-zero exit) after `nan_guard_max_bad_steps` (default 3) bad steps in a row;
- `grad_spike_factor: 10.0`: warn when grad_norm exceeds this many times its running median.

Checkpoint encoding and data selection (ModelArguments / DataArguments, same mechanism):
- `timeseries_profile: chatts-14b-0801`: the encoding profile (tsplugin.processing.profiles) instead of the detected one;
- `timeseries_cutoff_mode: chatts_training`: ChatTS-Training's `cutoff_len` selection (tsplugin.llamafactory.data).
"""

import dataclasses
import logging
from typing import Any, Callable, Optional

from tsplugin.llamafactory.memory_options import check_options
from tsplugin.processing.profiles import RECIPE_KEY, get_profile

logger = logging.getLogger("tsplugin")

ENCODER_KEY = "ts_encoder"
# Modules trained at `timeseries_learning_rate`: the encoder, and Time-LLM's forecast head (new layers both).
TIMESERIES_LR_KEYS = (ENCODER_KEY, "ts_head")


def extend_finetuning_arguments(base: type) -> type:
    """Subclass LLaMA-Factory's FinetuningArguments with the plugin's fields (idempotent)."""
    if getattr(base, "__tsplugin__", False):
        return base

    @dataclasses.dataclass
    class FinetuningArguments(base):  # same name: LLaMA-Factory prints and pickles it by name
        timeseries_learning_rate: Optional[float] = dataclasses.field(
            default=None,
            metadata={
                "help": "Learning rate of the time-series encoder when it trains (full via "
                "`additional_target: ts_encoder`, or LoRA via `lora_timeseries_encoder: true`). "
                "Defaults to `learning_rate`."
            },
        )

        lora_timeseries_encoder: bool = dataclasses.field(
            default=False,
            metadata={"help": "Add the time-series encoder's linear layers to the LoRA targets."},
        )

        timeseries_nan_guard: bool = dataclasses.field(
            default=False,
            metadata={
                "help": "Guard every update (tsplugin.nan_guard.NanGuardCallback): skip steps with non-finite "
                "loss or gradients, log the batch's rows, stop after `nan_guard_max_bad_steps` in a row, "
                "warn on grad-norm spikes."
            },
        )

        nan_guard_max_bad_steps: int = dataclasses.field(
            default=3,
            metadata={"help": "Consecutive non-finite steps after which the nan guard stops training."},
        )

        grad_spike_factor: float = dataclasses.field(
            default=10.0,
            metadata={"help": "The nan guard warns when grad_norm exceeds this many times its running median."},
        )

        timeseries_chunked_loss: int = dataclasses.field(
            default=0,
            metadata={
                "help": "Time-series models: compute the training loss this many supervised positions at a time, "
                "each chunk's logits recomputed in backward, so the (positions x vocab) logits never exist "
                "(tsplugin.models.chunked_loss). 0 = transformers' loss. Eval/generation keep full logits."
            },
        )

        quantize_lm_head: bool = dataclasses.field(
            default=False,
            metadata={
                "help": "With quantization_bit: 4, load lm_head as a bitsandbytes Linear4bit instead of fp16 "
                "(the time-series encoder stays unquantised). Export: merge the adapter into the fp16 base."
            },
        )

        offload_embed_tokens: bool = dataclasses.field(
            default=False,
            metadata={
                "help": "(Q)LoRA on a time-series model: keep the frozen input embedding in CPU RAM and copy only "
                "the looked-up rows to the GPU (saves vocab x hidden x 2 bytes of GPU memory). Not with ZeRO-3."
            },
        )

        timeseries_max_points: Optional[int] = dataclasses.field(
            default=None,
            metadata={
                "help": "Inference (api, chat, webchat): refuse a series longer than this many points "
                "(default: $TSPLUGIN_MAX_POINTS, else 32768, never above the encoder's position table)."
            },
        )

        timeseries_max_series: Optional[int] = dataclasses.field(
            default=None,
            metadata={
                "help": "Inference (api, chat, webchat): refuse a conversation with more series than this "
                "(default: $TSPLUGIN_MAX_SERIES, else 64)."
            },
        )

        def __post_init__(self):
            super().__post_init__()

            check_options(self)
            if self.timeseries_learning_rate is not None and self.timeseries_learning_rate <= 0:
                raise ValueError("`timeseries_learning_rate` must be positive.")
            if self.nan_guard_max_bad_steps < 1:
                raise ValueError("`nan_guard_max_bad_steps` must be >= 1.")
            if self.grad_spike_factor <= 1:
                raise ValueError("`grad_spike_factor` must be > 1.")
            for key in ("timeseries_max_points", "timeseries_max_series"):
                if getattr(self, key) is not None and getattr(self, key) < 1:
                    raise ValueError(f"`{key}` must be a positive integer.")

    FinetuningArguments.__tsplugin__ = True
    FinetuningArguments.__module__ = base.__module__
    FinetuningArguments.__qualname__ = base.__qualname__
    return FinetuningArguments


CUTOFF_MODES = ("expanded", "chatts_training")


def _rename_like(cls: type, base: type) -> type:
    cls.__tsplugin__ = True
    cls.__module__ = base.__module__
    cls.__qualname__ = base.__qualname__
    return cls


def extend_model_arguments(base: type) -> type:
    """Subclass LLaMA-Factory's ModelArguments with `timeseries_profile` (idempotent).

    It lives on ModelArguments because `load_tokenizer(model_args)` builds the time-series processor,
    which writes the prefix; train, export and chat recipes all parse ModelArguments.
    """
    if getattr(base, "__tsplugin__", False):
        return base

    @dataclasses.dataclass
    class ModelArguments(base):  # same name: LLaMA-Factory prints and pickles it by name
        timeseries_profile: Optional[str] = dataclasses.field(
            default=None,
            metadata={
                "help": "Time-series models: the encoding profile (prefix format, last-patch padding, template "
                "default) instead of the one detected from the checkpoint (see `tsplugin inspect MODEL`). "
                "Overrides config.json `ts_profile`. Choices: tsplugin.processing.profiles.PROFILES."
            },
        )

        def __post_init__(self):
            super().__post_init__()
            if self.timeseries_profile is not None:

                get_profile(self.timeseries_profile, f"recipe `{RECIPE_KEY}`")

    return _rename_like(ModelArguments, base)


def extend_data_arguments(base: type) -> type:
    """Subclass LLaMA-Factory's DataArguments with `timeseries_cutoff_mode` (idempotent)."""
    if getattr(base, "__tsplugin__", False):
        return base

    @dataclasses.dataclass
    class DataArguments(base):  # same name: LLaMA-Factory prints and pickles it by name
        timeseries_cutoff_mode: str = dataclasses.field(
            default="expanded",
            metadata={
                "help": "Which records `cutoff_len` keeps in time-series datasets. `expanded` (default): count every "
                "<ts> position a series expands to, drop a record only when the cut goes through a series. "
                "`chatts_training`: ChatTS-Training's selection, for comparing runs: count 2 tokens per series "
                "(unexpanded ids) and drop every record with series that is cut."
            },
        )

        def __post_init__(self):
            super().__post_init__()
            if self.timeseries_cutoff_mode not in CUTOFF_MODES:
                raise ValueError(
                    f"`timeseries_cutoff_mode: {self.timeseries_cutoff_mode}` is unknown; choose one of {list(CUTOFF_MODES)}."
                )

    return _rename_like(DataArguments, base)


def encoder_param_groups(model: Any, learning_rate: float, encoder_lr: float, weight_decay: float) -> "list[dict]":
    """Split trainable parameters into LLM and encoder groups (each with and without weight decay)."""
    from transformers.trainer_pt_utils import get_parameter_names
    from transformers.pytorch_utils import ALL_LAYERNORM_LAYERS

    decay_names = {n for n in get_parameter_names(model, ALL_LAYERNORM_LAYERS) if "bias" not in n}
    groups: dict[tuple[bool, bool], list] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            groups.setdefault((any(key in name for key in TIMESERIES_LR_KEYS), name in decay_names), []).append(param)
    result = []
    for (is_encoder, decays), params in sorted(groups.items()):
        result.append(
            {
                "params": params,
                "lr": encoder_lr if is_encoder else learning_rate,
                "weight_decay": weight_decay if decays else 0.0,
            }
        )
    return result


def make_create_custom_optimizer(original: Callable) -> Callable:
    """Wrap `create_custom_optimizer`: build encoder/LLM parameter groups when asked to."""

    def create_custom_optimizer(model, training_args, finetuning_args):
        optimizer = original(model, training_args, finetuning_args)
        encoder_lr = getattr(finetuning_args, "timeseries_learning_rate", None)
        if optimizer is not None or encoder_lr is None:
            return optimizer
        if not any(p.requires_grad and any(k in n for k in TIMESERIES_LR_KEYS) for n, p in model.named_parameters()):
            logger.warning(
                "tsplugin: timeseries_learning_rate is set but the encoder does not train; add "
                "`additional_target: ts_encoder` or `lora_timeseries_encoder: true` (LoRA), or "
                "`freeze_vision_tower: false` (full / freeze tuning)."
            )
            return None
        from transformers import Trainer

        optim_class, optim_kwargs = Trainer.get_optimizer_cls_and_kwargs(training_args, model)
        groups = encoder_param_groups(model, training_args.learning_rate, encoder_lr, training_args.weight_decay)
        logger.info("tsplugin: encoder learning rate %s, LLM learning rate %s", encoder_lr, training_args.learning_rate)
        return optim_class(groups, **{k: v for k, v in optim_kwargs.items() if k != "lr"})

    return create_custom_optimizer


def encoder_lora_targets(model: Any) -> "list[str]":
    """Full names of the encoder's linear layers (exact names, so `mlp.0` never matches `layers.0`)."""
    import torch

    return [name for name, module in model.named_modules() if ENCODER_KEY in name and isinstance(module, torch.nn.Linear)]


NO_LORA_TARGET = "none"


def make_patch_target_modules(original: Callable, is_ts_model: Callable[[Any], bool]) -> Callable:
    """Wrap `patch_target_modules`: append the encoder's linears when `lora_timeseries_encoder`;
    `lora_target: none` on a time-series model = no LoRA layer at all (PEFT's dummy target), so only
    `additional_target` modules train: a frozen (4-bit) LLM with a trained encoder/head, as Time-LLM."""

    def patch_target_modules(model, finetuning_args, target_modules):
        if is_ts_model(model) and list(target_modules or []) == [NO_LORA_TARGET]:
            from peft.utils.constants import DUMMY_TARGET_MODULES

            if not getattr(finetuning_args, "additional_target", None) and not getattr(finetuning_args, "lora_timeseries_encoder", False):
                raise ValueError("`lora_target: none` trains no LoRA layer; name what trains with `additional_target` "
                                 "(e.g. `additional_target: ts_encoder,ts_head` for Time-LLM)")
            if getattr(finetuning_args, "lora_timeseries_encoder", False):
                return encoder_lora_targets(model)
            return DUMMY_TARGET_MODULES
        targets = original(model, finetuning_args, target_modules)
        if getattr(finetuning_args, "lora_timeseries_encoder", False) and is_ts_model(model):
            targets = list(targets) + [n for n in encoder_lora_targets(model) if n not in targets]
        return targets

    return patch_target_modules
