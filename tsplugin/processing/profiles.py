"""Encoding profiles: what differs between ChatTS releases, decided per checkpoint (no torch).

Design choices:
- One frozen `TSProfile` per release holds every rule that is not in the `ts` config block itself:
  the text prefix written before each series, how the last partial patch is padded, which position
  index padded points take, the layer-norm default, and the chat template the release was prompted with.
  Patch size, position embedding and layer count stay in the checkpoint's `ts` block.
- `resolve_profile` reads what a checkpoint ships (config.json `ts_profile`, the `ts` block,
  `architectures`, `auto_map`, processor files and class names), never `model_type` alone. Evidence
  that does not single out one release gives a warning naming the key to set, never a silent guess.
- The override: `ts_profile` (config.json) and `timeseries_profile` (LLaMA-Factory YAML); the YAML wins.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import numpy as np

from tsplugin.architectures import ARCHITECTURES
from tsplugin.registry import Registry

logger = logging.getLogger("tsplugin")

CONFIG_KEY = "ts_profile"  # config.json, top level
RECIPE_KEY = "timeseries_profile"  # LLaMA-Factory YAML recipe

PREFIX_STYLES = ("stats", "value_offset")
PADDINGS = ("repeat_last", "zeros")
PAD_POSITION_RULES = ("max_sequence_length",)


@dataclass(frozen=True)
class TSProfile:
    """Release-specific encoding rules of a time-series checkpoint."""

    name: str
    release: str  # human description, printed by `tsplugin inspect`
    # "stats": `[offset=..|scaling=..|length=..|max=..|min=..|left=..|right=..]` (ChatTS-14B 0801, ChatTS-8B);
    # "value_offset": `[Value Offset: ..|Value Scaling: ..]` (first ChatTS-14B release, paper-era data).
    prefix_style: str
    # The last, partial patch: "repeat_last" fills it with the series' last value, "zeros" with 0.
    last_patch_padding: str
    # Position index of padded points when the `ts` block has use_position_embedding:
    # "max_sequence_length" = the spare last row of the table. None: the release has no position embedding.
    pad_position_index: str | None
    # `use_layer_norm` when the `ts` block does not say (a LayerNorm after the encoder MLP).
    layer_norm: bool
    # Template the release is prompted with; None: by architecture (tsplugin's own qwen_ts models).
    default_template: str | None

    def __post_init__(self) -> None:
        if self.prefix_style not in PREFIX_STYLES:
            raise ValueError(f"profile {self.name!r}: prefix_style {self.prefix_style!r} is not one of {PREFIX_STYLES}")
        if self.last_patch_padding not in PADDINGS:
            raise ValueError(f"profile {self.name!r}: last_patch_padding {self.last_patch_padding!r} is not one of {PADDINGS}")
        if self.pad_position_index is not None and self.pad_position_index not in PAD_POSITION_RULES:
            raise ValueError(
                f"profile {self.name!r}: pad_position_index {self.pad_position_index!r} is not one of {PAD_POSITION_RULES}"
            )


PROFILES: Registry[TSProfile] = Registry(
    "time-series profile", hint=f"(set `{RECIPE_KEY}` in the recipe or `{CONFIG_KEY}` in config.json)"
)


def register_profile(profile: TSProfile) -> TSProfile:
    """Add a profile (refuses duplicates)."""
    return PROFILES.register(profile.name, profile)


def profile_names() -> list[str]:
    return PROFILES.names()


def get_profile(name: str | TSProfile, where: str = "") -> TSProfile:
    """The registered profile `name`; an unknown name lists the valid ones (`where` says who asked)."""
    if isinstance(name, TSProfile):
        return name
    return PROFILES.get(name, where)


CHATTS_14B_V1 = register_profile(
    TSProfile(
        name="chatts-14b-v1",
        release="ChatTS-14B first release (Dec 2024; patch 16, no position embedding) and paper-era data",
        prefix_style="value_offset",
        last_patch_padding="zeros",
        pad_position_index=None,
        layer_norm=False,
        default_template=ARCHITECTURES["chatts"].default_template,
    )
)
CHATTS_14B_0801 = register_profile(
    TSProfile(
        name="chatts-14b-0801",
        release="ChatTS-14B current (the 0801 update; patch 8, position embedding)",
        prefix_style="stats",
        last_patch_padding="repeat_last",
        pad_position_index="max_sequence_length",
        layer_norm=False,
        default_template=ARCHITECTURES["chatts"].default_template,
    )
)
CHATTS_8B = register_profile(
    TSProfile(
        name="chatts-8b",
        release="ChatTS-8B (Qwen3; patch 8, position embedding, use_layer_norm key)",
        prefix_style="stats",
        last_patch_padding="repeat_last",
        pad_position_index="max_sequence_length",
        layer_norm=False,
        default_template=ARCHITECTURES["qwen3ts"].default_template,
    )
)
TSFACTORY_V0 = register_profile(
    TSProfile(
        name="tsfactory-v0",
        release="tsfactory checkpoints written before profiles existed (init-model / build-model)",
        prefix_style="value_offset",
        last_patch_padding="repeat_last",
        pad_position_index="max_sequence_length",
        layer_norm=False,
        default_template=None,
    )
)
# What `tsplugin init-model` writes, per architecture (model_type), unless `--profile` says otherwise.
INIT_MODEL_PROFILES = {name: spec.default_profile for name, spec in ARCHITECTURES.items() if spec.default_profile}


# --- the text prefix ---------------------------------------------------------------------------


def sp_stats(values: Iterable[float] | np.ndarray) -> tuple[np.ndarray, float, float]:
    """Validated raw series (float64), offset -mean and scale of the value-preserving encoding."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"a time series must be 1-D, got shape {tuple(x.shape)}")
    if x.size == 0:
        raise ValueError("a time series has length 0; every <ts><ts/> placeholder needs at least one value")
    mean = float(np.add.reduce(x)) / x.size  # np.mean's own sum and division, without its Python wrapper
    if not math.isfinite(mean):  # a NaN or inf among the values (a finite mean rules both out), or a sum beyond float64
        bad = ~np.isfinite(x)
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"time series has {int(bad.sum())} non-finite value(s) (first at index {first}: {x[first]}); "
                "remove or interpolate NaN/inf before encoding (tsconvert does this when converting)"
            )
    # max |x - mean| without the array x - mean: rounding is monotonic, so the largest rounded difference is the
    # rounded difference of the extremes, bit for bit the same float
    peak = max(float(x.max()) - mean, mean - float(x.min()))
    scale = peak / 3.0 if peak >= 3.0 else 1.0
    return x, -mean, scale


def _prefix_text(style: str, offset: float, scale: float, length: int, high: float, low: float, left: float, right: float) -> str:
    if style == "value_offset":
        return f"[Value Offset: {offset:.4f}|Value Scaling: {scale:.4f}]"
    return (
        f"[offset={offset:.4f}|scaling={scale:.4f}|length={length}|max={high:.4f}|"
        f"min={low:.4f}|left={left:.4f}|right={right:.4f}]"
    )


def format_prefix(values: Iterable[float] | np.ndarray, profile: str | TSProfile) -> str:
    """The text the release's own processor writes before a series' `<ts>` positions."""
    return prefix_from_stats(*sp_stats(values), profile)


def prefix_from_stats(x: np.ndarray, offset: float, scale: float, profile: str | TSProfile) -> str:
    """`format_prefix` from `sp_stats(values)` already computed (the series is read once)."""
    profile = get_profile(profile)
    return _prefix_text(
        profile.prefix_style, offset, scale, x.size, float(x.max()), float(x.min()), float(x[0]), float(x[-1])
    )


def prefix_token_estimate(profile: str | TSProfile, series_length: int) -> int:
    """Tokens of one series' prefix for the memory planner (an upper estimate, no tokenizer needed).

    Written for an offset, max, min, left and right like -1234.5678 and a scale of 1: Qwen tokenises
    every digit separately; a run of letters and every other character count one token each; plus one.
    """
    import re

    v = -1234.5678
    text = _prefix_text(get_profile(profile).prefix_style, v, 1.0, int(series_length), v, v, v, v)
    return len(re.findall(r"\d|[A-Za-z]+|[^\sA-Za-z\d]", text)) + 1


# --- which profile a checkpoint uses -------------------------------------------------------------

# The released architectures per backbone, and their class names (architectures / processor_class).
_RELEASED = {spec.backbone: spec for spec in ARCHITECTURES.values() if spec.released_classes}
QWEN2_TS_CLASSES = _RELEASED["qwen2"].released_classes + _RELEASED["qwen2"].released_processor_classes
QWEN3_TS_CLASSES = _RELEASED["qwen3"].released_classes + _RELEASED["qwen3"].released_processor_classes


def _read_json(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


@dataclass(frozen=True)
class CheckpointEvidence:
    """What a checkpoint ships that tells releases apart (config keys, processor files and classes)."""

    model_type: str | None
    architectures: tuple[str, ...]
    auto_map: tuple[str, ...]  # AutoConfig, AutoModelForCausalLM, AutoProcessor, ...
    position_embedding: bool
    patch_size: int | None
    processor_files: tuple[str, ...]  # processing_*.py in the directory
    processor_classes: tuple[str, ...]  # processor_class / AutoProcessor targets

    @classmethod
    def collect(cls, config: Mapping[str, Any], model_dir: str | os.PathLike | None = None) -> "CheckpointEvidence":
        ts = config.get("ts") if isinstance(config.get("ts"), Mapping) else {}
        auto_map = config.get("auto_map") if isinstance(config.get("auto_map"), Mapping) else {}
        classes = [str(v).rsplit(".", 1)[-1] for k, v in auto_map.items() if k == "AutoProcessor"]
        files: list[str] = []
        if model_dir is not None and os.path.isdir(model_dir):
            files = sorted(f for f in os.listdir(model_dir) if f.startswith("processing_") and f.endswith(".py"))
            for name in ("processor_config.json", "tokenizer_config.json", "preprocessor_config.json"):
                data = _read_json(os.path.join(model_dir, name))
                if isinstance(data.get("processor_class"), str):
                    classes.append(data["processor_class"])
                sub = data.get("auto_map") if isinstance(data.get("auto_map"), Mapping) else {}
                if isinstance(sub.get("AutoProcessor"), str):
                    classes.append(sub["AutoProcessor"].rsplit(".", 1)[-1])
        architectures = config.get("architectures") or ()
        patch = ts.get("patch_size")
        return cls(
            model_type=config.get("model_type"),
            architectures=tuple(str(a) for a in architectures),
            auto_map=tuple(sorted(auto_map)),
            position_embedding=bool(ts.get("use_position_embedding", False)),
            patch_size=int(patch) if isinstance(patch, int) else None,
            processor_files=tuple(files),
            processor_classes=tuple(dict.fromkeys(classes)),
        )

    def names(self) -> set[str]:
        return set(self.architectures) | set(self.processor_classes)

    def describe(self) -> str:
        parts = []
        if self.architectures:
            parts.append(f"architectures {'/'.join(self.architectures)}")
        parts.append(f"model_type {self.model_type}")
        parts.append(f"ts.use_position_embedding {str(self.position_embedding).lower()}")
        if self.patch_size is not None:
            parts.append(f"ts.patch_size {self.patch_size}")
        if self.processor_files:
            parts.append(f"processor file {', '.join(self.processor_files)}")
        if self.processor_classes:
            parts.append(f"processor class {', '.join(self.processor_classes)}")
        if self.auto_map:
            parts.append(f"auto_map {', '.join(self.auto_map)}")
        else:
            parts.append("no auto_map")
        return " + ".join(parts)


def _ambiguous(guess: TSProfile, evidence: CheckpointEvidence, why: str, where: str) -> tuple[TSProfile, str]:
    reason = f"GUESSED from {evidence.describe()}: {why}"
    logger.warning(
        "tsplugin: %s: cannot tell which ChatTS release this checkpoint is (%s); using profile %r (%s). "
        "Set `%s: <name>` in config.json or `%s: <name>` in the recipe; choices: %s.",
        where or "model config",
        why,
        guess.name,
        guess.release,
        CONFIG_KEY,
        RECIPE_KEY,
        ", ".join(profile_names()),
    )
    return guess, reason


def resolve_profile(
    config: Mapping[str, Any],
    model_dir: str | os.PathLike | None = None,
    override: str | None = None,
) -> tuple[TSProfile, str]:
    """(profile, one-line reason) for a checkpoint's config (a dict: config.json or `config.to_dict()`).

    Order: `override` (the recipe's `timeseries_profile`), config.json `ts_profile`, then the release
    the shipped files point to. Raises on unknown names and on configs without a `ts` block.
    """
    where = os.path.join(os.fspath(model_dir), "config.json") if model_dir is not None else "model config"
    if override:
        return get_profile(override, f"recipe `{RECIPE_KEY}`"), f"recipe {RECIPE_KEY}: {override}"
    named = config.get(CONFIG_KEY)
    if named:
        return get_profile(named, f"{where} `{CONFIG_KEY}`"), f"config.json {CONFIG_KEY}: {named}"
    ts = config.get("ts")
    if not isinstance(ts, Mapping):
        raise ValueError(
            f"{where}: no `ts` block, so this is not a time-series checkpoint (ChatTS-14B/8B or one written by "
            "`tsplugin init-model` / `build-model`)"
        )
    if isinstance(ts.get("encoder"), Mapping):  # qwen_ts: tsplugin's own architecture
        return TSFACTORY_V0, f"qwen_ts `ts.encoder` block without {CONFIG_KEY} (tsfactory's own architecture, pre-profile prefix)"

    ev = CheckpointEvidence.collect(config, model_dir)
    released = bool(ev.auto_map or ev.processor_files or ev.processor_classes) or ev.model_type == "qwen2"
    if not released and ev.model_type in {spec.model_type for spec in _RELEASED.values()}:
        # Every release ships auto_map (and later ones processor files); tsplugin never wrote either.
        return TSFACTORY_V0, f"{ev.describe()}: so written by tsplugin before {CONFIG_KEY} existed"
    names = ev.names()
    qwen3 = bool(names & set(QWEN3_TS_CLASSES)) or ev.model_type == _RELEASED["qwen3"].model_type
    qwen2 = bool(names & set(QWEN2_TS_CLASSES))
    if qwen3 and qwen2:
        return _ambiguous(CHATTS_8B if ev.position_embedding else CHATTS_14B_V1, ev, "both Qwen2TS and Qwen3TS classes", where)
    if qwen3:
        if ev.position_embedding:
            return CHATTS_8B, ev.describe()
        return _ambiguous(CHATTS_8B, ev, "a Qwen3TS checkpoint without use_position_embedding matches no release", where)
    if qwen2 or ev.model_type in (_RELEASED["qwen2"].model_type, "qwen2"):
        if ev.position_embedding:
            return CHATTS_14B_0801, ev.describe()
        if not ev.processor_files and not ev.processor_classes and "AutoProcessor" not in ev.auto_map:
            return CHATTS_14B_V1, ev.describe()
        return _ambiguous(
            CHATTS_14B_V1, ev, "no position embedding (first release) but processor files of a later release", where
        )
    return _ambiguous(
        CHATTS_14B_0801 if ev.position_embedding else CHATTS_14B_V1, ev, "no known ChatTS class name", where
    )


# --- token ids ----------------------------------------------------------------------------------


def tokenizer_file_token_ids(model_dir: str | os.PathLike, tokens: Iterable[str]) -> tuple[dict[str, int], str | None]:
    """Ids of `tokens` read from tokenizer.json (added tokens, then vocab) or tokenizer_config.json.

    Returns (ids found, the file they came from); no tokenizer library is loaded.
    """
    wanted = list(tokens)
    found: dict[str, int] = {}
    data = _read_json(os.path.join(model_dir, "tokenizer.json"))
    if data:
        for entry in data.get("added_tokens") or []:
            if isinstance(entry, Mapping) and entry.get("content") in wanted:
                found.setdefault(entry["content"], int(entry["id"]))
        vocab = (data.get("model") or {}).get("vocab")
        if isinstance(vocab, Mapping):
            for t in wanted:
                if t not in found and t in vocab:
                    found[t] = int(vocab[t])
        return found, "tokenizer.json"
    data = _read_json(os.path.join(model_dir, "tokenizer_config.json"))
    decoder = data.get("added_tokens_decoder")
    if isinstance(decoder, Mapping):
        for key, entry in decoder.items():
            if isinstance(entry, Mapping) and entry.get("content") in wanted:
                found.setdefault(entry["content"], int(key))
        return found, "tokenizer_config.json"
    return found, None


def check_ts_token_ids(
    config: Mapping[str, Any],
    tokenizer_ids: Mapping[str, int | None],
    config_file: str = "config.json",
    tokenizer_file: str = "the tokenizer",
    ts_token: str = "<ts>",
    ts_end_token: str = "<ts/>",
) -> tuple[int, int]:
    """The (`<ts>`, `<ts/>`) ids; raises naming both files and the fix when config and tokenizer disagree."""
    pairs = (("ts_token_start_index", ts_token), ("ts_token_end_index", ts_end_token))
    missing = [t for _, t in pairs if tokenizer_ids.get(t) is None]
    if missing:
        raise ValueError(
            f"{tokenizer_file} has no {' / '.join(missing)} token; a time-series checkpoint needs both. Rebuild it "
            "with `tsplugin init-model --base DIR` (adds the tokens) or use the checkpoint's original tokenizer files."
        )
    wrong = []
    for key, token in pairs:
        value = config.get(key)
        if value is not None and int(value) != int(tokenizer_ids[token]):
            wrong.append((key, token, int(value), int(tokenizer_ids[token])))
    if wrong:
        detail = "; ".join(f"{k} = {v} but {tokenizer_file} gives {t} id {i}" for k, t, v, i in wrong)
        fix = ", ".join(f'"{k}": {i}' for k, _, _, i in wrong)
        raise ValueError(
            f"{config_file}: the <ts>/<ts/> token ids disagree with the tokenizer: {detail}. The model would "
            f"look for series at the wrong positions. Fix: set {fix} in {config_file} (the ids the tokenizer "
            "actually produces), or restore the tokenizer files that came with these weights."
        )
    return int(tokenizer_ids[ts_token]), int(tokenizer_ids[ts_end_token])


__all__ = [
    "CONFIG_KEY",
    "CheckpointEvidence",
    "INIT_MODEL_PROFILES",
    "PROFILES",
    "RECIPE_KEY",
    "TSProfile",
    "check_ts_token_ids",
    "format_prefix",
    "get_profile",
    "prefix_token_estimate",
    "profile_names",
    "register_profile",
    "resolve_profile",
    "sp_stats",
    "tokenizer_file_token_ids",
]
