"""Series in LLaMA-Factory's inference engine (`llamafactory.chat`): ChatModel, the API, chat, webchat.

How a caller gives series (the one contract every entry point uses): the conversation's text holds one
`<ts><ts/>` per series and the series travel, in placeholder order over the whole conversation, in the
**audio slot**, the same slot the training data path uses:

    from llamafactory.chat import ChatModel
    chat_model = ChatModel(dict(model_name_or_path=..., template="chatts8b_nothink"))   # + adapter_name_or_path
    messages = [{"role": "user", "content": "Compare <ts><ts/> with <ts><ts/>."}]
    chat_model.chat(messages, audios=[[1.0, 2.0, 3.0], [4.0, 5.0]])          # -> list[Response]
    for piece in chat_model.stream_chat(messages, audios=series): ...         # streamed text
    # multi-turn: earlier user turns keep their placeholders; pass ALL series of the conversation

Bad input raises `TimeSeriesInputError` (a ValueError) before anything is generated, with a message
that says what is wrong and where. The hooks (tsplugin/llamafactory/hooks.py, `hook_hf_engine`) make
`HuggingfaceEngine` check the series (`check_conversation`) and hand them to the `timeseries` plugin
through a per-request copy of the template (`bind_series`): the engine's own audio handling, which
would prefix `<audio>` tokens, never sees them. Templates without the `timeseries` plugin are
untouched.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Sequence

import numpy as np

from tsplugin.processing.placeholders import PlaceholderError, check_messages, count_placeholders, message_position
from tsplugin.processing.positions import max_series_points
from tsplugin.processing.series_values import series_problem

# Defaults of the request limits (YAML keys `timeseries_max_points` / `timeseries_max_series`, or the
# environment variables below; YAML wins). ChatTS's authors recommend up to ~30 series a prompt.
DEFAULT_MAX_POINTS = 32768
DEFAULT_MAX_SERIES = 64
ENV_MAX_POINTS = "TSPLUGIN_MAX_POINTS"
ENV_MAX_SERIES = "TSPLUGIN_MAX_SERIES"


class TimeSeriesInputError(ValueError):
    """A conversation's series cannot be used as given; the message says what and where.

    `status` is the HTTP status the API answers with (400 malformed, 413 over a limit).
    """

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclasses.dataclass(frozen=True)
class SeriesLimits:
    max_points: int = DEFAULT_MAX_POINTS  # points in one series
    max_series: int = DEFAULT_MAX_SERIES  # series in one conversation
    max_context: int | None = None  # the model's context length (max_position_embeddings): prompt tokens incl. series positions
    context_name: str = "max_position_embeddings"  # what sets max_context (the vLLM engine: `vllm_maxlen` when smaller)

    @classmethod
    def resolve(cls, finetuning_args: Any = None, model_config: Any = None) -> "SeriesLimits":
        """YAML option, else environment variable, else default; never above the encoder's position table."""

        def pick(key: str, env: str, default: int) -> int:
            value = getattr(finetuning_args, key, None)
            source = f"`{key}`"
            if value is None and os.environ.get(env, "").strip():
                value, source = os.environ[env].strip(), f"${env}"
            if value is None:
                return default
            try:
                number = int(value)
            except (TypeError, ValueError):
                raise ValueError(f"{source} must be a positive integer, got {value!r}") from None
            if number < 1:
                raise ValueError(f"{source} must be a positive integer, got {value!r}")
            return number

        max_points = pick("timeseries_max_points", ENV_MAX_POINTS, DEFAULT_MAX_POINTS)
        table = max_series_points(getattr(model_config, "ts", None))
        if table is not None:
            max_points = min(max_points, table)  # the encoder refuses longer ones
        return cls(max_points=max_points, max_series=pick("timeseries_max_series", ENV_MAX_SERIES, DEFAULT_MAX_SERIES),
                   max_context=context_length(model_config))


def context_length(model_config: Any) -> int | None:
    """The model's context length: `max_position_embeddings` of the config or of its `text_config` (composite
    time-series configs), or None when the config does not say."""
    for config in (model_config, getattr(model_config, "text_config", None)):
        value = getattr(config, "max_position_embeddings", None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def check_values(values: Any, where: str, limits: SeriesLimits) -> list[float]:
    """`values` as a list of floats, or TimeSeriesInputError naming `where` and the bad value."""
    if isinstance(values, np.ndarray):
        values = values.tolist()
    if isinstance(values, (str, bytes, dict)) or not isinstance(values, Sequence):
        raise TimeSeriesInputError(f"{where}: a series must be a list of numbers, got {type(values).__name__}.")
    if len(values) == 0:
        raise TimeSeriesInputError(f"{where}: the series is empty; a series needs at least one number.")
    if len(values) > limits.max_points:
        raise TimeSeriesInputError(
            f"{where}: the series has {len(values)} points, more than this server's limit of {limits.max_points} "
            f"(`timeseries_max_points` / ${ENV_MAX_POINTS}). Downsample it (`tsconvert --max-length`).",
            status=413,
        )
    problem = series_problem(values)  # the one rule, as tsconvert validate and training (series_values)
    if problem is not None:
        raise TimeSeriesInputError(f"{where}: {problem.message}.")
    return [float(v) for v in values]


def check_conversation(
    messages: Sequence[dict[str, Any]],
    series: Sequence[Any] | None,
    limits: SeriesLimits,
    system: str | None = None,
) -> list[list[float]]:
    """Validate a conversation's series against its placeholders; returns the series as float lists."""
    series = [] if series is None else list(series)
    if system and count_placeholders(system):
        raise TimeSeriesInputError(
            "the system prompt holds <ts><ts/> placeholders; put series in user messages only."
        )
    if len(series) > limits.max_series:
        raise TimeSeriesInputError(
            f"{len(series)} series in one conversation, more than this server's limit of {limits.max_series} "
            f"(`timeseries_max_series` / ${ENV_MAX_SERIES}).",
            status=413,
        )
    counts = [count_placeholders(m.get("content") or "") for m in messages]
    if sum(counts) != len(series):
        where = ", ".join(f"{message_position(i)}: {n}" for i, n in enumerate(counts) if n) or "none in any message"
        raise TimeSeriesInputError(
            f"{sum(counts)} <ts><ts/> placeholders in the conversation ({where}) but {len(series)} series. "
            "Write exactly one <ts><ts/> per series, in order; earlier turns' series count too."
        )
    try:  # the one definition training and tsconvert use: only in user turns, no stray <ts> / <ts/>
        check_messages(messages, len(series), system=system, by_position=True)
    except PlaceholderError as err:
        raise TimeSeriesInputError(str(err)) from None
    return [check_values(values, f"series {i}", limits) for i, values in enumerate(series)]


class CheckedSeries(list):
    """A conversation's series after `check_conversation` and `check_prompt_length` ran on them with the
    messages they come with (the API runs both before a stream starts, to answer 4xx first); the engine's
    own check takes them as they are instead of validating and encoding the prompt a second time."""


def check_prompt_length(engine: Any, messages: Sequence[dict[str, Any]], system: str | None, tools: str | None,
                        series: Sequence[Sequence[float]]) -> int:
    """The prompt's length in tokens (text + each series' prefix and `<ts>` positions), encoded as the engine
    will encode it; TimeSeriesInputError (413, with the numbers) when it exceeds the model's context."""
    limit = limits_of(engine).max_context
    template = bind_series(engine.template, [list(s) for s in series]) if series else engine.template
    processor = getattr(engine, "processor", None)
    expanded = template.mm_plugin.process_messages([dict(m) for m in messages], [], [], [], processor)
    prompt_ids, _ = template.encode_oneturn(engine.tokenizer, [*expanded, {"role": "assistant", "content": ""}], system, tools)
    if limit is not None and len(prompt_ids) > limit:
        positions = sum(processor.num_patches(len(s)) for s in series) if callable(getattr(processor, "num_patches", None)) else 0
        raise TimeSeriesInputError(
            f"the prompt takes {len(prompt_ids)} tokens ({positions} of them series positions for {len(series)} series, "
            f"{len(prompt_ids) - positions} text) but this model's context holds {limit} ({limits_of(engine).context_name}). "
            "Send fewer or shorter series (downsample: `tsconvert --max-length`) or less text.",
            status=413,
        )
    return len(prompt_ids)


@dataclasses.dataclass
class BoundSeriesPlugin:
    """The template's `timeseries` plugin with one request's series bound to it.

    LLaMA-Factory's engine calls `process_messages`, `process_token_ids` and `get_mm_inputs` with
    empty media lists (the series are not passed as audio, so no `<audio>` is prefixed); each call
    forwards to the real plugin with the bound series in the audio slot.
    """

    plugin: Any
    series: list[list[float]]

    def process_messages(self, messages, images, videos, audios, processor):
        return self.plugin.process_messages(messages, images, videos, self.series, processor)

    def process_token_ids(self, input_ids, labels, images, videos, audios, tokenizer, processor):
        return self.plugin.process_token_ids(input_ids, labels, images, videos, self.series, tokenizer, processor)

    def get_mm_inputs(self, images, videos, audios, imglens, vidlens, audlens, batch_ids, processor):
        return self.plugin.get_mm_inputs(
            images, videos, self.series, imglens, vidlens, [len(self.series)], batch_ids, processor
        )

    def __getattr__(self, name: str) -> Any:
        if name in ("plugin", "series"):
            raise AttributeError(name)
        return getattr(self.plugin, name)


def bind_series(template: Any, series: list[list[float]]) -> Any:
    """A shallow copy of `template` whose mm_plugin carries `series` and expands the placeholders (the shared
    template is untouched). LLaMA-Factory's vLLM engine turns `expand_mm_tokens` off on the SHARED template
    (LlamaBoard keeps it for a later HF engine too); a bound plugin always expands, on either engine."""
    plugin = template.mm_plugin
    if not getattr(plugin, "expand_mm_tokens", True):
        plugin = dataclasses.replace(plugin, expand_mm_tokens=True)
    return dataclasses.replace(template, mm_plugin=BoundSeriesPlugin(plugin, series))


def is_timeseries_template(template: Any) -> bool:
    from tsplugin.llamafactory.mm_plugin import TimeSeriesPlugin  # lazy: LLaMA-Factory's data package (this module loads inside a hook)

    return isinstance(getattr(template, "mm_plugin", None), (TimeSeriesPlugin, BoundSeriesPlugin))


def limits_of(engine: Any) -> SeriesLimits:
    """The limits an engine was started with (defaults for engines built before the hook)."""
    return getattr(engine, "timeseries_limits", None) or SeriesLimits.resolve()


# Structure-only checks inside the engine's `_process_args` (the limits were applied by chat/stream_chat).
UNLIMITED = SeriesLimits(max_points=2**62, max_series=2**62)


# --- LLaMA-Factory's vLLM engine (`infer_backend: vllm`), hooked by hooks.hook_vllm_engine -----------------


def vllm_limits(limits: SeriesLimits, model_args: Any) -> SeriesLimits:
    """The limits under vLLM: its context is `vllm_maxlen` (vLLM's max_model_len) when that is the smaller."""
    maxlen = getattr(model_args, "vllm_maxlen", None)
    if isinstance(maxlen, int) and maxlen > 0 and (limits.max_context is None or maxlen < limits.max_context):
        return dataclasses.replace(limits, max_context=maxlen, context_name="`vllm_maxlen`")
    return limits


def vllm_config_with_series(vllm_config: Any, limits: SeriesLimits) -> dict[str, Any]:
    """The `vllm_config` LLaMA-Factory merges into vLLM's engine arguments, with the `timeseries` modality's
    per-prompt limit (LLaMA-Factory names only image/video/audio); the user's own `limit_mm_per_prompt` wins."""
    config = dict(vllm_config) if isinstance(vllm_config, dict) else {}
    config.setdefault("limit_mm_per_prompt", {"timeseries": limits.max_series})
    return config


class _SeriesGenerate:
    """vLLM's engine for one request: `generate` gets the request's series as `multi_modal_data["timeseries"]`."""

    def __init__(self, engine: Any, series: list[list[float]]) -> None:
        self._engine = engine
        self._series = series

    def generate(self, prompt: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        data = dict(prompt.get("multi_modal_data") or {})
        data["timeseries"] = self._series
        return self._engine.generate({**prompt, "multi_modal_data": data}, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)


class VllmSeriesRequest:
    """What `VllmEngine._generate` sees for one request with series: the engine, except that its template
    expands this request's placeholders exactly as the HF engine does (`bind_series`: the same prompt ids,
    prefix tokenised in its context) and its vLLM engine receives the series. vLLM's processor
    (`tsplugin.vllm.processing`) finds the expanded `<ts>` runs in the ids and fills them with the encoder's
    vectors. A per-request view: concurrent requests never share a template or series."""

    def __init__(self, engine: Any, series: list[list[float]]) -> None:
        self._engine = engine
        self.template = bind_series(engine.template, series)
        self.model = _SeriesGenerate(engine.model, series)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)
