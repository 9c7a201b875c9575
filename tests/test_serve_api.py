"""`llamafactory-cli api` (LLaMA-Factory's own server, a subprocess) answers about series, called with
the official `openai` client; `llamafactory-cli chat` reads series typed or loaded in the terminal.

One server for the module. The reference answers come from `tsplugin chat` (its Python API, and once
its CLI): same model, same greedy settings, same text.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import GDSH_CSV, ROOT

openai = pytest.importorskip("openai", reason="the API tests call the server with the official openai client (dev extra)")

TEMPLATE = "chatts8b_nothink"
NEW_TOKENS = 8
CSV = GDSH_CSV / "gdsh_second_20250601_PIC-3105.PV.csv"
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _series():
    rng = np.random.default_rng(0)
    return [rng.normal(size=100).tolist(), (rng.normal(size=37) * 50 + 3).tolist()]


CONTEXT = 2048  # the served copy's max_position_embeddings: small enough for a request to exceed it


@pytest.fixture(scope="module")
def recipe(tiny_qwen3ts, tmp_path_factory) -> Path:
    """The tiny model with a 2048-token context (a copy: the session's model is shared); the default rope
    does not depend on max_position_embeddings, so answers equal the original's (`reference`)."""
    root = tmp_path_factory.mktemp("serve")
    model = shutil.copytree(tiny_qwen3ts, root / "model")
    config = json.loads((model / "config.json").read_text())
    for block in (config, config.get("text_config") or {}):
        if "max_position_embeddings" in block:
            block["max_position_embeddings"] = CONTEXT
    (model / "config.json").write_text(json.dumps(config))
    path = root / "serve.yaml"
    path.write_text(yaml.safe_dump(dict(model_name_or_path=str(model), template=TEMPLATE, infer_dtype="float32")))
    return path


@pytest.fixture(scope="module")
def server(recipe):
    """`llamafactory-cli api recipe.yaml` on 127.0.0.1:<free port>; stopped at the end of the module."""
    port = _free_port()
    log = recipe.parent / "api.log"
    env = {**os.environ, "API_HOST": "127.0.0.1", "API_PORT": str(port), "API_VERBOSE": "0", "TSPLUGIN_MAX_POINTS": "6000",
           "TSPLUGIN_MAX_SERIES": "4"}
    with open(log, "w") as out:
        proc = subprocess.Popen([str(BIN / "llamafactory-cli"), "api", str(recipe)], stdout=out, stderr=subprocess.STDOUT,
                                cwd=recipe.parent, env=env)
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0, timeout=120)
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the API server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                client.models.list()
                break
            except openai.APIConnectionError:
                if time.monotonic() > deadline:
                    pytest.fail(f"the API server did not come up:\n{log.read_text()[-3000:]}")
                time.sleep(0.5)
        yield client, proc, log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def reference(tiny_qwen3ts):
    from tsplugin.chat import TimeSeriesChat

    return TimeSeriesChat.from_pretrained(tiny_qwen3ts, template=TEMPLATE)


def _ask(client, content, stream=False, max_tokens=NEW_TOKENS):
    messages = content if isinstance(content, list) and content and "role" in content[0] else [{"role": "user", "content": content}]
    result = client.chat.completions.create(model="tsfactory", messages=messages, temperature=0, max_tokens=max_tokens,
                                            stream=stream)
    if stream:
        return "".join(chunk.choices[0].delta.content or "" for chunk in result)
    return result.choices[0].message.content


def test_both_client_forms_answer_like_tsplugin_chat_streamed_or_not(server, reference):
    client, _, _ = server
    short, long = _series()
    question = "Compare <ts><ts/> with <ts><ts/>."
    expected = reference.ask(question, [short, long], max_new_tokens=NEW_TOKENS)
    content = [{"type": "text", "text": question},
               {"type": "timeseries", "timeseries": {"data": short}},  # ours
               {"timeseries": long}]  # ChatTS's vLLM form
    assert _ask(client, content) == expected
    assert _ask(client, content, stream=True) == expected
    swapped = [content[0], {"timeseries": long}, {"timeseries": short}]
    assert _ask(client, swapped) == reference.ask(question, [long, short], max_new_tokens=NEW_TOKENS) != expected


def test_text_only_requests_are_unchanged(server, reference):
    client, _, _ = server
    assert _ask(client, "hello there") == reference.ask("hello there", [], max_new_tokens=NEW_TOKENS)
    assert _ask(client, [{"type": "text", "text": "hello there"}], stream=True) == reference.ask(
        "hello there", [], max_new_tokens=NEW_TOKENS
    )


def test_earlier_turns_keep_their_series(server):
    client, _, _ = server
    first, second = _series()

    def conversation(a, b):
        return [
            {"role": "user", "content": [{"type": "text", "text": "Look at <ts><ts/>."}, {"timeseries": a}]},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [{"type": "text", "text": "And <ts><ts/>?"}, {"timeseries": b}]},
        ]

    answer = _ask(client, conversation(first, second))
    assert answer and answer == _ask(client, conversation(first, second), stream=True)
    assert answer != _ask(client, conversation(second, second))  # the first turn's series reaches the model


def test_python_m_tsplugin_chat_is_tsplugin_chat():
    """`python -m tsplugin.chat` used to be an argparse parser with no arguments at all."""
    result = subprocess.run([sys.executable, "-m", "tsplugin.chat", "--help"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("usage: tsplugin chat [-h]") and "--adapter ADAPTER" in result.stdout


@pytest.mark.slow
def test_tsplugin_chat_cli_answers_like_the_api(server, tiny_qwen3ts):
    """The real `python -m tsplugin.chat` process (model load ~15-60 s on 2 busy cores: slow tier)."""
    client, _, _ = server
    from tsplugin.chat import read_csv_series

    (values,) = read_csv_series([CSV])
    result = subprocess.run(
        [sys.executable, "-m", "tsplugin.chat", "--model", str(tiny_qwen3ts), "--template", TEMPLATE, "--csv", str(CSV),
         "--max-new-tokens", str(NEW_TOKENS), "Any spike in <ts><ts/>?"],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    api = _ask(client, [{"type": "text", "text": "Any spike in <ts><ts/>?"}, {"type": "timeseries", "timeseries": {"data": values}}])
    assert result.stdout == api + "\n"


BAD = [
    ([{"type": "text", "text": "<ts><ts/> and <ts><ts/>"}, {"timeseries": [1.0]}],
     400, "messages[0]: 2 <ts><ts/> placeholder(s) in the text but 1 series part(s)"),
    ([{"type": "text", "text": "no placeholder"}, {"timeseries": [1.0]}],
     400, "messages[0]: 0 <ts><ts/> placeholder(s) in the text but 1 series part(s)"),
    ("just <ts><ts/> text", 400, "messages[0]: 1 <ts><ts/> placeholder(s) in the text but 0 series part(s)"),
    ([{"type": "text", "text": "<ts><ts/>"}, {"timeseries": [1.0, "two"]}], 400, "messages[0].content[1]: value 1 is 'two' (a string), not a number"),
    ([{"type": "text", "text": "<ts><ts/>"}, {"timeseries": [1.0, None]}], 400, "messages[0].content[1]: value 1 is None (null), not a number"),
    # one rule for series values (tsplugin.processing.series_values), as tsconvert validate and training
    ([{"type": "text", "text": "<ts><ts/>"}, {"timeseries": [1, 10**400]}], 400,
     "messages[0].content[1]: value 1 is <an integer of 401 digits>, beyond float64"),
    ([{"type": "text", "text": "<ts><ts/>"}, {"timeseries": [1.0, 1e39]}], 400,
     "messages[0].content[1]: value 0 is 1.0: |value - mean| = 5e+38 exceeds the fp32 range"),
    ([{"type": "text", "text": "<ts><ts/>"}, {"timeseries": [1e308, -1e308]}], 400,
     "messages[0].content[1]: value 0 is 1e+308: |value - mean| = 1e+308 exceeds the fp32 range"),
    ([{"type": "text", "text": "<ts><ts/>"}, {"timeseries": [1.0]},
      {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}], 400,
     "messages[0].content[2]: a part of type image_url, but this server's model reads time series and text only"),
    ("a lone <ts> token", 400, "messages[0] (user) holds <ts> outside a <ts><ts/> placeholder"),
    ([{"type": "text", "text": "<ts><ts/>" * 3}] + [{"timeseries": [0.5] * 6000}] * 3, 413,
     "(2250 of them series positions for 3 series, "),
    ([{"type": "text", "text": "<ts><ts/>"}, {"timeseries": []}], 400, "messages[0].content[1]: the series is empty"),
    ([{"type": "text", "text": "<ts><ts/>"}, {"timeseries": "/etc/passwd"}], 400, "never opens a path or URL"),
    ([{"type": "text", "text": "<ts><ts/>"}, {"type": "timeseries", "timeseries": {"url": "http://x"}}], 400,
     "messages[0].content[1]: expected {\"data\": [numbers]}"),
    ([{"type": "text", "text": "<ts><ts/>"}, {"timeseries": [0.0] * 6001}], 413,
     "messages[0].content[1]: the series has 6001 points, more than this server's limit of 6000"),
    ([{"type": "text", "text": "<ts><ts/>" * 5}] + [{"timeseries": [1.0]}] * 5, 413,
     "more than 4 series in one request (this server's `timeseries_max_series` / $TSPLUGIN_MAX_SERIES)"),
    ([{"role": "system", "content": "Read <ts><ts/>."}, {"role": "user", "content": "hi"}], 400,
     "messages[0]: the system prompt holds <ts><ts/> placeholders"),
    ([{"role": "user", "content": "hi"}, {"role": "assistant", "content": [{"type": "text", "text": "<ts><ts/>"}, {"timeseries": [1.0]}]},
      {"role": "user", "content": "and?"}], 400, "messages[1]: series parts are only allowed in user messages, not assistant"),
]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("content,status,message", BAD, ids=[m.split(":")[-1][:30] for _, _, m in BAD])
def test_bad_requests_get_a_4xx_that_says_what_and_where(server, content, status, message, stream):
    client, _, _ = server
    with pytest.raises(openai.APIStatusError) as err:
        _ask(client, content, stream=stream)
    assert err.value.status_code == status
    assert message in err.value.body["detail"]
    assert _ask(client, [{"type": "text", "text": "ok? <ts><ts/>"}, {"timeseries": [1, 2, 3]}])  # served normally next


def test_nan_and_infinity_in_the_json_body_are_refused(server):
    """Python's JSON reader (the server's) accepts the non-standard NaN / Infinity literals."""
    import httpx

    client, _, _ = server
    for literal in ("NaN", "Infinity", "-Infinity"):
        body = ('{"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "<ts><ts/>"}, '
                '{"timeseries": [1.0, %s]}]}]}' % literal)
        reply = httpx.post(f"{client.base_url}chat/completions", content=body, headers={"Content-Type": "application/json"})
        assert reply.status_code == 400, reply.text
        assert "messages[0].content[1]: value 1 is" in reply.json()["detail"] and "not a finite number" in reply.json()["detail"]


def _load(client, clients=8, per_client=10):
    rng = np.random.default_rng(1)
    good = [{"type": "text", "text": "Trend of <ts><ts/>?"}, {"timeseries": rng.normal(size=64).tolist()}]
    bad = [{"type": "text", "text": "Trend of <ts><ts/>?"}, {"timeseries": [1.0, "x"]}]

    def worker(index):
        results = []
        for k in range(per_client):
            malformed = (index + k) % 4 == 0
            try:
                results.append((malformed, _ask(client, bad if malformed else good, stream=k % 2 == 1, max_tokens=4)))
            except openai.APIStatusError as err:
                results.append((malformed, err.status_code))
        return results

    with ThreadPoolExecutor(clients) as pool:
        return [r for rs in pool.map(worker, range(clients)) for r in rs]


def test_concurrent_clients_with_some_malformed_requests(server):
    client, proc, log = server
    results = _load(client)
    assert len(results) == 80
    bad = [answer for malformed, answer in results if malformed]
    good = [answer for malformed, answer in results if not malformed]
    assert bad and all(answer == 400 for answer in bad), bad
    assert good and all(isinstance(answer, str) and answer for answer in good), good
    assert len(set(good)) == 1  # greedy: every client got the same answer
    assert proc.poll() is None and client.models.list().data  # still up
    assert "Traceback" not in log.read_text()


def test_llamafactory_cli_chat_reads_inline_series_and_csv(recipe, reference, tmp_path):
    from tsplugin.chat import read_csv_series

    (values,) = read_csv_series([CSV])
    script = "\n".join([
        f"/csv {CSV}",
        "What about this?",
        "and <ts>[1, 2, 50, 2]<ts/> then",
        "bad <ts>[1, 2, NaN]<ts/>",
        f"/csv {tmp_path / 'missing.csv'}",
        "exit",
    ]) + "\n"
    result = subprocess.run([str(BIN / "llamafactory-cli"), "chat", str(recipe), f"max_new_tokens={NEW_TOKENS}", "temperature=0"],
                            input=script, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "`/csv PATH [COLUMN]`" in out and "<ts>[1, 2, 3]<ts/>" in out  # the banner tells how
    assert f"Loaded {len(values)} points from {CSV} (column value)" in out
    first = reference.ask("What about this?", [values], max_new_tokens=NEW_TOKENS)  # placeholder appended, as the CLI does
    assert f"Assistant: {first}\n" in out
    assert "Error: series 2: value 2 is nan, not a finite number" in out
    assert f"Error: {tmp_path / 'missing.csv'}: no such file" in out
    assert out.count("Assistant: ") == 2


def test_vllm_serve_with_a_bad_limit_in_its_environment_answers_naming_it(monkeypatch):
    """`vllm serve` reads the request limits from the environment on each request: a bad value is a JSON error
    naming the variable (status 500: the server's setting, not the request), not a traceback."""
    from types import SimpleNamespace

    from tsplugin.llamafactory.engine import ENV_MAX_SERIES, TimeSeriesInputError
    from tsplugin.vllm.chat_parts import split_series
    from tsplugin.vllm.registration import VLLM_MODELS

    monkeypatch.setenv(ENV_MAX_SERIES, "many")
    config = SimpleNamespace(architectures=[next(iter(VLLM_MODELS))], hf_config=None)
    with pytest.raises(TimeSeriesInputError) as err:
        split_series([{"role": "user", "content": "hello"}], config)
    assert err.value.status == 500 and str(err.value).startswith("this server is misconfigured: ")
    assert ENV_MAX_SERIES in str(err.value) and "'many'" in str(err.value)
