"""Released ChatTS checkpoint layouts, loaded with tsplugin's classes and never with their own code.

A ChatTS checkpoint as released (ChatTS-14B current, ChatTS-8B, the first ChatTS-14B release) ships
`.py` files and points `auto_map` at them, and the first 14B release says `model_type: qwen2`.
`normalise_config` turns such a config.json into the one tsplugin's classes load:

- `model_type` follows `architectures` (`Qwen2TSForCausalLM` -> `chatts`, `Qwen3TSForCausalLM` ->
  `qwen3ts`), so the first release is no longer taken for a plain Qwen2 (which would drop `ts_encoder`);
- the encoding profile is decided now, from everything the checkpoint ships (`tsplugin.processing.profiles.
  resolve_profile` with the directory's processor files), and kept as `ts_profile`;
- `auto_map` is dropped: the checkpoint's own code is never imported, whatever `trust_remote_code` says.

`tsplugin.llamafactory.hooks` applies it to every config transformers reads (local directories and
Hub IDs alike), in every process of the environment. Standard library only at import time.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Mapping

from tsplugin.processing.profiles import CONFIG_KEY, resolve_profile
from tsplugin.architectures import model_types, released_model_types, released_processor_classes

logger = logging.getLogger("tsplugin")

# From the architecture specs (`tsplugin.architectures`): released class name -> tsplugin model_type,
# the processor classes the releases ship (their own code, never run), and tsplugin's own model_types
# (timellm among them: a forecaster, no `ts` block, no profile).
ARCHITECTURE_MODEL_TYPES = released_model_types()
RELEASED_PROCESSOR_CLASSES = released_processor_classes()
TS_MODEL_TYPES = model_types()
# Keys of transformers' hub file lookups (cached_file) that a config read may carry.
HUB_KWARGS = ("cache_dir", "force_download", "proxies", "token", "revision", "local_files_only", "subfolder", "_commit_hash")

_reported: set[str] = set()


def is_ts_config(config: Mapping[str, Any]) -> bool:
    """True for a time-series checkpoint's config.json (tsplugin's or a released ChatTS one)."""
    if config.get("model_type") in TS_MODEL_TYPES:
        return True
    architectures = config.get("architectures") or ()
    return isinstance(config.get("ts"), Mapping) and any(a in ARCHITECTURE_MODEL_TYPES for a in architectures)


def model_type_for(config: Mapping[str, Any]) -> str | None:
    """tsplugin's model_type for a time-series config (the released class name decides), else None."""
    if not is_ts_config(config):
        return None
    for architecture in config.get("architectures") or ():
        if architecture in ARCHITECTURE_MODEL_TYPES and config.get("model_type") not in TS_MODEL_TYPES:
            return ARCHITECTURE_MODEL_TYPES[architecture]
    return config.get("model_type")


def normalise_config(config: dict[str, Any], model_dir: str | os.PathLike | None, where: str) -> dict[str, Any]:
    """The config tsplugin's classes load (see the module docstring); `config` itself is not changed.

    `model_dir`: the directory holding the checkpoint's files (processor files are profile evidence);
    `where`: how the user named the checkpoint, for messages.
    """

    out = dict(config)
    if CONFIG_KEY not in out and isinstance(out.get("ts"), Mapping):  # decided while the evidence (auto_map, model_type, processor files) is all there
        profile, _reason = resolve_profile(out, model_dir)
        out[CONFIG_KEY] = profile.name
    out["model_type"] = model_type_for(out)
    dropped = out.pop("auto_map", None)
    if dropped and where not in _reported:
        _reported.add(where)
        logger.info(
            "tsplugin: %s: loading with tsplugin's classes (model_type %s, profile %s); the checkpoint's own code "
            "(auto_map %s) is not run, whatever trust_remote_code says",
            where, out["model_type"], out[CONFIG_KEY], ", ".join(sorted(dropped)),
        )
    return out


def forget_shipped_processor(tokenizer: Any) -> None:
    """A released checkpoint's tokenizer names its shipped processor (`processor_class`, `auto_map`
    AutoProcessor); drop both so that what tsplugin saves (exports, checkpoints) never points at code
    that is not there."""
    auto_map = tokenizer.init_kwargs.get("auto_map")
    if isinstance(auto_map, Mapping) and "AutoProcessor" in auto_map:
        rest = {k: v for k, v in auto_map.items() if k != "AutoProcessor"}
        if rest:
            tokenizer.init_kwargs["auto_map"] = rest
        else:
            tokenizer.init_kwargs.pop("auto_map")
    if getattr(tokenizer, "_processor_class", None) in RELEASED_PROCESSOR_CLASSES:
        tokenizer._set_processor_class(None)


def locate(model: str) -> tuple[Path, str]:
    """(directory, how it was found): a local directory, or a Hub ID's snapshot in the offline HF cache.
    Light (no transformers, no torch): commands check --model with it before their heavy imports."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path, "local directory"
    if path.exists():
        raise ValueError(f"{model}: not a directory; pass the checkpoint directory (the one holding config.json)")
    if model.count("/") != 1 or model.startswith(("/", ".", "~")):
        raise ValueError(f"{model}: no such directory, and not a Hub ID of the form ORG/NAME")
    from huggingface_hub import constants, try_to_load_from_cache  # lazy: only for a Hub ID

    cached = try_to_load_from_cache(model, "config.json")
    if not isinstance(cached, str):
        raise ValueError(
            f"{model}: not in the local Hugging Face cache ({constants.HF_HUB_CACHE}); nothing is downloaded here. "
            f"Fetch it once with `huggingface-cli download {model}` (or pass a local directory)."
        )
    return Path(cached).parent, f"Hub ID {model}, from the HF cache"


def checkpoint_dir(name_or_path: str | os.PathLike, /, **hub_kwargs: Any) -> str | None:
    """The local directory holding a checkpoint's config.json: the directory itself, or its Hub cache snapshot."""
    path = os.fspath(name_or_path)
    subfolder = hub_kwargs.get("subfolder") or ""
    if os.path.isfile(path):
        return os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        return os.path.join(path, subfolder) if subfolder else path
    from transformers.utils import cached_file

    kwargs = {k: v for k, v in hub_kwargs.items() if k in HUB_KWARGS and v is not None}
    try:
        resolved = cached_file(
            path, "config.json", _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False, **kwargs,
        )
    except (OSError, ValueError):
        return None
    return os.path.dirname(resolved) if resolved else None


def local_model_type(path: str | os.PathLike | None) -> str | None:
    """`model_type` of a local directory's config.json as written (no normalisation), or None."""
    try:
        with open(os.path.join(os.fspath(path or ""), "config.json"), encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError):
        return None
    return config.get("model_type") if isinstance(config, dict) else None


def read_config(name_or_path: str | os.PathLike, /, **hub_kwargs: Any) -> dict[str, Any] | None:
    """The normalised config.json of a time-series checkpoint (local dir or Hub ID), or None for anything else.

    Reads through transformers (so the hooked, normalised dict) and never raises for a checkpoint that
    is not a time-series one or cannot be found.
    """
    from transformers import PretrainedConfig

    kwargs = {k: v for k, v in hub_kwargs.items() if k in HUB_KWARGS and v is not None}
    try:
        config, _ = PretrainedConfig.get_config_dict(os.fspath(name_or_path), **kwargs)
    except (OSError, ValueError, TypeError):
        return None
    return config if config and is_ts_config(config) else None


__all__ = [
    "ARCHITECTURE_MODEL_TYPES",
    "TS_MODEL_TYPES",
    "checkpoint_dir",
    "forget_shipped_processor",
    "is_ts_config",
    "local_model_type",
    "locate",
    "model_type_for",
    "normalise_config",
    "read_config",
]
