"""How many decoder positions (`<ts>` tokens) a series of L points takes, and how wide one encoder
input row is: one torch-free rule per encoder, keyed by the encoder's registry name. The processor
(placeholder expansion), the torch encoders (`tsplugin.models.encoders`), the memory planner and the
models' error messages all read these rules, so the prompt and the encoder can never disagree.

Design choices:
- An encoder's block (config.json `ts` for ChatTS models, `ts.encoder` for qwen_ts) is checked and
  completed with its defaults here, not in the torch module: the processor needs the geometry
  (patch size, window, stride) without building or importing the encoder.
- The rules, per encoder:
  `chatts_mlp` (ChatTS's patch MLP, also a ChatTS checkpoint's own `ts` block): ceil(L / patch_size);
  `patchtst`: a fixed window, so the same count for every L: (context_window - patch_len) // stride + 1,
  +1 with `padding_patch: end`, +1 with a CLS token (`extra.use_cls_token`);
  `timellm`: the last min(L, context_window) points, patches every `stride` after repeating the last
  value: max(1, (min(L, context_window) + stride - patch_len) // stride + 1).
- `tests/test_positions.py` runs every registered torch encoder over many lengths and checks its
  output count against these rules and the processor's expansion.

No torch, no numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from tsplugin.registry import Registry

# --- ChatTS patch MLP (`ts` block of chatts / qwen3ts checkpoints, `chatts_mlp` encoder) -----------

# Defaults of the optional keys of a ChatTS `ts` block (as in the released checkpoints).
TS_DEFAULTS: dict[str, Any] = {
    "num_features": 2,
    "use_position_embedding": False,
    "use_position_idx": False,
    "use_layer_norm": False,
    "embedding_dim": 16,
    "max_sequence_length": 32768,
}


def num_patches(length: int, patch_size: int) -> int:
    """ChatTS's rule: ceil(length / patch_size) patches (= `<ts>` tokens) for a series of `length` points."""
    if patch_size <= 0:
        raise ValueError(f"patch_size must be positive, got {patch_size}")
    if length <= 0:
        raise ValueError(f"a time series has length {length}; it needs at least one value")
    return -(-int(length) // int(patch_size))


def ts_input_size(ts: Mapping[str, Any]) -> int:
    """Width of one patch as ChatTS's MLP sees it (its first Linear's in_features)."""
    cfg = {**TS_DEFAULTS, **ts}
    p = int(cfg["patch_size"])
    if cfg["use_position_embedding"]:
        return p * (1 + int(cfg["embedding_dim"]))  # values + one embedding per point
    if cfg["use_position_idx"]:
        return 2 * p  # (value, normalised position) per point
    return p


def chatts_block(ts: Mapping[str, Any]) -> dict[str, Any]:
    """A ChatTS `ts` block (or a `chatts_mlp` encoder block) with its defaults; needs a positive patch_size."""
    if "patch_size" not in ts:
        raise ValueError(f"encoder block {dict(ts)!r} needs a patch_size (ChatTS patch MLP: one position per patch_size points)")
    block = {**TS_DEFAULTS, **ts}
    if int(block["patch_size"]) <= 0:
        raise ValueError(f"patch_size must be positive, got {block['patch_size']}")
    return block


def max_series_points(ts: Any) -> int | None:
    """The longest series a ChatTS `ts` block's encoder takes (its position table, `max_sequence_length`
    rows, when `use_position_embedding`), or None when the encoder has no such table."""
    if not isinstance(ts, Mapping) or not ts.get("use_position_embedding"):
        return None
    return int({**TS_DEFAULTS, **ts}["max_sequence_length"])


# --- PatchTST (`patchtst` encoder) -----------------------------------------------------------------

PATCHTST_DEFAULTS: dict[str, Any] = {
    "context_window": 512,
    "patch_len": 16,
    "stride": 8,
    "d_model": 128,
    "num_layers": 3,
    "num_heads": 4,
    "ffn_dim": 256,
    "dropout": 0.0,
    "scaling": "std",
    "res_attention": False,
    "padding_patch": None,
    "revin_affine": False,
    "extra": {},
}


def patchtst_block(ts_config: Mapping[str, Any]) -> dict[str, Any]:
    """The block with defaults filled in; checks the geometry (names the key to fix)."""
    unknown = sorted(set(ts_config) - set(PATCHTST_DEFAULTS) - {"name"})
    if unknown:
        raise ValueError(f"patchtst encoder block: unknown keys {unknown}; valid keys: {sorted(PATCHTST_DEFAULTS)}")
    block = {**PATCHTST_DEFAULTS, **ts_config}
    for key in ("context_window", "patch_len", "stride", "d_model", "num_layers", "num_heads"):
        if int(block[key]) <= 0:
            raise ValueError(f"patchtst encoder block: {key} must be positive, got {block[key]}")
    if int(block["patch_len"]) > int(block["context_window"]):
        raise ValueError(
            f"patchtst encoder block: patch_len={block['patch_len']} exceeds context_window={block['context_window']}"
        )
    if block["padding_patch"] not in (None, "end"):
        raise ValueError(f"patchtst encoder block: padding_patch must be null or 'end', got {block['padding_patch']!r}")
    return block


def _patchtst_positions(block: dict[str, Any], length: int) -> int:
    cw, pl, st = int(block["context_window"]), int(block["patch_len"]), int(block["stride"])
    n = (cw - pl) // st + 1
    if block["padding_patch"] == "end":
        n += 1
    if (block["extra"] or {}).get("use_cls_token"):
        n += 1
    return n


def _patchtst_formula(block: dict[str, Any]) -> str:
    extra = " + 1 (padding_patch: end)" if block["padding_patch"] == "end" else ""
    extra += " + 1 (CLS token)" if (block["extra"] or {}).get("use_cls_token") else ""
    return (f"(context_window={block['context_window']} - patch_len={block['patch_len']}) // stride={block['stride']} + 1"
            f"{extra} = {_patchtst_positions(block, 1)}, whatever the length")


# --- Time-LLM reprogramming (`timellm` encoder) ----------------------------------------------------

TIMELLM_DEFAULTS: dict[str, Any] = {
    "context_window": 512,
    "patch_len": 16,
    "stride": 8,
    "d_model": 32,
    "num_heads": 8,
    "d_keys": 32,
    "num_prototypes": 1000,
    "dropout": 0.1,
    "vocab_size": None,
}


def timellm_block(ts_config: Mapping[str, Any]) -> dict[str, Any]:
    """The block with defaults filled in; names the key to fix."""
    unknown = sorted(set(ts_config) - set(TIMELLM_DEFAULTS) - {"name"})
    if unknown:
        raise ValueError(f"timellm encoder block: unknown keys {unknown}; valid keys: {sorted(TIMELLM_DEFAULTS)}")
    block = {**TIMELLM_DEFAULTS, **ts_config}
    for key in ("context_window", "patch_len", "stride", "d_model", "num_heads", "d_keys", "num_prototypes"):
        if int(block[key]) <= 0:
            raise ValueError(f"timellm encoder block: {key} must be positive, got {block[key]}")
    if int(block["patch_len"]) > int(block["context_window"]):
        raise ValueError(f"timellm encoder block: patch_len={block['patch_len']} exceeds "
                         f"context_window={block['context_window']}")
    return block


def _timellm_positions(block: dict[str, Any], length: int) -> int:
    m = min(int(length), int(block["context_window"]))
    return max(1, (m + int(block["stride"]) - int(block["patch_len"])) // int(block["stride"]) + 1)


# --- the registry ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PositionRule:
    """One encoder's geometry. `block`: the block with defaults, checked; `positions(block, L)`: decoder
    positions of a series of L >= 1 points; `input_width(block)`: values in one encoder input row (a
    patch); `formula(block)`: the rule in words, for error messages."""

    name: str
    block: Callable[[Mapping[str, Any]], dict[str, Any]]
    positions: Callable[[dict[str, Any], int], int]
    input_width: Callable[[dict[str, Any]], int]
    formula: Callable[[dict[str, Any]], str]


# Keyed by encoder name: an unknown name is an unknown encoder (the same error as the encoder registry's).
POSITION_RULES: Registry[PositionRule] = Registry("time-series encoder")
# The rule of a ChatTS checkpoint's own `ts` block (no `name`: the released configs have none).
CHATTS_RULE = "chatts_mlp"


def register_position_rule(rule: PositionRule) -> PositionRule:
    """Add the rule of a new encoder (refuses duplicates)."""
    return POSITION_RULES.register(rule.name, rule)


def get_position_rule(name: str) -> PositionRule:
    """The rule registered as `name`; unknown names raise with the list of valid ones."""
    return POSITION_RULES.get(name)


def _rule_and_block(block: Mapping[str, Any]) -> tuple[PositionRule, dict[str, Any]]:
    if not isinstance(block, Mapping):
        raise ValueError(f"encoder block {block!r} is not a mapping")
    name = block.get("name", CHATTS_RULE)
    if not isinstance(name, str):
        raise ValueError(f"encoder block {dict(block)!r} has no valid `name`; valid: {', '.join(POSITION_RULES.names())}")
    rule = get_position_rule(name)
    return rule, rule.block(block)


def num_positions(block: Mapping[str, Any], length: int) -> int:
    """Decoder positions (`<ts>` tokens) a series of `length` points costs with this encoder block
    (a ChatTS `ts` block, or a `ts.encoder` block with a `name`)."""
    if int(length) <= 0:
        raise ValueError(f"a time series has length {length}; it needs at least one value")
    rule, full = _rule_and_block(block)
    return int(rule.positions(full, int(length)))


def input_width(block: Mapping[str, Any]) -> int:
    """Values in one encoder input row (a patch) of this encoder block."""
    rule, full = _rule_and_block(block)
    return int(rule.input_width(full))


def positions_formula(block: Mapping[str, Any]) -> str:
    """The position rule of this block in words, e.g. `ceil(length / patch_size=16)` (for error messages)."""
    rule, full = _rule_and_block(block)
    return rule.formula(full)


register_position_rule(PositionRule(
    "chatts_mlp", chatts_block, lambda b, n: num_patches(n, int(b["patch_size"])), ts_input_size,
    lambda b: f"ceil(length / patch_size={b['patch_size']})",
))
register_position_rule(PositionRule(
    "patchtst", patchtst_block, _patchtst_positions, lambda b: int(b["patch_len"]), _patchtst_formula,
))
register_position_rule(PositionRule(
    "timellm", timellm_block, _timellm_positions, lambda b: int(b["patch_len"]),
    lambda b: (f"max(1, (min(length, context_window={b['context_window']}) + stride={b['stride']} - "
               f"patch_len={b['patch_len']}) // stride + 1)"),
))

__all__ = [
    "CHATTS_RULE",
    "PATCHTST_DEFAULTS",
    "POSITION_RULES",
    "PositionRule",
    "TIMELLM_DEFAULTS",
    "TS_DEFAULTS",
    "chatts_block",
    "get_position_rule",
    "input_width",
    "max_series_points",
    "num_patches",
    "num_positions",
    "patchtst_block",
    "positions_formula",
    "register_position_rule",
    "timellm_block",
    "ts_input_size",
]
