"""Configs of the ChatTS architectures: a Qwen2/Qwen3 config plus a `ts` block and two token ids.

- `ChatTSConfig` (model_type `chatts`): ChatTS-14B, Qwen2 backbone.
- `Qwen3TSConfig` (model_type `qwen3ts`): ChatTS-8B, Qwen3 backbone.

`ts_token_start_index` / `ts_token_end_index` are the ids of `<ts>` / `<ts/>` in the checkpoint's
tokenizer; code reads them from here, never from literals. A custom `__init__` (rather than
transformers-5 dataclass fields) keeps the classes working on transformers 4.x as well.
"""

from __future__ import annotations

from typing import Any

from transformers import Qwen2Config, Qwen3Config

from tsplugin.models.encoders.ts_embedding import TS_REQUIRED


def _check_ts_block(config: Any, ts: dict[str, Any] | None) -> dict[str, Any] | None:
    """Validate the `ts` block against the LLM; fill `hidden_size` from the LLM when absent."""
    if ts is None:
        return None
    if not isinstance(ts, dict):
        raise ValueError(f"config `ts` must be a dict (the encoder block), got {type(ts).__name__}")
    ts = dict(ts)
    ts.setdefault("hidden_size", config.hidden_size)
    if int(ts["hidden_size"]) != int(config.hidden_size):
        raise ValueError(
            f"ts.hidden_size={ts['hidden_size']} differs from the LLM hidden_size={config.hidden_size}; "
            "the encoder's patch embeddings replace token embeddings, so both must match"
        )
    missing = [k for k in TS_REQUIRED if k not in ts]
    if missing:
        raise ValueError(f"config `ts` block lacks {missing}")
    return ts


def _default_ts(hidden_size: int) -> dict[str, Any]:
    # The first ChatTS-14B release: patch 16, 5 layers, no position embedding.
    return {"patch_size": 16, "num_layers": 5, "hidden_size": hidden_size, "num_features": 2}


def _set_ts_fields(config: Any, ts: dict[str, Any] | None, start: int | None, end: int | None) -> None:
    """The fields both ChatTS configs add to their Qwen config: the checked `ts` block and the `<ts>`/`<ts/>` ids."""
    config.ts = _check_ts_block(config, ts if ts is not None else _default_ts(config.hidden_size))
    config.ts_token_start_index = start
    config.ts_token_end_index = end


class ChatTSConfig(Qwen2Config):
    """Qwen2 config + ChatTS time-series encoder block (ChatTS-14B schema)."""

    model_type = "chatts"

    def __init__(
        self,
        ts: dict[str, Any] | None = None,
        ts_token_start_index: int | None = None,
        ts_token_end_index: int | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        _set_ts_fields(self, ts, ts_token_start_index, ts_token_end_index)


class Qwen3TSConfig(Qwen3Config):
    """Qwen3 config + ChatTS time-series encoder block (ChatTS-8B schema)."""

    model_type = "qwen3ts"

    def __init__(
        self,
        ts: dict[str, Any] | None = None,
        ts_token_start_index: int | None = None,
        ts_token_end_index: int | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        _set_ts_fields(self, ts, ts_token_start_index, ts_token_end_index)


# The released checkpoints' own class name for the Qwen2 variant.
Qwen2TSConfig = ChatTSConfig

__all__ = ["ChatTSConfig", "Qwen2TSConfig", "Qwen3TSConfig"]
