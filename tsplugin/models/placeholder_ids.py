"""Prompts tokenised by ChatTS's own processors: one `<ts>` `<ts/>` pair per series ("unexpanded").

ChatTS's released HF code removes both tokens of each pair and inserts the series' patch embeddings
in their place; tsplugin's models expect one `<ts>` per patch instead (what ChatTS's vLLM code and
tsplugin's processors write). `expand_pairs` rewrites the first form into the second, so the
decoder sees the same sequence: prefix text, n patch vectors, the rest of the text.

Padding: every row is rebuilt from its real tokens (attention_mask 1) and padded again on `side`,
so left- and right-padded batches both give each row what it gives alone. (ChatTS's own left-padded
arithmetic misplaces the patches of rows whose length grows less than the longest row's; its
right-padded batches are correct.)
"""

from __future__ import annotations

import torch

IGNORE_INDEX = -100


def is_unexpanded(input_ids: torch.Tensor, ts_end_id: int | None) -> bool:
    """True when `input_ids` hold `<ts/>` tokens (tsplugin's expanded prompts never do)."""
    return ts_end_id is not None and bool((input_ids == int(ts_end_id)).any())


def padding_side_of(attention_mask: torch.Tensor | None) -> str:
    """"left" when only the first column has padding, else "right" (also for unpadded batches)."""
    if attention_mask is None:
        return "right"
    left, right = bool((attention_mask[:, 0] == 0).any()), bool((attention_mask[:, -1] == 0).any())
    if left and right:
        raise ValueError("attention_mask has padding on both sides of the batch; pad on one side only")
    return "left" if left else "right"


def expand_pairs(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    labels: torch.Tensor | None,
    patch_counts: torch.Tensor,
    ts_id: int,
    ts_end_id: int,
    pad_id: int,
    side: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(input_ids, attention_mask, labels) with the k-th `<ts><ts/>` pair (batch order) as patch_counts[k] `<ts>`.

    Labels of the new positions are IGNORE_INDEX. Raises on a `<ts>` without its `<ts/>` (or the
    reverse) and when the number of pairs differs from the number of series.
    """
    counts = [int(c) for c in patch_counts.tolist()]
    mask = attention_mask if attention_mask is not None else torch.ones_like(input_ids)
    pairs = int(((input_ids == ts_end_id) & mask.bool()).sum())
    if pairs != len(counts):
        raise ValueError(f"the prompts hold {pairs} <ts><ts/> pairs but `timeseries` has {len(counts)} series")
    rows, row_labels, used = [], [], 0
    for b in range(input_ids.shape[0]):
        real = mask[b].bool()
        ids = input_ids[b][real].tolist()
        labs = labels[b][real].tolist() if labels is not None else [IGNORE_INDEX] * len(ids)
        new_ids: list[int] = []
        new_labs: list[int] = []
        i = 0
        while i < len(ids):
            token = ids[i]
            if token == ts_id:
                if i + 1 >= len(ids) or ids[i + 1] != ts_end_id:
                    raise ValueError(
                        f"input_ids row {b}, position {i}: <ts> (id {ts_id}) is not followed by <ts/> (id {ts_end_id}); "
                        "write each series as the pair <ts><ts/> (ChatTS's processors) or expand it yourself"
                    )
                new_ids += [ts_id] * counts[used]
                new_labs += [IGNORE_INDEX] * counts[used]
                used += 1
                i += 2
                continue
            if token == ts_end_id:
                raise ValueError(f"input_ids row {b}, position {i}: <ts/> (id {ts_end_id}) without a <ts> before it")
            new_ids.append(token)
            new_labs.append(labs[i])
            i += 1
        rows.append(new_ids)
        row_labels.append(new_labs)
    width = max(len(r) for r in rows)
    out_ids = torch.full((len(rows), width), pad_id, dtype=input_ids.dtype)
    out_mask = torch.zeros((len(rows), width), dtype=mask.dtype)
    out_labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=labels.dtype) if labels is not None else None
    for b, (ids, labs) in enumerate(zip(rows, row_labels)):
        span = slice(width - len(ids), width) if side == "left" else slice(0, len(ids))
        out_ids[b, span] = torch.tensor(ids, dtype=input_ids.dtype)
        out_mask[b, span] = 1
        if out_labels is not None:
            out_labels[b, span] = torch.tensor(labs, dtype=labels.dtype)
    device = input_ids.device
    return out_ids.to(device), out_mask.to(device), out_labels.to(device) if out_labels is not None else None


def positions_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids counting real tokens only (padding gets 1, as ChatTS's HF code and HF generate do)."""
    return (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 1)


__all__ = ["IGNORE_INDEX", "expand_pairs", "is_unexpanded", "padding_side_of", "positions_from_mask"]
