"""Model shapes for the memory planner: presets of the released ChatTS models, config.json reading,
and exact parameter counts (decoder linears, embeddings, norms, ts_encoder, LoRA).

Design choices:
- No torch import: `tsplugin plan` answers in a fraction of a second on any machine.
- Counts are exact for the plugin's model classes (a test compares them with real tiny models of
  both architectures, and the LoRA count with PEFT's), so the planner's errors can only come from
  the activation/allocator model, never from the arithmetic of shapes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tsplugin.processing.positions import input_width, num_positions
from tsplugin.processing.profiles import INIT_MODEL_PROFILES, resolve_profile
from tsplugin.architectures import ARCHITECTURES, backbone_model_types
from tsplugin.registry import Registry

# Decoder linear layers by LLaMA-Factory/PEFT target name: (in_features, out_features) as functions.
ATTN_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP_TARGETS = ("gate_proj", "up_proj", "down_proj")
ALL_TARGETS = ATTN_TARGETS + MLP_TARGETS


@dataclass(frozen=True)
class ModelShape:
    """What the planner needs to know about a ChatTS-architecture model."""

    name: str
    arch: str  # model_type of a planner architecture (`tsplugin.architectures`): "chatts" (Qwen2) or "qwen3ts" (Qwen3)
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    tie_word_embeddings: bool = False
    ts: dict[str, Any] = field(default_factory=dict)
    profile: str = "chatts-14b-v1"  # encoding profile (tsplugin.processing.profiles): the prefix the planner counts

    @property
    def attention_bias(self) -> bool:
        """Qwen2 has q/k/v biases; Qwen3 has none but RMS-normalises q and k per head."""
        return ARCHITECTURES[self.arch].backbone == "qwen2"

    @property
    def qk_norm(self) -> bool:
        return ARCHITECTURES[self.arch].backbone == "qwen3"

    @property
    def q_dim(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.num_kv_heads * self.head_dim

    @property
    def patch_size(self) -> int:
        return int(self.ts.get("patch_size", 16))

    @property
    def encoder_block(self) -> dict[str, Any]:
        """The `ts` block as the position rules read it (patch_size 16 when the config has none)."""
        return {**self.ts, "patch_size": self.patch_size}

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(in_features, out_features) of each decoder linear of one layer, by target name."""
        h, i = self.hidden_size, self.intermediate_size
        return {
            "q_proj": (h, self.q_dim),
            "k_proj": (h, self.kv_dim),
            "v_proj": (h, self.kv_dim),
            "o_proj": (self.q_dim, h),
            "gate_proj": (h, i),
            "up_proj": (h, i),
            "down_proj": (i, h),
        }

    def with_ts(self, **changes: Any) -> "ModelShape":
        return replace(self, ts={**self.ts, **changes})


# The released checkpoints (config.json of ChatTS-14B / ChatTS-8B; Qwen2.5-14B / Qwen3-8B decoders).
_QWEN25_14B = dict(hidden_size=5120, num_layers=48, num_heads=40, num_kv_heads=8, head_dim=128,
                   intermediate_size=13824, vocab_size=152064)
_QWEN3_8B = dict(hidden_size=4096, num_layers=36, num_heads=32, num_kv_heads=8, head_dim=128,
                 intermediate_size=12288, vocab_size=151936)

PRESETS: Registry[ModelShape] = Registry("model preset", hint="(or pass a directory with config.json)")


def register_preset(shape: ModelShape) -> None:
    """Add a named model shape (refuses duplicates)."""
    PRESETS.register(shape.name, shape)


def get_preset(name: str) -> ModelShape:
    """The preset `name`; an unknown name lists the valid ones."""
    return PRESETS.get(name)


register_preset(ModelShape("chatts-14b", "chatts", **_QWEN25_14B,
                           ts={"patch_size": 16, "num_layers": 5, "num_features": 2}, profile="chatts-14b-v1"))
register_preset(ModelShape("chatts-14b-0801", "chatts", **_QWEN25_14B,
                           ts={"patch_size": 8, "num_layers": 5, "num_features": 2, "use_position_embedding": True,
                               "embedding_dim": 16, "max_sequence_length": 32768}, profile="chatts-14b-0801"))
register_preset(ModelShape("chatts-8b", "qwen3ts", **_QWEN3_8B,
                           ts={"patch_size": 8, "num_layers": 5, "num_features": 2, "use_position_embedding": True,
                               "embedding_dim": 16, "max_sequence_length": 8192}, profile="chatts-8b"))

# The model types the planner counts exactly, and the plain decoders they are built on (qwen2 -> chatts).
_ARCH_OF_MODEL_TYPE = {
    **{name: name for name, spec in ARCHITECTURES.items() if spec.planner},
    **{base: arch for base, arch in backbone_model_types().items() if ARCHITECTURES[arch].planner},
}


def shape_from_config(config: dict[str, Any], name: str = "config", model_dir: str | Path | None = None) -> ModelShape:
    """A ModelShape from a config.json dict (ChatTS `chatts`/`qwen3ts`, or a plain Qwen2/Qwen3).

    The encoding profile is the checkpoint's (tsplugin.processing.profiles.resolve_profile); a plain Qwen gets the
    one `tsplugin init-model --base` would write.
    """
    model_type = config.get("model_type")
    if model_type not in _ARCH_OF_MODEL_TYPE:
        raise ValueError(f"{name}: model_type {model_type!r} is not a ChatTS/Qwen architecture; expected one of {sorted(_ARCH_OF_MODEL_TYPE)}")
    missing = [k for k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size") if k not in config]
    if missing:
        raise ValueError(f"{name}: config lacks {missing}")
    heads = int(config["num_attention_heads"])
    hidden = int(config["hidden_size"])
    head_dim = config.get("head_dim") or hidden // heads
    arch = _ARCH_OF_MODEL_TYPE[model_type]
    if isinstance(config.get("ts"), dict):
        profile = resolve_profile(config, model_dir)[0].name
    else:
        profile = INIT_MODEL_PROFILES[arch]
    return ModelShape(
        name=name,
        arch=arch,
        hidden_size=hidden,
        num_layers=int(config["num_hidden_layers"]),
        num_heads=heads,
        num_kv_heads=int(config.get("num_key_value_heads") or heads),
        head_dim=int(head_dim),
        intermediate_size=int(config["intermediate_size"]),
        vocab_size=int(config["vocab_size"]),
        tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
        ts=dict(config.get("ts") or {}),
        profile=profile,
    )


def load_shape(model: str) -> ModelShape:
    """A preset name (`chatts-14b`, `chatts-8b`, ...) or a directory holding config.json."""
    if model in PRESETS:
        return PRESETS[model]
    path = Path(model)
    config_file = path / "config.json" if path.is_dir() else path
    if not config_file.is_file():
        raise ValueError(f"--model {model!r}: neither a preset ({', '.join(sorted(PRESETS))}) nor a directory with config.json")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{config_file}: not valid JSON ({e})") from None
    return shape_from_config(config, name=str(path), model_dir=path if path.is_dir() else None)


# ---- parameter counts -------------------------------------------------------------------------


def ts_encoder_params(shape: ModelShape) -> int:
    """Parameters of `ts_encoder` (MLP of `num_layers` Linear layers + optional position table)."""
    ts = shape.ts
    if not ts:
        return 0
    hidden, layers = shape.hidden_size, int(ts.get("num_layers", 5))
    emb_dim = int(ts.get("embedding_dim", 16))
    width = input_width(shape.encoder_block)
    n = width * hidden + hidden + (layers - 1) * (hidden * hidden + hidden)
    if ts.get("use_position_embedding"):
        n += (int(ts.get("max_sequence_length", 32768)) + 1) * emb_dim
    if ts.get("use_layer_norm"):
        n += 2 * hidden
    return n


def parameter_counts(shape: ModelShape) -> dict[str, int]:
    """Exact parameter count by part: decoder_linears (weights), linear_biases, embed_tokens, lm_head, norms, ts_encoder."""
    linears = sum(i * o for i, o in shape.linear_shapes().values()) * shape.num_layers
    biases = (shape.q_dim + 2 * shape.kv_dim) * shape.num_layers if shape.attention_bias else 0
    norms = 2 * shape.hidden_size * shape.num_layers + shape.hidden_size  # two per layer + final
    if shape.qk_norm:
        norms += 2 * shape.head_dim * shape.num_layers
    embed = shape.vocab_size * shape.hidden_size
    return {
        "decoder_linears": linears,
        "linear_biases": biases,
        "embed_tokens": embed,
        "lm_head": 0 if shape.tie_word_embeddings else embed,
        "norms": norms,
        "ts_encoder": ts_encoder_params(shape),
    }


def resolve_targets(targets: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """LLaMA-Factory's `lora_target` value -> decoder target names (`all` = every decoder linear)."""
    if isinstance(targets, str):
        targets = [t.strip() for t in targets.split(",") if t.strip()]
    if list(targets) == ["all"]:
        return ALL_TARGETS
    unknown = [t for t in targets if t not in ALL_TARGETS]
    if unknown:
        raise ValueError(f"unknown LoRA target(s) {unknown}; use `all` or a comma list of {', '.join(ALL_TARGETS)}")
    if not targets:
        raise ValueError("no LoRA target given; use `all` or a comma list of " + ", ".join(ALL_TARGETS))
    return tuple(dict.fromkeys(targets))


def lora_params(shape: ModelShape, targets: str | list[str] | tuple[str, ...], rank: int) -> int:
    """LoRA A+B parameters over the decoder: rank * (in + out) per targeted linear per layer."""
    shapes = shape.linear_shapes()
    return sum(rank * (shapes[t][0] + shapes[t][1]) for t in resolve_targets(targets)) * shape.num_layers


def lora_tensor_sizes(shape: ModelShape, targets: str | list[str] | tuple[str, ...], rank: int) -> list[int]:
    """Element counts of every LoRA tensor (A: rank x in, B: out x rank), one entry per tensor."""
    shapes = shape.linear_shapes()
    one_layer = [n for t in resolve_targets(targets) for n in (rank * shapes[t][0], shapes[t][1] * rank)]
    return one_layer * shape.num_layers


def series_positions(shape: ModelShape, series_length: int) -> int:
    """Decoder positions of one series: ceil(L / patch_size) `<ts>` tokens (tsplugin.processing.positions)."""
    return num_positions(shape.encoder_block, series_length)


__all__ = [
    "ALL_TARGETS", "ModelShape", "PRESETS", "get_preset", "load_shape", "lora_params", "lora_tensor_sizes", "parameter_counts",
    "register_preset", "resolve_targets", "series_positions", "shape_from_config", "ts_encoder_params",
]
