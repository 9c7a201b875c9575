"""The ChatTS patch encoder (`ts_encoder`): series -> one embedding per patch.

Design choices:
- Parameter names and shapes are those of the released ChatTS checkpoints (`mlp.{0,2,4,..}`,
  `position_embedding`), so their weights load with no missing/unexpected keys.
- Vectorised over series: one gather builds every patch of the batch (no Python loop over series).
- The last, partial patch is padded as the checkpoint's release does (`last_patch_padding`, from its
  encoding profile, tsplugin.processing.profiles): "repeat_last" (ChatTS-14B 0801, ChatTS-8B) repeats the last
  value, "zeros" (the first ChatTS-14B release) writes 0. With a position embedding, padded points take
  index `max_sequence_length` (the spare row of the table).
- Each series' length comes from its mask column (feature -1): real points carry 1.0, padding 0.0,
  and real points form a prefix of the row (what `tsplugin.processing.batch_series` produces).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

# The block's defaults, the MLP's input width and the patch count are the torch-free contract's
# (tsplugin.processing.positions), shared with the processor and the planner.
from tsplugin.processing.positions import TS_DEFAULTS, ts_input_size
from tsplugin.processing.profiles import PADDINGS

TS_REQUIRED = ("patch_size", "num_layers", "hidden_size")


class TimeSeriesEmbedding(nn.Module):
    """MLP patch encoder. forward(x (S, T, F) or (S, T*F)) -> (features (P, hidden), patch_cnt (S,))."""

    def __init__(self, ts: Mapping[str, Any], last_patch_padding: str = "repeat_last"):
        super().__init__()
        if last_patch_padding not in PADDINGS:
            raise ValueError(f"last_patch_padding {last_patch_padding!r} is not one of {list(PADDINGS)}")
        self.last_patch_padding = last_patch_padding
        missing = [k for k in TS_REQUIRED if k not in ts]
        if missing:
            raise ValueError(f"`ts` config block lacks {missing}; it needs at least {list(TS_REQUIRED)}")
        cfg = {**TS_DEFAULTS, **ts}
        self.patch_size = int(cfg["patch_size"])
        self.num_layers = int(cfg["num_layers"])
        self.hidden_size = int(cfg["hidden_size"])
        self.num_features = int(cfg["num_features"])
        self.max_sequence_length = int(cfg["max_sequence_length"])
        self.use_position_embedding = bool(cfg["use_position_embedding"])
        self.use_position_idx = bool(cfg["use_position_idx"]) and not self.use_position_embedding
        self.use_layer_norm = bool(cfg["use_layer_norm"])
        self.embedding_dim = int(cfg["embedding_dim"])
        if self.patch_size <= 0 or self.num_layers <= 0:
            raise ValueError(f"ts patch_size and num_layers must be positive, got {self.patch_size}, {self.num_layers}")

        if self.use_position_embedding:
            # rows 0..max_sequence_length-1: point positions; row max_sequence_length: padded tail
            self.position_embedding = nn.Embedding(self.max_sequence_length + 1, self.embedding_dim)
            self.padding_idx = self.max_sequence_length

        layers: list[nn.Module] = []
        width = ts_input_size(cfg)
        for _ in range(self.num_layers - 1):
            layers += [nn.Linear(width, self.hidden_size), nn.GELU()]
            width = self.hidden_size
        layers.append(nn.Linear(width, self.hidden_size))
        if self.use_layer_norm:
            layers.append(nn.LayerNorm(self.hidden_size))
        self.mlp = nn.Sequential(*layers)

    def patch_counts(self, x: torch.Tensor) -> torch.Tensor:
        """Patches per series (S,), from the mask column: `tsplugin.processing.positions.num_patches`, vectorised."""
        x = x.reshape(x.shape[0], -1, self.num_features)  # (S, T, F)
        lengths = x[..., -1].long().sum(dim=1)  # (S,)
        return (lengths + self.patch_size - 1) // self.patch_size

    def build_patches(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """MLP inputs of every patch of the batch, in series order: ((P, in_width), patch_cnt (S,))."""
        n_series = x.shape[0]
        x = x.reshape(n_series, -1, self.num_features)  # (S, T, F)
        p = self.patch_size
        lengths = x[..., -1].long().sum(dim=1)  # (S,)
        patch_cnt = (lengths + p - 1) // p  # (S,)
        max_patches = int(patch_cnt.max()) if n_series else 0
        if max_patches == 0:
            return x.new_zeros((0, ts_input_size(self._cfg_view()))), patch_cnt

        t = torch.arange(max_patches * p, device=x.device)  # (Tp,) point index inside a series
        last = (lengths - 1).clamp(min=0)  # (S,)
        # Points past a series' end repeat its last value: gather index min(t, len - 1).
        gather_idx = torch.minimum(t.unsqueeze(0), last.unsqueeze(1))  # (S, Tp)
        values = x[..., 0].gather(1, gather_idx)  # (S, Tp)
        valid = t.unsqueeze(0) < lengths.unsqueeze(1)  # (S, Tp) real point?
        if self.last_patch_padding == "zeros":
            values = values.masked_fill(~valid, 0.0)
        keep = torch.arange(max_patches, device=x.device).unsqueeze(0) < patch_cnt.unsqueeze(1)  # (S, Pmax)

        values = values.reshape(n_series, max_patches, p)[keep]  # (P, p)
        if self.use_position_embedding:
            longest = int(lengths.max())
            if longest > self.max_sequence_length:
                raise ValueError(
                    f"a time series has {longest} points but this encoder's position table holds "
                    f"max_sequence_length={self.max_sequence_length}; shorten or downsample the series"
                )
            pos = torch.where(valid, t.unsqueeze(0), torch.full_like(valid, self.padding_idx, dtype=torch.long))
            pos = pos.reshape(n_series, max_patches, p)[keep]  # (P, p)
            emb = self.position_embedding(pos)  # (P, p, embedding_dim)
            patches = torch.cat([values.to(emb.dtype), emb.flatten(1)], dim=1)  # (P, p * (1 + embedding_dim))
        elif self.use_position_idx:
            denom = max(1, int(lengths.max()) - 1)  # normalised by the longest series of the batch
            pos = (t.to(values.dtype) / denom).unsqueeze(0).expand(n_series, -1)  # (S, Tp)
            pos = pos.masked_fill(~valid, -1.0).reshape(n_series, max_patches, p)[keep]  # (P, p)
            patches = torch.stack([values, pos], dim=-1).flatten(1)  # (P, 2p): v0, pos0, v1, pos1, ...
        else:
            patches = values  # (P, p)
        return patches, patch_cnt

    def _cfg_view(self) -> dict[str, Any]:
        return {
            "patch_size": self.patch_size,
            "use_position_embedding": self.use_position_embedding,
            "use_position_idx": self.use_position_idx,
            "embedding_dim": self.embedding_dim,
        }

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        weight = self.mlp[0].weight
        patches, patch_cnt = self.build_patches(x.to(device=weight.device, dtype=weight.dtype))
        return self.mlp(patches.to(weight.dtype)), patch_cnt


__all__ = ["TS_DEFAULTS", "TS_REQUIRED", "TimeSeriesEmbedding", "ts_input_size"]
