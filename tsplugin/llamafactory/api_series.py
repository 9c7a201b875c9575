"""Series in LLaMA-Factory's OpenAI-compatible API (`llamafactory-cli api recipe.yaml`).

A user message's `content` list holds text parts with `<ts><ts/>` placeholders and one part per
series, in placeholder order. Both forms ChatTS clients send are accepted:

    {"type": "timeseries", "timeseries": {"data": [1.0, 2.0, ...]}}   # ours (documented in README)
    {"timeseries": [1.0, 2.0, ...]}                                    # ChatTS's vLLM server form

Inline numbers only: a string (a path or URL) is refused, the server never opens anything a client
names. Every request is checked before generation starts (also for `stream: true`, so a bad request
gets a 4xx JSON error instead of a broken stream): placeholders per message == series parts in that
message, numbers only, finite, non-empty, within `timeseries_max_points` / `timeseries_max_series`.
Errors name the message and part: `messages[1].content[2]: value 7 is nan; ...`.

The placeholder count uses `tsplugin.processing.placeholders.count_placeholders` (in `prepare_request`).
"""

from __future__ import annotations

from typing import Any, Literal

from tsplugin.llamafactory.engine import (
    ENV_MAX_SERIES,
    TimeSeriesInputError,
    check_values,
    is_timeseries_template,
    limits_of,
)
from tsplugin.processing.placeholders import PlaceholderError, count_placeholders, message_position, stray_tokens

SERIES_TYPE = "timeseries"
MEDIA_TYPES = ("image_url", "video_url", "audio_url")  # parts a time-series template has no slot for


def extend_protocol(protocol: Any) -> None:
    """Replace `MultimodalInputItem`, `ChatMessage` and `ChatCompletionRequest` with subclasses that
    accept series parts (idempotent). Runs before `llamafactory.api.app` imports them."""
    if getattr(protocol.ChatCompletionRequest, "__tsplugin__", False):
        return
    from pydantic import PrivateAttr, model_validator

    class MultimodalInputItem(protocol.MultimodalInputItem):
        type: Literal["text", "image_url", "video_url", "audio_url", "timeseries"]
        timeseries: Any = None  # checked by prepare_request (messages that say where), not by pydantic

        @model_validator(mode="before")
        @classmethod
        def _chatts_form_without_type(cls, data: Any) -> Any:
            if isinstance(data, dict) and "type" not in data and SERIES_TYPE in data:
                return {**data, "type": SERIES_TYPE}
            return data

    class ChatMessage(protocol.ChatMessage):
        content: str | list[MultimodalInputItem] | None = None

    class ChatCompletionRequest(protocol.ChatCompletionRequest):
        messages: list[ChatMessage]
        _timeseries: list[list[float]] | None = PrivateAttr(default=None)  # set by prepare_request

    for cls in (MultimodalInputItem, ChatMessage, ChatCompletionRequest):
        cls.__module__ = protocol.__name__
        cls.__tsplugin__ = True
        setattr(protocol, cls.__name__, cls)


def _series_values(value: Any, where: str) -> Any:
    """A series part's value as given: `{"data": [...]}` (ours) or the list itself (ChatTS's form)."""
    if isinstance(value, dict):
        if "data" not in value:
            raise TimeSeriesInputError(f'{where}: expected {{"data": [numbers]}}, got keys {sorted(value)}.')
        value = value["data"]
    if isinstance(value, str):
        raise TimeSeriesInputError(
            f"{where}: series must be inline numbers; this server never opens a path or URL a client names."
        )
    return value


def message_series(
    i: int, role: str, parts: list[tuple[str, str | None, Any]], is_ts: bool, limits: Any, *, where_model: str = "",
) -> list[list[float]]:
    """The checked series of message `i` (`parts`: its content as (type, text, series value) in order;
    a plain string content is one text part). One definition for every OpenAI-compatible server
    (LLaMA-Factory's API here, `vllm serve` in `tsplugin.vllm.chat_parts`).

    Raises TimeSeriesInputError naming `messages[i]` (and `.content[j]`) for anything the model cannot take;
    `where_model` says which model refuses series when `is_ts` is false.
    """
    at = message_position(i)
    found: list[list[float]] = []
    text = ""
    for j, (kind, part_text, value) in enumerate(parts):
        where = f"{at}.content[{j}]"
        if kind == SERIES_TYPE:
            found.append(check_values(_series_values(value, where), where, limits))
        elif is_ts and kind in MEDIA_TYPES:
            raise TimeSeriesInputError(
                f"{where}: a part of type {kind}, but this server's model reads time series and text only "
                f'(no {kind.removesuffix("_url")} input). Send series as {{"type": "timeseries", '
                '"timeseries": {"data": [...]}} parts and the rest as text.'
            )
        elif kind == "text" and part_text:
            text += part_text
    placeholders = count_placeholders(text) if is_ts else 0
    if is_ts:
        problem = stray_tokens([(str(role), text)], names=[at])
        if problem is not None:
            raise TimeSeriesInputError(str(PlaceholderError(problem)))
    if found and not is_ts:
        raise TimeSeriesInputError(
            f"{at}: this server's model takes no time series{where_model}; "
            "serve a time-series model with a time-series template (e.g. chatts)."
        )
    if is_ts and placeholders and role == "system":
        raise TimeSeriesInputError(f"{at}: the system prompt holds <ts><ts/> placeholders; put series in user messages.")
    if found and role != "user":
        raise TimeSeriesInputError(f"{at}: series parts are only allowed in user messages, not {role}.")
    if placeholders != len(found):
        raise TimeSeriesInputError(
            f"{at}: {placeholders} <ts><ts/> placeholder(s) in the text but {len(found)} series part(s). "
            "Write exactly one <ts><ts/> per series part, in order."
        )
    return found


def check_series_count(series: list[Any], limits: Any) -> None:
    if len(series) > limits.max_series:
        raise TimeSeriesInputError(
            f"more than {limits.max_series} series in one request (this server's `timeseries_max_series` / ${ENV_MAX_SERIES}).",
            status=413,
        )


def prepare_request(request: Any, chat_model: Any) -> Any:
    """The request with its series parts taken out (kept in `request._timeseries`, in order).

    Raises TimeSeriesInputError (message says what and where) for anything the model cannot take.
    Text-only requests to a model without a time-series template come back unchanged.
    """
    engine = chat_model.engine
    is_ts = is_timeseries_template(getattr(engine, "template", None))
    limits = limits_of(engine)
    plugin = type(getattr(getattr(engine, "template", None), "mm_plugin", None)).__name__
    series: list[list[float]] = []
    messages = []
    for i, message in enumerate(request.messages):
        content = message.content
        if isinstance(content, list):
            parts = [(part.type, part.text if part.type == "text" else None, part.timeseries if part.type == SERIES_TYPE else None)
                     for part in content]
        else:
            parts = [("text", content, None)] if isinstance(content, str) else []
        found = message_series(i, message.role, parts, is_ts, limits, where_model=f" (its template's plugin is {plugin})")
        series.extend(found)
        if found:
            kept = [part for part in content if part.type != SERIES_TYPE]
            messages.append(message.model_copy(update={"content": kept}))
        else:
            messages.append(message)
        check_series_count(series, limits)
    if not series:
        return request
    prepared = request.model_copy(update={"messages": messages})
    prepared._timeseries = series
    return prepared


def series_of(request: Any) -> list[list[float]] | None:
    """The series `prepare_request` took out of `request` (None when it had none)."""
    return getattr(request, "_timeseries", None)
