"""Prompt-as-prefix: Time-LLM's per-series text prompt, built from the RevIN-normalised window.

Content, as the authors' `forecast()`: the dataset description, the task ("forecast the next H steps
given the previous L steps information") and input statistics of the normalised window: min, max,
median (the lower median, torch.median), the trend (sum of first differences: upward when > 0) and the
top-k lags of the FFT autocorrelation. Choices that differ: numbers are written with 3 decimals (the
authors print full float reprs, ~10 tokens each), and a batch is LEFT-padded with an attention mask
so that the patches always end the sequence (the authors right-pad without a mask).
"""

from __future__ import annotations

from typing import Any

import torch


def top_lags(x: torch.Tensor, k: int) -> torch.Tensor:
    """(S, L) -> (S, k) lags with the largest circular autocorrelation (FFT), as the authors' calcute_lags."""
    spec = torch.fft.rfft(x.float(), dim=-1)
    corr = torch.fft.irfft(spec * torch.conj(spec), n=x.shape[-1], dim=-1)  # (S, L)
    return torch.topk(corr, min(k, x.shape[-1]), dim=-1).indices


def prompt_texts(normalised: torch.Tensor, description: str, seq_len: int, pred_len: int, top_k: int) -> list[str]:
    """One prompt per row of `normalised` (S, seq_len)."""
    x = normalised.detach().float()
    mins, maxs = x.min(dim=1).values, x.max(dim=1).values
    medians = x.median(dim=1).values
    trends = x.diff(dim=1).sum(dim=1)
    lags = top_lags(x, top_k)
    texts = []
    for i in range(x.shape[0]):
        texts.append(
            f"Dataset description: {description} "
            f"Task description: forecast the next {pred_len} steps given the previous {seq_len} steps information; "
            f"Input statistics: min value {mins[i]:.3f}, max value {maxs[i]:.3f}, median value {medians[i]:.3f}, "
            f"the trend of input is {'upward' if trends[i] > 0 else 'downward'}, "
            f"top {lags.shape[1]} lags are : {lags[i].tolist()}"
        )
    return texts


def tokenize_left_padded(tokenizer: Any, texts: list[str], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids (S, Lp), mask (S, Lp)), left-padded with the tokenizer's pad id (eos when it has none)."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is None:
        raise ValueError("the tokenizer has neither a pad nor an eos token; Time-LLM's prompts need one to pad a batch")
    encoded = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    width = max(len(e) for e in encoded)
    ids = torch.full((len(encoded), width), int(pad), dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for i, e in enumerate(encoded):
        if e:
            ids[i, width - len(e):] = torch.tensor(e, dtype=torch.long)
            mask[i, width - len(e):] = 1
    return ids.to(device), mask.to(device)


__all__ = ["prompt_texts", "tokenize_left_padded", "top_lags"]
