"""Pretrained PatchTST backbones: transformers directories and the original repository's checkpoints.

Design choices:
- One module class, `PatchTSTOriginalModel`, a subclass of transformers' `PatchTSTModel`. With no
  `original_variant` in its config it IS a `PatchTSTModel`. With one, three small substitutions
  reproduce what the original code (yuqinie98/PatchTST, `PatchTST_supervised`) computes and
  transformers does not:
  * `res_attention`: each layer adds the previous layer's pre-softmax scores (RealFormer); the
    attention modules are swapped for `ResidualScoreAttention` (same parameters, same names);
  * `padding_patch="end"`: the last value repeated `stride` times before patching, and patches
    start at the first point (transformers drops leading points instead of trailing ones);
  * RevIN `affine`: a per-channel weight/bias after the std scaler (`scaler.affine_weight/bias`).
  The variant is written into `config.original_variant`, so `config.json` says which one a saved
  backbone is.
- Checkpoints load with `torch.load(weights_only=True)` only: a pickle holding code is refused.
- Every original option that has no exact counterpart (decomposition, subtract_last, a learned
  attention scale, d_k != d_model / n_heads, pre_norm=True whose residual starts from the normalised
  input) is rejected by name and value, never approximated.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import PatchTSTConfig, PatchTSTModel
from transformers.models.patchtst.modeling_patchtst import (
    PatchTSTAttention,
    PatchTSTPatchify,
    PatchTSTPositionalEncoding,
)

from tsplugin.checkpoints.weights import read_state_dict

# Defaults of the original repository's run_longExp.py / PatchTST Model for what weights cannot show.
ORIGINAL_DEFAULTS: dict[str, Any] = {
    "res_attention": True,
    "revin": True,
    "subtract_last": False,
    "pre_norm": False,
    "activation": "gelu",
}
_VARIANT_KEYS = ("res_attention", "padding_patch", "revin_affine")


# ----------------------------------------------------------------------------- module pieces
class ResidualScoreAttention(PatchTSTAttention):
    """PatchTST attention whose pre-softmax scores get the previous layer's scores added.

    `scores` is a shared holder (one per encoder) reset before every encoder forward.
    """

    def __init__(self, *args: Any, scores: "_ScoreCarry", **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._carry = scores

    def forward(self, hidden_states: torch.Tensor, key_value_states: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, output_attentions: bool | None = False, **kwargs: Any):
        bsz, q_len, _ = hidden_states.shape
        shape = (bsz, q_len, self.num_heads, self.head_dim)
        q = self.q_proj(hidden_states).view(shape).transpose(1, 2)  # (B, H, L, hd)
        k = self.k_proj(hidden_states).view(shape).transpose(1, 2)
        v = self.v_proj(hidden_states).view(shape).transpose(1, 2)
        scores = torch.matmul(q, k.transpose(2, 3)) * self.scaling  # (B, H, L, L)
        if self._carry.scores is not None:
            scores = scores + self._carry.scores
        if attention_mask is not None:
            scores = scores + attention_mask
        self._carry.scores = scores
        weights = nn.functional.softmax(scores, dim=-1)
        weights = nn.functional.dropout(weights, p=self.dropout, training=self.training)
        out = torch.matmul(weights, v).transpose(1, 2).reshape(bsz, q_len, -1)  # (B, L, H*hd)
        return self.out_proj(out), (weights if output_attentions else None), None


class _ScoreCarry:
    """Scores handed from one layer to the next inside one encoder forward."""

    def __init__(self) -> None:
        self.scores: torch.Tensor | None = None

    def reset(self, *_: Any) -> None:
        self.scores = None


class OriginalPatchify(PatchTSTPatchify):
    """Patches as the original cuts them: optional end padding (last value x stride), from the first point."""

    def __init__(self, config: PatchTSTConfig, padding_patch: str | None):
        super().__init__(config)
        self.padding_patch = padding_patch
        self.num_patches = (self.sequence_length - self.patch_length) // self.patch_stride + 1
        if padding_patch == "end":
            self.num_patches += 1

    def forward(self, past_values: torch.Tensor) -> torch.Tensor:
        if past_values.shape[-2] != self.sequence_length:
            raise ValueError(
                f"Input sequence length ({past_values.shape[-2]}) doesn't match model configuration ({self.sequence_length})."
            )
        x = past_values.transpose(1, 2)  # (B, C, L)
        if self.padding_patch == "end":
            x = torch.cat([x, x[..., -1:].expand(*x.shape[:-1], self.patch_stride)], dim=-1)  # (B, C, L + stride)
        return x.unfold(-1, self.patch_length, self.patch_stride).contiguous()  # (B, C, N, patch_len)


class RevINAffineScaler(nn.Module):
    """transformers' scaler followed by RevIN's learnable per-channel affine map."""

    def __init__(self, scaler: nn.Module, num_channels: int):
        super().__init__()
        self.scaler = scaler
        self.affine_weight = nn.Parameter(torch.ones(num_channels))
        self.affine_bias = nn.Parameter(torch.zeros(num_channels))

    def forward(self, data: torch.Tensor, observed_indicator: torch.Tensor):
        data, loc, scale = self.scaler(data, observed_indicator)  # data: (B, L, C)
        return data * self.affine_weight + self.affine_bias, loc, scale


class PatchTSTOriginalModel(PatchTSTModel):
    """`PatchTSTModel` plus the original repository's variant named in `config.original_variant`."""

    def __init__(self, config: PatchTSTConfig):
        super().__init__(config)
        variant = original_variant(config)
        if variant is None:
            return
        if config.channel_attention or config.use_cls_token or config.do_mask_input:
            raise ValueError(
                "original PatchTST variant needs channel_attention=False, use_cls_token=False, do_mask_input=False; got "
                f"{config.channel_attention}, {config.use_cls_token}, {config.do_mask_input}"
            )
        self.patchifier = OriginalPatchify(config, variant["padding_patch"])
        n = self.patchifier.num_patches
        if self.encoder.positional_encoder.position_enc.shape[0] != n:
            self.encoder.positional_encoder = PatchTSTPositionalEncoding(config, n)
        if variant["revin_affine"]:
            self.scaler = RevINAffineScaler(self.scaler, config.num_input_channels)
        if variant["res_attention"]:
            carry = _ScoreCarry()
            for layer in self.encoder.layers:
                old = layer.self_attn
                new = ResidualScoreAttention(config.d_model, config.num_attention_heads, dropout=config.attention_dropout,
                                             config=config, scores=carry)
                new.load_state_dict(old.state_dict())
                layer.self_attn = new
            self.encoder.register_forward_pre_hook(carry.reset)
            self.encoder.register_forward_hook(lambda *_: carry.reset())  # free the last scores


def original_variant(config: PatchTSTConfig) -> dict[str, Any] | None:
    """The `original_variant` block of a config, checked; None for a plain transformers PatchTST."""
    variant = getattr(config, "original_variant", None)
    if variant is None:
        return None
    unknown = sorted(set(variant) - set(_VARIANT_KEYS))
    if unknown:
        raise ValueError(f"config.original_variant has unknown keys {unknown}; valid: {list(_VARIANT_KEYS)}")
    out = {"res_attention": bool(variant.get("res_attention", False)), "padding_patch": variant.get("padding_patch"),
           "revin_affine": bool(variant.get("revin_affine", False))}
    if out["padding_patch"] not in (None, "end"):
        raise ValueError(f"original_variant.padding_patch must be null or 'end', got {out['padding_patch']!r}")
    return out


def build_patchtst_backbone(config: PatchTSTConfig, res_attention: bool = False, padding_patch: str | None = None,
                            revin_affine: bool = False) -> PatchTSTModel:
    """A PatchTST backbone returning per-patch hidden states (B, C, N, d_model) as `last_hidden_state`.

    With every option off it is a plain `PatchTSTModel` (transformers' patch alignment). Any option on
    selects the original repository's arithmetic (see the module docstring) and records it in the config.
    """
    if res_attention or padding_patch is not None or revin_affine:
        config.original_variant = {"res_attention": bool(res_attention), "padding_patch": padding_patch,
                                   "revin_affine": bool(revin_affine)}
        return PatchTSTOriginalModel(config)
    return PatchTSTModel(config)


# ----------------------------------------------------------------------------- loading
@dataclass
class LoadReport:
    """What a load did: keys loaded (source names), module keys left missing, source keys not used."""

    source: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    variant: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return (f"{self.source}: loaded {len(self.loaded)} tensors; missing {self.missing or 'none'}; "
                f"unused {self.unexpected or 'none'}; variant {self.variant}")


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """A plain state dict from `path`, read with `weights_only=True` (no arbitrary unpickling)."""
    # refused pickles and mislabelled files get clear errors there

    obj = read_state_dict(path)
    if isinstance(obj, dict) and not all(torch.is_tensor(v) for v in obj.values()):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(torch.is_tensor(v) for v in obj.values()):
        raise ValueError(f"{path}: expected a state dict (name -> tensor), got {type(obj).__name__}")
    return obj


def _strip_original_prefix(state: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """Keys relative to the backbone's `PatchTST_backbone` (drop `module.` and `model.`)."""
    state = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}
    if any(k.startswith(("model_trend.", "model_res.")) for k in state):
        raise ValueError(
            f"{source}: checkpoint uses decomposition=1 (two backbones, model_trend/model_res); a single "
            "PatchTST encoder cannot reproduce it. Use a checkpoint trained with decomposition=0."
        )
    if not any(k.startswith("model.backbone.") for k in state):
        raise ValueError(f"{source}: no `model.backbone.*` keys; not a PatchTST_supervised checkpoint "
                         f"(first keys: {sorted(state)[:5]})")
    return {k[len("model."):] if k.startswith("model.") else k: v for k, v in state.items()}


def _layer_key(rest: str) -> str | None:
    rules = [
        (r"self_attn\.W_Q\.(weight|bias)", r"self_attn.q_proj.\1"),
        (r"self_attn\.W_K\.(weight|bias)", r"self_attn.k_proj.\1"),
        (r"self_attn\.W_V\.(weight|bias)", r"self_attn.v_proj.\1"),
        (r"self_attn\.to_out\.0\.(weight|bias)", r"self_attn.out_proj.\1"),
        (r"norm_attn\.1\.(\w+)", r"norm_sublayer1.batchnorm.\1"),
        (r"norm_attn\.(weight|bias)", r"norm_sublayer1.\1"),
        (r"norm_ffn\.1\.(\w+)", r"norm_sublayer3.batchnorm.\1"),
        (r"norm_ffn\.(weight|bias)", r"norm_sublayer3.\1"),
        (r"ff\.(0|3)\.(weight|bias)", r"ff.\1.\2"),
    ]
    for pattern, target in rules:
        if re.fullmatch(pattern, rest):
            return re.sub(pattern, target, rest)
    return None


def map_original_key(key: str) -> str | None:
    """Module key for a backbone-relative original key (`backbone.W_P.weight` ...); None if unmapped."""
    fixed = {
        "backbone.W_P.weight": "encoder.embedder.input_embedding.weight",
        "backbone.W_P.bias": "encoder.embedder.input_embedding.bias",
        "backbone.W_pos": "encoder.positional_encoder.position_enc",
        "revin_layer.affine_weight": "scaler.affine_weight",
        "revin_layer.affine_bias": "scaler.affine_bias",
    }
    if key in fixed:
        return fixed[key]
    m = re.fullmatch(r"backbone\.encoder\.layers\.(\d+)\.(.+)", key)
    if m:
        rest = _layer_key(m.group(2))
        return f"encoder.layers.{m.group(1)}.{rest}" if rest else None
    return None


def config_from_original_checkpoint(state_dict: dict[str, torch.Tensor], *, context_window: int | None = None,
                                    stride: int | None = None, n_heads: int | None = None,
                                    setting: str | None = None, channel: int | None = None,
                                    **hints: Any) -> tuple[PatchTSTConfig, dict[str, Any]]:
    """A `PatchTSTConfig` + variant dict for an original checkpoint.

    From the weights: d_model, patch_len, n_layers, d_ff, norm type, number of patches, RevIN affine,
    channels. Not in the weights, so hints: `context_window` and `n_heads` (or `setting`, the checkpoint's
    directory name `..._sl<seq_len>_..._nh<n_heads>_...`), `stride`; `res_attention`, `revin`,
    `subtract_last`, `pre_norm`, `activation` default to the original repository's defaults. `channel`
    picks one RevIN channel so the backbone runs univariate series.
    """
    unknown = sorted(set(hints) - set(ORIGINAL_DEFAULTS))
    if unknown:
        raise TypeError(f"unknown hints {unknown}; valid: context_window, stride, n_heads, setting, channel, "
                        f"{sorted(ORIGINAL_DEFAULTS)}")
    opts = {**ORIGINAL_DEFAULTS, **hints}
    sd = _strip_original_prefix(state_dict, "checkpoint")
    if setting:
        sl, nh = re.search(r"_sl(\d+)_", setting), re.search(r"_nh(\d+)_", setting)
        context_window = context_window or (int(sl.group(1)) if sl else None)
        n_heads = n_heads or (int(nh.group(1)) if nh else None)
    if context_window is None or n_heads is None or stride is None:
        lacking = [n for n, v in (("context_window", context_window), ("n_heads", n_heads), ("stride", stride)) if v is None]
        raise ValueError(f"cannot infer {lacking} from the weights; pass them (the run's --seq_len, --n_heads, --stride; "
                         "setting=<checkpoint directory name> supplies seq_len and n_heads)")
    if opts["subtract_last"]:
        raise ValueError("original option subtract_last=1 has no transformers counterpart (its scaler subtracts the mean)")
    if opts["pre_norm"]:
        raise ValueError("original option pre_norm=True has no exact transformers counterpart: the original adds the "
                         "residual to the NORMALISED input (src = norm(src); src = src + attn(src)), transformers to the "
                         "raw one; use a post-norm (pre_norm=False) checkpoint")
    if opts["activation"] not in ("gelu", "relu"):
        raise ValueError(f"original option act={opts['activation']!r} is not supported (gelu, relu)")

    d_model, patch_len = sd["backbone.W_P.weight"].shape
    layers = {int(m.group(1)) for k in sd if (m := re.match(r"backbone\.encoder\.layers\.(\d+)\.", k))}
    n_layers = max(layers) + 1
    l0 = "backbone.encoder.layers.0."
    d_ff = sd[l0 + "ff.0.weight"].shape[0]
    if sd[l0 + "self_attn.W_Q.weight"].shape[0] != d_model or sd[l0 + "self_attn.W_V.weight"].shape[0] != d_model:
        raise ValueError(f"original options d_k/d_v give {sd[l0 + 'self_attn.W_Q.weight'].shape[0]} / "
                         f"{sd[l0 + 'self_attn.W_V.weight'].shape[0]} projection width; transformers needs d_model={d_model}")
    if d_model % n_heads:
        raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
    expected_scale = (d_model // n_heads) ** -0.5
    for i in range(n_layers):
        scale = sd.get(f"backbone.encoder.layers.{i}.self_attn.sdp_attn.scale")
        if scale is not None and abs(float(scale) - expected_scale) > 1e-6:
            raise ValueError(f"layer {i}: attention scale {float(scale):.6g} != head_dim**-0.5 = {expected_scale:.6g} "
                             "(original option lsa=True, or wrong n_heads); not supported")
    norm_type = "batchnorm" if l0 + "norm_attn.1.weight" in sd else "layernorm"
    q_len = sd["backbone.W_pos"].shape[0]
    plain = (context_window - patch_len) // stride + 1
    if q_len == plain + 1:
        padding_patch = "end"
    elif q_len == plain:
        padding_patch = None
    else:
        raise ValueError(f"W_pos has {q_len} patches but context_window={context_window}, patch_len={patch_len}, "
                         f"stride={stride} give {plain} (padding_patch=None) or {plain + 1} ('end'); check the hints")
    c_in = 1
    affine = "revin_layer.affine_weight" in sd
    if affine:
        c_in = sd["revin_layer.affine_weight"].shape[0]
        if not opts["revin"]:
            raise ValueError("hint revin=False but the checkpoint holds revin_layer.affine_* weights")
    if channel is not None:
        if not 0 <= channel < c_in:
            raise ValueError(f"channel={channel} out of range: the checkpoint has {c_in} RevIN channel(s)")
        c_in = 1
    config = PatchTSTConfig(
        num_input_channels=c_in, context_length=context_window, patch_length=patch_len, patch_stride=stride,
        num_hidden_layers=n_layers, d_model=d_model, num_attention_heads=n_heads, ffn_dim=d_ff, norm_type=norm_type,
        pre_norm=False, activation_function=opts["activation"], positional_encoding_type="random",
        share_embedding=True, channel_attention=False, use_cls_token=False, do_mask_input=False,
        scaling="std" if opts["revin"] else None, norm_eps=1e-5,
    )
    variant = {"res_attention": bool(opts["res_attention"]), "padding_patch": padding_patch, "revin_affine": affine}
    config.original_variant = dict(variant)
    info = {**variant, "revin": bool(opts["revin"]), "channel": channel, "num_patches": q_len}
    return config, info


def load_original_checkpoint(module: PatchTSTModel, path: str | Path, strict_shapes: bool = True,
                             channel: int | None = None) -> LoadReport:
    """Load `PatchTST_supervised/checkpoints/<setting>/checkpoint.pth` into a backbone.

    Head weights are reported as unused (an encoder has no forecasting head). A shape mismatch raises
    with both shapes (or, with strict_shapes=False, leaves that tensor unloaded and reports it).
    """
    source = str(path)
    sd = _strip_original_prefix(read_checkpoint(path), source)
    variant = original_variant(module.config) or {"res_attention": False, "padding_patch": None, "revin_affine": False}
    report = LoadReport(source=source, variant=dict(variant))
    target = module.state_dict()
    mapped: dict[str, torch.Tensor] = {}
    mismatched: list[str] = []
    for key, value in sd.items():
        if key.endswith("sdp_attn.scale"):
            expected = module.encoder.layers[0].self_attn.scaling
            if abs(float(value) - expected) > 1e-6:
                raise ValueError(f"{source}: {key}={float(value):.6g} but the module scales by {expected:.6g}")
            report.loaded.append("model." + key)  # verified, no parameter to fill
            continue
        new = map_original_key(key)
        if key.startswith("revin_layer.") and new not in target:
            if not _is_identity_affine(key, value):
                raise ValueError(f"{source}: {key} is a non-identity RevIN affine map but the module has none; build it "
                                 "with build_patchtst_backbone(..., revin_affine=True) or from_original_checkpoint()")
            new = None
        if new is None or new not in target:
            report.unexpected.append("model." + key)
            continue
        if key.startswith("revin_layer.") and channel is not None:
            value = value[channel:channel + 1]
        if key == "backbone.W_pos" and value.shape[-1] == 1:
            value = value.expand(-1, target[new].shape[-1])  # pe 'zero'/'normal'/'uniform': one value per patch
        if tuple(value.shape) != tuple(target[new].shape):
            msg = f"model.{key} -> {new}: checkpoint shape {tuple(value.shape)} vs module shape {tuple(target[new].shape)}"
            if strict_shapes:
                raise ValueError(f"{source}: shape mismatch: {msg}")
            mismatched.append(msg)
            continue
        mapped[new] = value
        report.loaded.append("model." + key)
    module.load_state_dict(mapped, strict=False)
    report.missing = sorted(set(target) - set(mapped)) + mismatched
    return report


def _is_identity_affine(key: str, value: torch.Tensor) -> bool:
    return bool(torch.all(value == (1.0 if key.endswith("weight") else 0.0)))


def from_original_checkpoint(path: str | Path, **hints: Any) -> tuple[PatchTSTModel, LoadReport]:
    """Config inference + backbone + load, in one call; the setting name defaults to the parent directory."""
    hints.setdefault("setting", Path(path).parent.name)
    config, info = config_from_original_checkpoint(read_checkpoint(path), **hints)
    module = PatchTSTOriginalModel(config)
    report = load_original_checkpoint(module, path, channel=hints.get("channel"))
    report.variant = info
    return module.eval(), report


def load_transformers_patchtst(module: PatchTSTModel, directory: str | Path, strict_shapes: bool = True) -> LoadReport:
    """Load a transformers PatchTST directory (PatchTSTModel or PatchTSTFor* weights) into `module`.

    A `model.` prefix is removed; heads are reported unused; the patching geometry in the directory's
    config.json must equal the module's (it decides which values each patch holds).
    """
    directory = Path(directory)
    cfg_path = directory / "config.json"
    if cfg_path.is_file():
        theirs = json.loads(cfg_path.read_text())
        keys = ("context_length", "patch_length", "patch_stride", "scaling", "num_input_channels", "pre_norm",
                "norm_type", "use_cls_token", "channel_attention", "original_variant")
        ours = module.config.to_dict()
        diff = [f"{k}: directory {theirs.get(k)!r} vs module {ours.get(k)!r}" for k in keys if theirs.get(k) != ours.get(k)]
        if diff:
            raise ValueError(f"{cfg_path}: PatchTST config differs from the module's: {'; '.join(diff)}")
    files = sorted(directory.glob("*.safetensors")) or sorted(directory.glob("pytorch_model*.bin"))
    if not files:
        raise FileNotFoundError(f"{directory}: no *.safetensors or pytorch_model*.bin weights")
    sd: dict[str, torch.Tensor] = {}
    for f in files:
        sd.update(read_checkpoint(f))
    if any(k.startswith("model.") for k in sd):
        sd = {(k[len("model."):] if k.startswith("model.") else "\0" + k): v for k, v in sd.items()}
    target = module.state_dict()
    report = LoadReport(source=str(directory), variant=original_variant(module.config) or {})
    mapped, mismatched = {}, []
    for key, value in sd.items():
        name = key.lstrip("\0")
        if key.startswith("\0") or key not in target:
            report.unexpected.append(name)
            continue
        if tuple(value.shape) != tuple(target[key].shape):
            msg = f"{key}: checkpoint shape {tuple(value.shape)} vs module shape {tuple(target[key].shape)}"
            if strict_shapes:
                raise ValueError(f"{directory}: shape mismatch: {msg}")
            mismatched.append(msg)
            continue
        mapped[key] = value
        report.loaded.append(name)
    module.load_state_dict(mapped, strict=False)
    report.missing = sorted(set(target) - set(mapped)) + mismatched
    return report


__all__ = [
    "LoadReport",
    "OriginalPatchify",
    "PatchTSTOriginalModel",
    "ResidualScoreAttention",
    "RevINAffineScaler",
    "build_patchtst_backbone",
    "config_from_original_checkpoint",
    "from_original_checkpoint",
    "load_original_checkpoint",
    "load_transformers_patchtst",
    "map_original_key",
    "read_checkpoint",
]
