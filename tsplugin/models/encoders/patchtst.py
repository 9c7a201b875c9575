"""`patchtst`: transformers' `PatchTSTModel` as a per-patch time-series encoder.

Design choices (what a PatchTST pretrained for forecasting expects):
- Fixed `context_window`: a longer series keeps its LAST `context_window` points (the most recent
  ones, what a forecaster looks at); a shorter one is padded at the FRONT with observed-mask 0, so the
  scaler ignores the padding. Every series therefore costs the same number of positions: PatchTST's
  number of patches, `(context_window - patch_len) // stride + 1` (+1 with `padding_patch: end`,
  +1 with a CLS token).
- Channel-independent and univariate: each series is one channel of its own batch row; a record with
  n variables has n placeholders and n series.
- Output: the per-patch hidden states (`d_model` wide) of the last encoder layer.
- The backbone comes from `tsplugin.models.encoders.patchtst_original.build_patchtst_backbone` when that module
  is present (it adds the original repo's residual attention / end padding and checkpoint loading), else
  a plain `PatchTSTModel`. Never hand-written.
- A frozen encoder stays in eval mode while the LLM trains: PatchTST's BatchNorm would otherwise update
  its running statistics (and mix series of a batch) although no parameter of it trains.

Block keys (config `ts.encoder`): `context_window`, `patch_len`, `stride`, `d_model`, `num_layers`,
`num_heads`, `ffn_dim`, `dropout`, `scaling`, the original-repository variant (`res_attention`,
`padding_patch`, `revin_affine`), and `extra` (any other `PatchTSTConfig` field, e.g. `norm_type`,
kept verbatim).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tsplugin.models.encoders import register_encoder, series_lengths
# The block's defaults and checks and the position count are the torch-free contract's (the processor
# expands placeholders with them): tsplugin.processing.positions.
from tsplugin.processing.positions import PATCHTST_DEFAULTS, num_positions, patchtst_block

# PatchTSTConfig fields that never go into a block's `extra` (geometry is mapped, the rest is bookkeeping).
_NOT_EXTRA = {"context_length", "patch_length", "patch_stride", "d_model", "num_hidden_layers", "num_attention_heads",
              "ffn_dim", "ff_dropout", "attention_dropout", "scaling", "num_input_channels", "do_mask_input",
              "original_variant", "architectures", "transformers_version", "model_type", "_name_or_path", "dtype",
              "torch_dtype", "id2label", "label2id", "return_dict", "output_hidden_states", "output_attentions"}


def patchtst_config(ts_config: dict) -> "Any":
    """The `PatchTSTConfig` of a block (univariate, no input masking)."""
    from transformers import PatchTSTConfig

    block = patchtst_block(ts_config)
    kwargs = dict(
        num_input_channels=1,
        context_length=int(block["context_window"]),
        patch_length=int(block["patch_len"]),
        patch_stride=int(block["stride"]),
        d_model=int(block["d_model"]),
        num_hidden_layers=int(block["num_layers"]),
        num_attention_heads=int(block["num_heads"]),
        ffn_dim=int(block["ffn_dim"]),
        attention_dropout=float(block["dropout"]),
        ff_dropout=float(block["dropout"]),
        scaling=block["scaling"],
        do_mask_input=False,
    )
    kwargs.update(block["extra"] or {})
    return PatchTSTConfig(**kwargs)


def block_from_patchtst_config(config: "Any") -> dict[str, Any]:
    """An encoder block reproducing a pretrained `PatchTSTConfig` (a transformers directory, or the config
    `tsplugin.models.encoders.patchtst_original` infers for an original checkpoint); used by build-model."""
    if int(getattr(config, "num_input_channels", 1)) != 1:
        raise ValueError(
            f"the PatchTST checkpoint has num_input_channels={config.num_input_channels}; this encoder runs each "
            "series as one channel (channel-independent): use a univariate checkpoint or pick one channel"
        )
    variant = getattr(config, "original_variant", None) or {}
    block = {
        "name": "patchtst",
        "context_window": int(config.context_length),
        "patch_len": int(config.patch_length),
        "stride": int(config.patch_stride),
        "d_model": int(config.d_model),
        "num_layers": int(config.num_hidden_layers),
        "num_heads": int(config.num_attention_heads),
        "ffn_dim": int(config.ffn_dim),
        "dropout": float(config.ff_dropout),
        "scaling": config.scaling,
        "res_attention": bool(variant.get("res_attention", False)),
        "padding_patch": variant.get("padding_patch"),
        "revin_affine": bool(variant.get("revin_affine", False)),
    }
    default = patchtst_config({"name": "patchtst"}).to_dict()
    theirs = config.to_dict()
    block["extra"] = {k: v for k, v in theirs.items() if k not in _NOT_EXTRA and k in default and v != default[k]}
    return block


class PatchTSTEncoder(nn.Module):
    """(S, T_max, 2) [value, mask] -> (per-patch hidden states (S * n_patches, d_model), counts (S,))."""

    def __init__(self, ts_config: dict, llm_config: Any = None):
        super().__init__()
        self.block = patchtst_block(ts_config)
        self.context_window = int(self.block["context_window"])
        self.config = patchtst_config(ts_config)
        self.backbone = _build_backbone(self.config, self.block)
        self.out_dim = int(self.block["d_model"])
        self.n_positions = self.num_positions(1, ts_config)

    @staticmethod
    def num_positions(length: int, ts_config: dict) -> int:
        """The same count for every length (a fixed window): the rule in tsplugin.processing.positions."""
        return num_positions({**ts_config, "name": "patchtst"}, length)

    def train(self, mode: bool = True) -> "PatchTSTEncoder":
        super().train(mode)
        if mode and not any(p.requires_grad for p in self.parameters()):
            self.backbone.eval()  # frozen: keep BatchNorm statistics and dropout fixed
        return self

    def window(self, timeseries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each series' last `context_window` points, front-padded: (values (S, cw), observed (S, cw))."""
        lengths = series_lengths(timeseries)  # (S,)
        j = torch.arange(self.context_window, device=timeseries.device)  # (cw,)
        src = lengths.unsqueeze(1) - self.context_window + j.unsqueeze(0)  # (S, cw) index into the series
        observed = src >= 0
        values = timeseries[..., 0].gather(1, src.clamp(min=0)) if timeseries.shape[1] else timeseries.new_zeros(src.shape)
        values = values * observed  # (S, cw), 0 on padding
        return values, observed.to(values.dtype)

    def forward(self, timeseries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        weight = next(self.backbone.parameters())
        timeseries = timeseries.to(device=weight.device, dtype=weight.dtype)
        n_series = timeseries.shape[0]
        values, observed = self.window(timeseries)
        out = self.backbone(past_values=values.unsqueeze(-1), past_observed_mask=observed.unsqueeze(-1))
        hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]  # (S, 1, n_patches, d_model)
        if hidden.shape[2] != self.n_positions:
            raise ValueError(
                f"PatchTST backbone produced {hidden.shape[2]} patches per series but the block promises "
                f"{self.n_positions} (context_window/patch_len/stride/padding_patch disagree with the backbone)"
            )
        features = hidden.reshape(n_series * self.n_positions, hidden.shape[-1])  # (S * n_patches, d_model)
        counts = torch.full((n_series,), self.n_positions, dtype=torch.long, device=features.device)
        return features, counts


def _build_backbone(config: Any, block: dict[str, Any]) -> nn.Module:
    try:
        from tsplugin.models.encoders.patchtst_original import build_patchtst_backbone  # lazy: optional module (its absence is handled below)
    except ModuleNotFoundError as err:
        if err.name != "tsplugin.models.encoders.patchtst_original":
            raise
        if block["res_attention"] or block["padding_patch"] or block["revin_affine"]:
            raise ValueError(
                "patchtst encoder block asks for res_attention/padding_patch/revin_affine (original PatchTST), which needs "
                "tsplugin.models.encoders.patchtst_original; it is not installed in this checkout"
            ) from None
        from transformers import PatchTSTModel

        return PatchTSTModel(config)
    variant = dict(res_attention=bool(block["res_attention"]), padding_patch=block["padding_patch"])
    if block["revin_affine"]:
        variant["revin_affine"] = True
    return build_patchtst_backbone(config, **variant)


register_encoder("patchtst", PatchTSTEncoder)

__all__ = ["PATCHTST_DEFAULTS", "PatchTSTEncoder", "block_from_patchtst_config", "patchtst_block", "patchtst_config"]
