"""What the memory-saving YAML keys do when LLaMA-Factory loads a time-series model.

- `timeseries_chunked_loss: N` (N > 0): the training loss is computed N supervised positions at a time,
  never holding the (positions x vocab) logits (tsplugin.models.chunked_loss). Refused together with
  LLaMA-Factory's own logit-based losses (use_dft_loss / use_eaft_loss / use_asft_loss), which need
  the logits this option never builds.
- `quantize_lm_head: true` (with `quantization_bit: 4`): lm_head loads as a bitsandbytes Linear4bit
  instead of staying fp16. The encoder/projector stay unquantised. Tied embeddings are refused (the
  input embedding would be quantised with it). Note: bitsandbytes dequantises the whole weight to fp16
  in every backward matmul, so the step's peak gains that transient back (`tsplugin plan` counts it).

- `offload_embed_tokens: true`: the frozen input embedding stays in CPU RAM (tsplugin.models.cpu_embedding).

`load_model` runs inside `loading(finetuning_args)`, so the quantisation hook (which LLaMA-Factory
calls with `model_args` only) can read the finetuning options of the model being loaded.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from typing import Any, Iterator

logger = logging.getLogger("tsplugin")

_LOADING: contextvars.ContextVar[Any] = contextvars.ContextVar("tsplugin_finetuning_args", default=None)
LOGIT_LOSSES = ("use_dft_loss", "use_eaft_loss", "use_asft_loss")


@contextlib.contextmanager
def loading(finetuning_args: Any, model_args: Any = None) -> Iterator[None]:
    """Make `finetuning_args` visible to the hooks that run while one model loads."""
    bits = getattr(model_args, "quantization_bit", None)
    if getattr(finetuning_args, "quantize_lm_head", False) and model_args is not None and bits != 4:
        raise ValueError(
            f"`quantize_lm_head: true` needs `quantization_bit: 4` (got {bits}); set it, or remove `quantize_lm_head`."
        )
    token = _LOADING.set(finetuning_args)
    try:
        yield
    finally:
        _LOADING.reset(token)


def current_finetuning_args() -> Any:
    return _LOADING.get()


def check_options(finetuning_args: Any) -> None:
    """Refuse combinations that cannot work, naming the keys (called when arguments are parsed)."""
    chunk = getattr(finetuning_args, "timeseries_chunked_loss", 0)
    if chunk < 0:
        raise ValueError(f"`timeseries_chunked_loss` must be >= 0 (0 = off; e.g. 1024 positions a chunk), got {chunk}.")
    used = [name for name in LOGIT_LOSSES if getattr(finetuning_args, name, False)]
    if chunk and used:
        raise ValueError(
            f"`timeseries_chunked_loss` cannot be combined with `{used[0]}: true`: that loss reads the full logits, "
            "which the chunked loss never builds. Remove one of the two keys."
        )


def skip_modules(config: Any, model_args: Any, current: list[str] | None, encoder_modules: list[str]) -> list[str]:
    """bitsandbytes `llm_int8_skip_modules` for a time-series model: encoder always; lm_head unless asked."""
    skip = list(current or ["lm_head"])
    skip += [m for m in encoder_modules if m not in skip]
    args = current_finetuning_args()
    if not getattr(args, "quantize_lm_head", False):
        return skip
    if getattr(model_args, "quantization_bit", None) != 4:
        raise ValueError(
            f"`quantize_lm_head: true` needs `quantization_bit: 4` (got {getattr(model_args, 'quantization_bit', None)}); "
            "set it, or remove `quantize_lm_head`."
        )
    text_config = getattr(config, "text_config", None) or config
    if getattr(text_config, "tie_word_embeddings", False) or getattr(config, "tie_word_embeddings", False):
        raise ValueError(
            f"`quantize_lm_head: true`: {getattr(model_args, 'model_name_or_path', 'this model')} ties lm_head to "
            "embed_tokens (tie_word_embeddings: true), so quantising lm_head would quantise the input embedding too. "
            "Remove `quantize_lm_head` for this model."
        )
    logger.info("tsplugin: quantize_lm_head: lm_head is loaded in 4 bit (the time-series encoder stays unquantised)")
    return [m for m in skip if m != "lm_head" and not m.endswith(".lm_head")]


def apply_after_load(model: Any, finetuning_args: Any, is_trainable: bool) -> Any:
    """Options that act on the loaded (possibly PEFT-wrapped) model."""
    chunk = int(getattr(finetuning_args, "timeseries_chunked_loss", 0) or 0)
    if chunk and is_trainable:
        from tsplugin.models.modeling_ts import set_loss_chunk_size  # lazy: torch and the model classes, only when the option is set

        set_loss_chunk_size(model, chunk)
        logger.info("tsplugin: timeseries_chunked_loss: the loss is computed %d positions at a time (no full logits)", chunk)
    if getattr(finetuning_args, "offload_embed_tokens", False) and is_trainable:
        from tsplugin.models.cpu_embedding import offload_input_embedding  # lazy: torch and the model classes, only when the option is set

        offload_input_embedding(model)
        logger.info("tsplugin: offload_embed_tokens: the input embedding stays in CPU RAM (rows are copied per step)")
    return model


__all__ = ["LOGIT_LOSSES", "apply_after_load", "check_options", "current_finetuning_args", "loading", "skip_modules"]
