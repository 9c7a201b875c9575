"""`chatts_mlp`: ChatTS's patch MLP (`tsplugin.models.encoders.ts_embedding.TimeSeriesEmbedding`) as a registry encoder.

One position per `patch_size` points (ceil(L / patch_size)), the last patch padded by repeating the
last value, exactly as in ChatTS checkpoints. Block keys are those of a ChatTS `ts` block
(`patch_size`, `num_layers`, `use_position_embedding`, ...); `hidden_size` is the encoder's output
width (default: the LLM hidden size), which the projector then maps to the LLM.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tsplugin.models.encoders import register_encoder
from tsplugin.models.encoders.ts_embedding import TimeSeriesEmbedding
from tsplugin.processing.positions import num_positions


class ChatTSMLPEncoder(nn.Module):
    """Wraps TimeSeriesEmbedding; parameters live under `mlp` / `position_embedding` as in ChatTS."""

    def __init__(self, ts_config: dict, llm_config: Any):
        super().__init__()
        block = {k: v for k, v in ts_config.items() if k != "name"}
        block.setdefault("hidden_size", int(llm_config.hidden_size))
        block.setdefault("num_layers", 2)
        if "patch_size" not in block:
            raise ValueError(f"chatts_mlp encoder block {ts_config!r} needs a patch_size")
        self.embedding = TimeSeriesEmbedding(block)
        self.out_dim = int(block["hidden_size"])
        self.patch_size = int(block["patch_size"])

    @staticmethod
    def num_positions(length: int, ts_config: dict) -> int:
        """ceil(length / patch_size): the rule in tsplugin.processing.positions."""
        return num_positions({**ts_config, "name": "chatts_mlp"}, length)

    def forward(self, timeseries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(S, T_max, 2) -> (features (P, out_dim), counts (S,))."""
        return self.embedding(timeseries)


register_encoder("chatts_mlp", ChatTSMLPEncoder)

__all__ = ["ChatTSMLPEncoder"]
