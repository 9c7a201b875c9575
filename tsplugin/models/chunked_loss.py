"""Causal-LM loss without the (positions x vocab) logits: `timeseries_chunked_loss: N` in a recipe.

Why: with a 152k vocabulary the stock loss holds fp16 logits, their fp32 upcast, the log-softmax and, in
backward, fp32 gradients of seq x vocab (12 bytes x 851 x 152064 = 1.45 GiB for one ChatTS-14B record
with a 5000-point series): the largest transient of a QLoRA step. Here:
- only the supervised positions (label != ignore_index after the shift) reach `lm_head`: the prompt and
  every `<ts>` patch position contribute exactly zero to loss and gradients in the stock loss too;
- those rows go through `lm_head` + fp32 cross-entropy (sum) `chunk_size` rows at a time, each chunk under
  `torch.utils.checkpoint` (non-reentrant), so backward recomputes a chunk's logits instead of keeping
  them: the peak is one chunk's logits, never all of them;
- the reduction is transformers' `ForCausalLMLoss` exactly: sum / `num_items_in_batch` when the Trainer
  passes it (gradient accumulation), else the mean over non-ignored labels.
The model returns `logits=None` on this path (training with labels only; eval and generation keep logits).
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

# kwargs transformers' loss functions take (the decoder ignores them; they are popped before it runs)
LOSS_KWARGS = ("num_items_in_batch", "ignore_index", "shift_labels")


def chunked_causal_lm_loss(
    hidden_states: torch.Tensor,
    lm_head: Callable[[torch.Tensor], torch.Tensor],
    labels: torch.Tensor | None,
    chunk_size: int,
    num_items_in_batch: torch.Tensor | int | None = None,
    ignore_index: int = -100,
    shift_labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """Loss equal to `ForCausalLMLoss(lm_head(hidden_states), labels, ...)`, one chunk of logits at a time.

    `hidden_states` (B, L, H) is the decoder's final (normed) output; `labels` (B, L) unshifted, or
    `shift_labels` already shifted (as transformers accepts).
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1 (timeseries_chunked_loss), got {chunk_size}")
    if shift_labels is None:
        if labels is None:
            raise ValueError("chunked_causal_lm_loss needs `labels` or `shift_labels`")
        shift_labels = F.pad(labels, (0, 1), value=ignore_index)[..., 1:]
    hidden = hidden_states.reshape(-1, hidden_states.shape[-1])
    targets = shift_labels.reshape(-1).to(hidden.device)
    keep = targets != ignore_index
    rows = keep.nonzero().squeeze(-1)
    hidden, targets = hidden.index_select(0, rows), targets.index_select(0, rows)

    def chunk_loss(h: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(lm_head(h).float(), t, ignore_index=ignore_index, reduction="sum")

    total = hidden.new_zeros((), dtype=torch.float32)
    if hidden.requires_grad:
        total = total + hidden.sum() * 0.0  # keeps the graph (and gradients of 0) when nothing is supervised
    for start in range(0, hidden.shape[0], chunk_size):
        h, t = hidden[start : start + chunk_size], targets[start : start + chunk_size]
        if torch.is_grad_enabled() and h.requires_grad:
            total = total + checkpoint(chunk_loss, h, t, use_reentrant=False)
        else:
            total = total + chunk_loss(h, t)
    if num_items_in_batch is None:
        return total / rows.numel() if rows.numel() else total / 0.0  # stock mean: NaN when nothing is supervised
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(total.device)
    return total / num_items_in_batch


def loss_chunk_size(model: Any, labels: Any, kwargs: dict) -> int:
    """The chunk size to use for this forward call, 0 for the stock loss.

    Chunked only when training with labels and all logits are asked for (no `logits_to_keep`,
    `return_dict` not disabled): evaluation and generation get the stock path and its logits.
    """
    size = int(getattr(model, "loss_chunk_size", 0) or 0)
    if not size or labels is None or not model.training:
        return 0
    if kwargs.get("logits_to_keep") or kwargs.get("return_dict") is False:
        return 0
    return size


def forward_with_chunked_loss(
    decoder: torch.nn.Module,
    lm_head: torch.nn.Module,
    chunk_size: int,
    labels: torch.Tensor,
    **kwargs: Any,
):
    """A causal LM's forward (decoder, then the chunked loss); `logits` is None in the output."""
    from transformers.modeling_outputs import CausalLMOutputWithPast

    loss_kwargs = {k: kwargs.pop(k) for k in LOSS_KWARGS if k in kwargs}
    kwargs.pop("logits_to_keep", None)
    outputs = decoder(**kwargs)
    loss = chunked_causal_lm_loss(outputs.last_hidden_state, lm_head, labels, chunk_size, **loss_kwargs)
    return CausalLMOutputWithPast(
        loss=loss,
        logits=None,
        past_key_values=outputs.past_key_values,
        hidden_states=outputs.hidden_states,
        attentions=outputs.attentions,
    )


__all__ = ["LOSS_KWARGS", "chunked_causal_lm_loss", "forward_with_chunked_loss", "loss_chunk_size"]
