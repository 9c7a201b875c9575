"""The trainable pieces of Time-LLM, each a small module with one job (shapes in the comments).

- `revin_normalize` / `revin_denormalize`: non-affine RevIN, per series over its input window:
  mean and std = sqrt(var + 1e-5) (population variance), as the authors' `Normalize(affine=False)`.
- `PatchEmbedding`: the window padded at the end by repeating its last value `stride` times, cut into
  patches of `patch_len` every `stride` points (patch_nums = (seq_len + stride - patch_len) // stride + 1,
  64 for 512 / 16 / 8), each patch embedded by a width-3 circular Conv1d over the patch sequence.
- `Reprogramming`: text prototypes = a Linear(vocab rows -> num_prototypes) over the LLM's (frozen,
  detached) word-embedding matrix; multi-head cross-attention, queries = patch embeddings,
  keys/values = prototypes, d_keys = d_ff per head as in the paper's code, output in the LLM width.
- `FlattenHead`: the first d_ff channels of the LLM's hidden states at the patch positions,
  flattened (d_ff x patch_nums) -> Linear -> horizon.
"""

from __future__ import annotations

import torch
from torch import nn

EPS = 1e-5


def revin_normalize(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(S, L) -> (normalised (S, L), mean (S, 1), std (S, 1)); each row on its own."""
    mean = x.mean(dim=1, keepdim=True)
    std = torch.sqrt(x.var(dim=1, keepdim=True, unbiased=False) + EPS)
    return (x - mean) / std, mean, std


def revin_denormalize(y: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Inverse of `revin_normalize` for a forecast (S, H) of the same rows."""
    return y * std + mean


def num_patches(seq_len: int, patch_len: int, stride: int) -> int:
    """Patches of a window after end-padding by `stride` repeated values."""
    return (seq_len + stride - patch_len) // stride + 1


class PatchEmbedding(nn.Module):
    """(S, seq_len) -> (S, patch_nums, d_model)."""

    def __init__(self, patch_len: int, stride: int, d_model: int, dropout: float):
        super().__init__()
        self.patch_len, self.stride = patch_len, stride
        self.conv = nn.Conv1d(patch_len, d_model, kernel_size=3, padding=1, padding_mode="circular", bias=False)
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_in", nonlinearity="leaky_relu")
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded = torch.cat([x, x[:, -1:].expand(-1, self.stride)], dim=1)  # (S, seq_len + stride)
        patches = padded.unfold(1, self.patch_len, self.stride)  # (S, P, patch_len)
        out = self.conv(patches.transpose(1, 2)).transpose(1, 2)  # (S, patch_len, P) -> (S, d_model, P) -> (S, P, d_model)
        return self.dropout(out)


class Reprogramming(nn.Module):
    """Patch embeddings (S, P, d_model) + word embeddings (V, d_llm) -> (S, P, d_llm)."""

    def __init__(self, d_model: int, d_llm: int, num_heads: int, d_keys: int, vocab_rows: int, num_prototypes: int,
                 dropout: float):
        super().__init__()
        self.num_heads, self.d_keys, self.vocab_rows = num_heads, d_keys, vocab_rows
        self.mapping = nn.Linear(vocab_rows, num_prototypes)
        inner = num_heads * d_keys
        self.query = nn.Linear(d_model, inner)
        self.key = nn.Linear(d_llm, inner)
        self.value = nn.Linear(d_llm, inner)
        self.out = nn.Linear(inner, d_llm)
        self.dropout = nn.Dropout(dropout)

    def prototypes(self, words: torch.Tensor) -> torch.Tensor:
        """(V, d_llm) word embeddings -> (num_prototypes, d_llm); only the first `vocab_rows` rows are read."""
        if words.dim() != 2 or words.shape[0] < self.vocab_rows:
            raise ValueError(f"word-embedding matrix has shape {tuple(words.shape)}; the reprogramming layer reads "
                             f"its first {self.vocab_rows} rows (forecast block `prototype_vocab`)")
        words = words[: self.vocab_rows].detach().to(self.mapping.weight.dtype)  # the LLM's vocabulary stays frozen
        return self.mapping(words.transpose(0, 1)).transpose(0, 1)  # (d_llm, V) -> (d_llm, n_proto) -> (n_proto, d_llm)

    def forward(self, patches: torch.Tensor, words: torch.Tensor) -> torch.Tensor:
        s, p, _ = patches.shape
        protos = self.prototypes(words)
        q = self.query(patches).view(s, p, self.num_heads, self.d_keys)  # (S, P, H, E)
        k = self.key(protos).view(-1, self.num_heads, self.d_keys)  # (n_proto, H, E)
        v = self.value(protos).view(-1, self.num_heads, self.d_keys)
        scores = torch.einsum("sphe,nhe->shpn", q, k) / self.d_keys ** 0.5  # (S, H, P, n_proto)
        attn = self.dropout(torch.softmax(scores, dim=-1))
        out = torch.einsum("shpn,nhe->sphe", attn, v).reshape(s, p, -1)  # (S, P, H*E)
        return self.out(out)


class FlattenHead(nn.Module):
    """(S, P, d_ff) hidden states at the patch positions -> (S, pred_len)."""

    def __init__(self, d_ff: int, patch_nums: int, pred_len: int, dropout: float):
        super().__init__()
        self.linear = nn.Linear(d_ff * patch_nums, pred_len)
        self.dropout = nn.Dropout(dropout)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        flat = hidden.transpose(1, 2).flatten(1)  # (S, d_ff, P) -> (S, d_ff * P), channel-major as the authors' Flatten
        return self.dropout(self.linear(flat))


class TimeLLMEncoder(nn.Module):
    """Patching + reprogramming: normalised windows (S, seq_len) -> LLM-width patch embeddings (S, P, d_llm)."""

    def __init__(self, block: dict, d_llm: int, vocab_rows: int):
        super().__init__()
        self.patch_embedding = PatchEmbedding(block["patch_len"], block["stride"], block["d_model"], block["dropout"])
        self.reprogramming = Reprogramming(block["d_model"], d_llm, block["num_heads"], block["d_ff"], vocab_rows,
                                           block["num_prototypes"], block["dropout"])

    def forward(self, normalised: torch.Tensor, words: torch.Tensor) -> torch.Tensor:
        return self.reprogramming(self.patch_embedding(normalised), words)


__all__ = ["FlattenHead", "PatchEmbedding", "Reprogramming", "TimeLLMEncoder", "num_patches", "revin_denormalize",
           "revin_normalize"]
