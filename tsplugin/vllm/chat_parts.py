"""Series parts in `vllm serve`'s OpenAI chat completions: the same request rules as `llamafactory-cli api`.

A user message's `content` list holds text parts with `<ts><ts/>` placeholders and one series part per
placeholder, in order, in either form LLaMA-Factory's API accepts:

    {"type": "timeseries", "timeseries": {"data": [1.0, 2.0, ...]}}   # ours
    {"timeseries": [1.0, 2.0, ...]}                                    # ChatTS's vLLM form

vLLM's chat parser knows only image/audio/video parts and offers no hook for another part type, so
`tsplugin.llamafactory.hooks` wraps its `parse_chat_messages(_futures)` (vLLM 0.11): the series parts
are taken out and checked here (`api_series.message_series`: placeholders per message, numbers only,
finite, non-empty, `timeseries_max_points` / `timeseries_max_series`), the rest goes to vLLM untouched,
and the series come back as `multi_modal_data["timeseries"]` for the model's processor
(`tsplugin.vllm.processing`). A bad request raises `TimeSeriesInputError` (a ValueError).

The error text: vLLM's chat route answers a ValueError from its prompt preprocessing with
`f"{e} {e.__cause__}"` (vllm/entrypoints/openai/serving_chat.py), written for chained errors, so ours
came back as "... in order. None". The hooks therefore also wrap `OpenAIServingChat.create_chat_completion`:
it runs `split_series` first and answers a bad request with vLLM's own `create_error_response(message,
status)`, the message and status (400, or 413 over a limit) exactly those of `llamafactory-cli api`;
the parse hook then reuses that result for the same request (`checked_split`), so a request is checked
once. The server stays up either way.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any, Mapping

from tsplugin.llamafactory.api_series import SERIES_TYPE, check_series_count, message_series
from tsplugin.llamafactory.engine import SeriesLimits, TimeSeriesInputError
from tsplugin.vllm.registration import VLLM_MODELS


def is_series_part(part: Any) -> bool:
    return isinstance(part, Mapping) and (part.get("type") == SERIES_TYPE or ("type" not in part and SERIES_TYPE in part))


def _parts(content: Any) -> list[tuple[str, str | None, Any]]:
    """(type, text, series value) per part, as `message_series` reads them."""
    if isinstance(content, str):
        return [("text", content, None)]
    parts = []
    for part in content or []:
        if is_series_part(part):
            parts.append((SERIES_TYPE, None, part.get(SERIES_TYPE)))
        elif isinstance(part, Mapping):
            parts.append((str(part.get("type")), part.get("text"), None))
        else:  # vLLM accepts bare strings as text parts
            parts.append(("text", part if isinstance(part, str) else None, None))
    return parts


def takes_series(model_config: Any) -> bool:
    """True for the models tsplugin registers with vLLM (`registration.VLLM_MODELS`)."""
    return any(name in VLLM_MODELS for name in (getattr(model_config, "architectures", None) or ()))


def split_series(messages: list[Any], model_config: Any) -> tuple[list[Any], list[list[float]]]:
    """(messages without their series parts, the series in order); raises TimeSeriesInputError naming
    `messages[i].content[j]`. Requests without series parts come back as they are."""
    is_ts = takes_series(model_config)
    try:
        limits = SeriesLimits.resolve(None, getattr(model_config, "hf_config", None))
    except ValueError as err:  # a bad $TSPLUGIN_MAX_* in the server's environment: say so, not a traceback
        raise TimeSeriesInputError(f"this server is misconfigured: {err}", status=500) from None
    series: list[list[float]] = []
    kept_messages = []
    for i, message in enumerate(messages):
        content = message.get("content") if isinstance(message, Mapping) else None
        found = message_series(i, str(message.get("role")) if isinstance(message, Mapping) else "", _parts(content), is_ts,
                               limits, where_model=f" (architecture {', '.join(getattr(model_config, 'architectures', None) or ['?'])})")
        series.extend(found)
        check_series_count(series, limits)
        if found:
            kept_messages.append({**message, "content": [p for p in content if not is_series_part(p)]})
        else:
            kept_messages.append(message)
    return kept_messages, series


# (request.messages, messages without series parts, series) of the chat request being served; set by the
# `create_chat_completion` hook for the duration of one request (a ContextVar: one per asyncio task).
_CHECKED: ContextVar[tuple[Any, list[Any], list[list[float]]] | None] = ContextVar("tsplugin_checked_series", default=None)


def checked_split(messages: list[Any], model_config: Any) -> tuple[list[Any], list[list[float]]]:
    """`split_series`, or the result `check_request` already computed for this very `messages` list."""
    checked = _CHECKED.get()
    if checked is not None and checked[0] is messages:
        return checked[1], checked[2]
    return split_series(messages, model_config)


def check_request(messages: list[Any], model_config: Any):
    """Check a chat request's series before vLLM preprocesses it: a context token for `release`
    (the result is kept for `checked_split`); raises TimeSeriesInputError."""
    kept, series = split_series(messages, model_config)
    return _CHECKED.set((messages, kept, series))


def release(token: Any) -> None:
    _CHECKED.reset(token)


def with_series(mm_data: Mapping[str, Any] | None, series: list[list[float]]) -> dict[str, Any] | None:
    """vLLM's `multi_modal_data` plus the request's series (None when there is neither)."""
    if not series:
        return dict(mm_data) if mm_data else None
    return {**(mm_data or {}), "timeseries": series}


__all__ = ["check_request", "checked_split", "is_series_part", "release", "split_series", "takes_series", "with_series"]
