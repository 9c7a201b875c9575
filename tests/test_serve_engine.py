"""LLaMA-Factory's own inference engine (ChatModel / HuggingfaceEngine) answers about series.

The reference is `tsplugin.chat.TimeSeriesChat` (transformers + peft directly, not LLaMA-Factory's
engine): same model, same greedy settings, same answer. Series travel in the audio slot.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import lf_args, run_lf

TEMPLATE = "chatts8b_nothink"
NEW_TOKENS = 10


def _series():
    rng = np.random.default_rng(0)
    return [rng.normal(size=100).tolist(), (rng.normal(size=37) * 50 + 3).tolist()]


def _chat_model(model_dir, **extra):
    from llamafactory.chat import ChatModel

    return ChatModel(
        dict(model_name_or_path=str(model_dir), template=TEMPLATE, temperature=0, max_new_tokens=NEW_TOKENS,
             infer_dtype="float32", **extra)
    )


@pytest.fixture(scope="module")
def merged(tiny_qwen3ts):
    from tsplugin.chat import TimeSeriesChat

    return _chat_model(tiny_qwen3ts), TimeSeriesChat.from_pretrained(tiny_qwen3ts, template=TEMPLATE)


def test_answers_equal_the_reference_streamed_or_not(merged):
    chat_model, reference = merged
    series = _series()
    question = "Compare <ts><ts/> with <ts><ts/>."
    expected = reference.ask(question, series, max_new_tokens=NEW_TOKENS)
    messages = [{"role": "user", "content": question}]
    response = chat_model.chat(messages, audios=series)[0]
    assert response.response_text == expected
    assert "".join(chat_model.stream_chat(messages, audios=series)) == expected
    # the prompt holds both series' patches: 1 <ts> per 8 points (ChatTS-8B layout)
    text_only = len(reference.encode("Compare  with .", [])["input_ids"][0])
    assert response.prompt_length > text_only + 100 // 8 + 37 // 8


def test_text_only_requests_are_unchanged(merged):
    chat_model, reference = merged
    assert chat_model.chat([{"role": "user", "content": "hello"}])[0].response_text == reference.ask(
        "hello", [], max_new_tokens=NEW_TOKENS
    )


def test_earlier_turns_keep_their_series(merged):
    chat_model, _ = merged
    first, second = _series()
    messages = [
        {"role": "user", "content": "Look at <ts><ts/>."},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "And <ts><ts/>?"},
    ]
    answer = chat_model.chat(messages, audios=[first, second])[0].response_text
    swapped = chat_model.chat(messages, audios=[second, first])[0].response_text
    assert answer != swapped  # both turns' series reach the model, in order
    with pytest.raises(ValueError, match=r"2 <ts><ts/> placeholders in the conversation \(messages\[0\]: 1, messages\[2\]: 1\) but 1 series"):
        chat_model.chat(messages, audios=[second])


@pytest.mark.parametrize(
    "content,series,message",
    [
        ("<ts><ts/> and <ts><ts/>", [[1.0, 2.0]], r"2 <ts><ts/> placeholders .* but 1 series"),
        ("no placeholder", [[1.0, 2.0]], r"0 <ts><ts/> placeholders in the conversation \(none in any message\) but 1 series"),
        ("<ts><ts/>", [[1.0, float("nan")]], r"series 0: value 1 is nan, not a finite number"),
        ("<ts><ts/>", [[1.0, float("inf")]], r"series 0: value 1 is inf"),
        ("<ts><ts/>", [[]], r"series 0: the series is empty"),
        ("<ts><ts/>", [[1.0, "2"]], r"series 0: value 1 is '2' \(a string\), not a number"),
        ("<ts><ts/>", ["1,2,3"], r"series 0: a series must be a list of numbers, got str"),
        ("<ts><ts/>", [[1.0, 1e39]], r"series 0: value 0 is 1.0: \|value - mean\| = 5e\+38 exceeds the fp32 range"),  # finite in float64, not in the encoder's float32
        ("<ts><ts/>", [[1, 10**400]], r"series 0: value 1 is <an integer of 401 digits>, beyond float64"),
    ],
)
def test_bad_series_are_refused_before_generation_and_the_next_request_works(merged, content, series, message):
    from tsplugin.llamafactory.engine import TimeSeriesInputError

    chat_model, _ = merged
    with pytest.raises(TimeSeriesInputError, match=message):
        chat_model.chat([{"role": "user", "content": content}], audios=series)
    with pytest.raises(TimeSeriesInputError, match=message):
        list(chat_model.stream_chat([{"role": "user", "content": content}], audios=series))
    assert chat_model.chat([{"role": "user", "content": "<ts><ts/>"}], audios=[[1.0, 2.0, 3.0]])[0].response_text


def test_limits_come_from_yaml_keys_or_environment(tiny_qwen3ts, monkeypatch):
    from tsplugin.llamafactory.engine import SeriesLimits, TimeSeriesInputError

    monkeypatch.setenv("TSPLUGIN_MAX_SERIES", "2")
    chat_model = _chat_model(tiny_qwen3ts, timeseries_max_points=16)
    assert chat_model.engine.timeseries_limits == SeriesLimits(max_points=16, max_series=2, max_context=32768)
    with pytest.raises(TimeSeriesInputError, match=r"series 0: the series has 17 points, more than this server's limit of 16") as err:
        chat_model.chat([{"role": "user", "content": "<ts><ts/>"}], audios=[[0.0] * 17])
    assert err.value.status == 413
    with pytest.raises(TimeSeriesInputError, match=r"3 series in one conversation, more than this server's limit of 2"):
        chat_model.chat([{"role": "user", "content": "<ts><ts/>" * 3}], audios=[[0.0]] * 3)
    with pytest.raises(TimeSeriesInputError, match=r"system prompt holds <ts><ts/>"):
        chat_model.chat([{"role": "user", "content": "<ts><ts/>"}], system="see <ts><ts/>", audios=[[0.0]])
    # a prompt longer than the model's context is refused with the numbers (413), before generation
    chat_model.engine.timeseries_limits = SeriesLimits(max_points=16, max_series=2, max_context=40)
    with pytest.raises(TimeSeriesInputError, match=r"the prompt takes \d+ tokens \(4 of them series positions for 2 series, \d+ text\) "
                       r"but this model's context holds 40") as err:
        list(chat_model.stream_chat([{"role": "user", "content": "<ts><ts/> " * 2 + "word " * 20}], audios=[[0.0] * 16] * 2))
    assert err.value.status == 413
    # the encoder's position table caps the default (ChatTS-8B layout: 8192 points in the tiny model)
    assert SeriesLimits.resolve(None, chat_model.engine.model.config).max_points == 8192


def test_base_plus_adapter_answers_like_the_reference(tiny_qwen3ts, tmp_path_factory):
    from tsplugin.chat import TimeSeriesChat

    adapter = tmp_path_factory.mktemp("engine") / "lora"
    run_lf(**lf_args(tiny_qwen3ts, adapter, max_steps=2, additional_target="ts_encoder", learning_rate=5e-3))
    series = _series()
    question = "Compare <ts><ts/> with <ts><ts/>."
    reference = TimeSeriesChat.from_pretrained(tiny_qwen3ts, template=TEMPLATE, adapter=adapter)
    plain = TimeSeriesChat.from_pretrained(tiny_qwen3ts, template=TEMPLATE)
    expected = reference.ask(question, series, max_new_tokens=NEW_TOKENS)
    assert expected != plain.ask(question, series, max_new_tokens=NEW_TOKENS)  # the adapter matters
    chat_model = _chat_model(tiny_qwen3ts, adapter_name_or_path=str(adapter), finetuning_type="lora")
    assert chat_model.chat([{"role": "user", "content": question}], audios=series)[0].response_text == expected


def test_serving_names_messages_by_their_place_in_the_request():
    """One numbering for every serving error: `messages[i]` (0-based, the request's JSON), parts `.content[j]`."""
    from tsplugin.llamafactory.engine import SeriesLimits, TimeSeriesInputError, check_conversation

    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "see <ts><ts/>"}, {"role": "user", "content": "?"}]
    with pytest.raises(TimeSeriesInputError, match=r"^1 <ts><ts/> placeholder in messages\[1\] \(assistant\); a series may only"):
        check_conversation(messages, [[1.0]], SeriesLimits(), system="be brief")
    with pytest.raises(TimeSeriesInputError, match=r"^messages\[2\] \(user\) holds <ts/> outside a <ts><ts/> placeholder"):
        check_conversation([messages[0], {"role": "assistant", "content": "ok"}, {"role": "user", "content": "x <ts/>"}], [], SeriesLimits())


def test_an_api_request_is_checked_and_measured_once(merged, monkeypatch):
    """The API checks a request before a stream starts (4xx first); the engine then takes the checked series as
    they are: the prompt is encoded once for the context check, not again in the engine; the answer is unchanged."""
    import asyncio

    from llamafactory.api import chat as api_chat
    from llamafactory.api.protocol import ChatCompletionRequest

    from tsplugin.llamafactory import engine as ts_engine

    chat_model, reference = merged
    series = _series()
    question = "Compare <ts><ts/> with <ts><ts/>."
    calls = []
    measure = ts_engine.check_prompt_length
    monkeypatch.setattr(ts_engine, "check_prompt_length", lambda *a, **k: calls.append(1) or measure(*a, **k))
    parts = [{"type": "text", "text": question}] + [{"type": "timeseries", "timeseries": {"data": s}} for s in series]
    request = ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": parts}], "max_tokens": NEW_TOKENS, "temperature": 0}
    )
    response = asyncio.run(api_chat.create_chat_completion_response(request, chat_model))
    assert response.choices[0].message.content == reference.ask(question, series, max_new_tokens=NEW_TOKENS)
    assert len(calls) == 1


def test_unexpanded_for_vllm_but_a_bound_plugin_always_expands():
    """LLaMA-Factory's vLLM engine turns `expand_mm_tokens` off on the shared template: the plugin then leaves
    `<ts><ts/>` as it is (LLaMA-Factory's contract for vLLM); a request's bound plugin (either engine) expands,
    so an HF engine loaded later in the same LlamaBoard still gets its `<ts>` positions."""
    import dataclasses

    import llamafactory.data  # noqa: F401  (LLaMA-Factory first: it registers the templates through the hook)
    from llamafactory.data.template import TEMPLATES

    from tsplugin.llamafactory.engine import bind_series
    from tsplugin.processing import TimeSeriesProcessor

    shared = TEMPLATES["chatts8b_nothink"]
    template = dataclasses.replace(shared, mm_plugin=dataclasses.replace(shared.mm_plugin, expand_mm_tokens=False))
    processor = TimeSeriesProcessor(patch_size=8, profile="chatts-8b")
    messages = [{"role": "user", "content": "Look <ts><ts/>"}]
    series = [[float(v) for v in range(20)]]
    assert template.mm_plugin.process_messages(messages, [], [], series, processor) == messages
    text = bind_series(template, series).mm_plugin.process_messages(messages, [], [], [], processor)[0]["content"]
    assert text.count("<ts>") == 3 and "<ts/>" not in text  # ceil(20 / 8) positions after the prefix
    assert template.mm_plugin.expand_mm_tokens is False  # the shared plugin keeps its flag
