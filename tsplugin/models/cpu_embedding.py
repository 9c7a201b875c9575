"""`offload_embed_tokens: true`: keep the frozen input embedding in CPU RAM during (Q)LoRA training.

Why: ChatTS-14B's embed_tokens is 152064 x 5120 fp16 = 1.45 GiB of an 11 GB card, yet a step reads only
the rows of its own tokens (a few thousand x 5120). Under (Q)LoRA the embedding is frozen, so no gradient
is ever needed for it: the lookup runs on the CPU and only the looked-up rows (B x L x hidden) are copied
to the compute device.

How: the loaded `nn.Embedding` keeps its identity (so forward hooks such as LLaMA-Factory's
`enable_input_require_grads` stay attached) and becomes a `CPUEmbedding`: weight in CPU RAM, forward moves
ids to CPU and rows back, and `.to()` / `.cuda()` / `.half()` of the model leave the CPU copy alone.
Refused when the embedding trains, is tied to lm_head, or under DeepSpeed ZeRO-3 (which partitions it).
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn


class CPUEmbedding(nn.Embedding):
    """An nn.Embedding whose frozen weight lives in CPU RAM; outputs go to `compute_device`."""

    compute_device: torch.device

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        rows = F.embedding(input_ids.to(self.weight.device), self.weight, self.padding_idx, self.max_norm,
                           self.norm_type, self.scale_grad_by_freq, self.sparse)
        return rows.to(self.compute_device)

    def _apply(self, fn: Callable, recurse: bool = True) -> "CPUEmbedding":
        return self  # model.to(device) / .half() must not bring the weight back to the GPU


def offload_input_embedding(model: Any) -> nn.Module:
    """Move a time-series model's frozen input embedding to CPU RAM (PEFT-wrapped or not); returns it."""
    get_base = getattr(model, "get_base_model", None)
    base = get_base() if callable(get_base) else model
    emb = base.get_input_embeddings()
    if isinstance(emb, CPUEmbedding):
        return emb
    if type(emb) is not nn.Embedding:
        raise ValueError(
            f"offload_embed_tokens: the input embedding is a {type(emb).__name__}, not a plain nn.Embedding "
            "(trained, resized or adapted by PEFT?). Remove `offload_embed_tokens`."
        )
    if emb.weight.requires_grad:
        raise ValueError(
            "offload_embed_tokens: the input embedding trains in this run (full fine-tuning, `additional_target` "
            "or `resize_vocab`), and a CPU copy cannot train. Remove `offload_embed_tokens` or freeze the embedding."
        )
    out = base.get_output_embeddings()
    if out is not None and out.weight is emb.weight:
        raise ValueError("offload_embed_tokens: embed_tokens is tied to lm_head (tie_word_embeddings); remove the key.")
    try:
        from transformers.integrations import is_deepspeed_zero3_enabled

        zero3 = is_deepspeed_zero3_enabled()
    except ImportError:
        zero3 = False
    if zero3:
        raise ValueError("offload_embed_tokens is not supported under DeepSpeed ZeRO-3 (it partitions the embedding); remove one.")
    device = emb.weight.device
    emb.weight.data = emb.weight.data.to("cpu")
    emb.__class__ = CPUEmbedding
    emb.compute_device = device
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return emb


__all__ = ["CPUEmbedding", "offload_input_embedding"]
