"""vLLM serves tsplugin's time-series models without a fork (`tsplugin.vllm`, entry points in pyproject).

Runs in the vLLM venv (`.ci/vllm-venv.sh`: vllm-cpu 0.11, transformers 4.57), in-process
(`VLLM_ENABLE_V1_MULTIPROCESSING=0`), fp32 on CPU:
- `LLM(model=DIR).generate` with `multi_modal_data={"timeseries": [...]}`: single prompts and a mixed
  batch (different lengths and series counts, none included), text and token-id prompts (placeholders
  as `<ts>`, `<ts/>` pairs, or expanded already as LLaMA-Factory's `infer_backend: vllm` sends them);
- greedy tokens equal the transformers path's (tsplugin's classes, the same expansion) on the three
  released layouts (tests/_layouts.py twins) and a `tsplugin init-model` qwen3ts, and the chosen
  token's log-probability agrees within the dtype-and-size-derived tolerance;
- bad input (count mismatch, NaN, strings, empty) raises a ValueError that says what and where;
- no twin's shipped .py file is imported (conftest's autouse marker check), trust_remote_code or not;
- `vllm serve DIR` (the console command) with the official openai client: series parts in both forms,
  streamed or not; bad series get exactly `llamafactory-cli api`'s 400/413 message.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

pytestmark = pytest.mark.vllm  # conftest skips these with the reason where vLLM is missing (.ci/vllm-venv.sh builds it)

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # the engine core runs in this process
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB of KV cache per engine (default 4): tiny models

NEW_TOKENS = 6
SEED = 0


def _series(rng: np.random.Generator, length: int) -> list[float]:
    t = np.arange(length)
    return (np.sin(t / 5.0) * 3 + rng.normal(0, 0.5, length) + rng.uniform(-50, 50)).round(3).tolist()


def _prompts() -> list[tuple[str, list[list[float]]]]:
    """Prompts of different lengths and series counts (0, 1, 2, 3; short, partial last patch, long)."""
    rng = np.random.default_rng(SEED)
    return [
        ("Is there an anomaly in <ts><ts/>? Answer:", [_series(rng, 37)]),
        ("Compare A: <ts><ts/> and B: <ts><ts/>.", [_series(rng, 64), _series(rng, 9)]),
        ("Plain text, no series at all.", []),
        ("<ts><ts/><ts><ts/> then  <ts><ts/> end", [_series(rng, 1), _series(rng, 130), _series(rng, 16)]),
    ]


def _transformers_greedy(model_dir, prompts, new_tokens: int):
    """Greedy continuation and the chosen tokens' log-probabilities on the transformers path, prompt by prompt
    (no KV cache: every step is the full forward of tsplugin's model class)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tsplugin.processing import TimeSeriesProcessor

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    processor = TimeSeriesProcessor.from_pretrained(model_dir)
    results = []
    for text, series in prompts:
        expanded, features = processor.expand(text, series)
        ids = tokenizer(expanded, return_tensors="pt")["input_ids"]
        batch = processor.batch(features) if features else None
        tokens, logprobs = [], []
        with torch.no_grad():
            for _ in range(new_tokens):
                logits = model(input_ids=ids, timeseries=batch).logits[0, -1].float()
                token = int(logits.argmax())
                tokens.append(token)
                logprobs.append(float(torch.log_softmax(logits, -1)[token]))
                ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
        results.append((tokens, logprobs))
    return model, results


def _vllm_greedy(llm, prompts, new_tokens: int):
    from vllm import SamplingParams

    params = SamplingParams(temperature=0.0, max_tokens=new_tokens, ignore_eos=True, logprobs=1)
    requests = [
        {"prompt": text, "multi_modal_data": {"timeseries": series}} if series else {"prompt": text}
        for text, series in prompts
    ]
    outputs = llm.generate(requests, params, use_tqdm=False)
    results = []
    for out in outputs:
        completion = out.outputs[0]
        tokens = list(completion.token_ids)
        logprobs = [step[token].logprob for step, token in zip(completion.logprobs, tokens)]
        results.append((tokens, logprobs))
    return results


def _llm(model_dir, **kwargs):
    from vllm import LLM

    return LLM(model=str(model_dir), dtype="float32", max_model_len=2048, enforce_eager=True, seed=SEED,
               max_num_seqs=8, **kwargs)


@pytest.fixture(scope="module")
def qwen3ts_model(tmp_path_factory):
    from tsplugin.build.init_model import build_model

    return build_model(tmp_path_factory.mktemp("vllm_models") / "qwen3ts", arch="qwen3ts", preset="tiny", seed=SEED)


def _models(request, layout_twins, qwen3ts_model):
    return qwen3ts_model if request.param == "init-model-qwen3ts" else layout_twins[request.param]


@pytest.fixture(scope="module", params=["chatts-14b", "chatts-8b", "chatts-14b-first", "init-model-qwen3ts"])
def engine(request, layout_twins, qwen3ts_model):
    """(model dir, an LLM on it); the released layouts load with trust_remote_code=True (it changes nothing)."""
    import gc

    model_dir = _models(request, layout_twins, qwen3ts_model)
    llm = _llm(model_dir, trust_remote_code=request.param != "init-model-qwen3ts")
    yield request.param, model_dir, llm
    del llm
    gc.collect()


def test_greedy_equals_transformers(engine, fp_close):
    """Single prompts and the mixed batch: vLLM's greedy tokens are the transformers path's, and the
    chosen tokens' log-probabilities agree within the derived tolerance."""
    import torch

    from conftest import fp_atol, rounding_sizes

    name, model_dir, llm = engine
    prompts = _prompts()
    model, want = _transformers_greedy(model_dir, prompts, NEW_TOKENS)
    batch = _vllm_greedy(llm, prompts, NEW_TOKENS)
    singles = [_vllm_greedy(llm, [p], NEW_TOKENS)[0] for p in prompts[:2]]
    for i, (got, expected) in enumerate(zip(batch, want)):
        assert got[0] == expected[0], f"{name}: prompt {i} (batch): vLLM {got[0]} != transformers {expected[0]}"
    for i, (got, expected) in enumerate(zip(singles, want)):
        assert got[0] == expected[0], f"{name}: prompt {i} (single): vLLM {got[0]} != transformers {expected[0]}"
    reduce_size, depth = rounding_sizes(model, tokens=2048)
    atol = fp_atol(torch.float32, reduce_size, depth, scale=max(abs(v) for _, lp in want for v in lp))
    for got, expected in zip(batch, want):
        torch.testing.assert_close(torch.tensor(got[1]), torch.tensor(expected[1]), atol=atol, rtol=0)


def test_token_id_prompt_matches_text_prompt(engine):
    """A prompt given as token ids (`<ts>`, `<ts/>` pairs) expands to the same tokens as its text
    when no text touches a placeholder (the prefix is tokenised on its own there)."""
    from vllm import SamplingParams

    _, model_dir, llm = engine
    tokenizer = llm.get_tokenizer()
    series = [_series(np.random.default_rng(1), 21), _series(np.random.default_rng(2), 8)]
    text = "Look:\n<ts><ts/>\nand\n<ts><ts/>\n"
    params = SamplingParams(temperature=0.0, max_tokens=3, ignore_eos=True)
    by_text = llm.generate({"prompt": text, "multi_modal_data": {"timeseries": series}}, params, use_tqdm=False)[0]
    ids = tokenizer(text)["input_ids"]
    by_ids = llm.generate({"prompt_token_ids": ids, "multi_modal_data": {"timeseries": series}}, params, use_tqdm=False)[0]
    assert by_ids.prompt_token_ids == by_text.prompt_token_ids
    assert list(by_ids.outputs[0].token_ids) == list(by_text.outputs[0].token_ids)


def test_expanded_token_id_prompt_is_taken_as_it_is(engine):
    """Token ids whose placeholders are expanded already (prefix + `<ts>` runs: what LLaMA-Factory's vLLM engine
    sends, the ids its HF engine encodes) are kept exactly; runs that do not fit the series are refused."""
    from vllm import SamplingParams

    from tsplugin.processing import TimeSeriesProcessor

    _, model_dir, llm = engine
    tokenizer = llm.get_tokenizer()
    series = [_series(np.random.default_rng(1), 21), _series(np.random.default_rng(2), 8)]
    text = "Compare <ts><ts/> and <ts><ts/>."
    expanded, _ = TimeSeriesProcessor.from_pretrained(model_dir).expand(text, series)
    ids = tokenizer(expanded)["input_ids"]
    params = SamplingParams(temperature=0.0, max_tokens=3, ignore_eos=True)
    by_ids = llm.generate({"prompt_token_ids": ids, "multi_modal_data": {"timeseries": series}}, params, use_tqdm=False)[0]
    by_text = llm.generate({"prompt": text, "multi_modal_data": {"timeseries": series}}, params, use_tqdm=False)[0]
    assert by_ids.prompt_token_ids == ids == by_text.prompt_token_ids
    assert list(by_ids.outputs[0].token_ids) == list(by_text.outputs[0].token_ids)
    short = ids.copy()
    short.remove(tokenizer.convert_tokens_to_ids("<ts>"))  # series 0's run one position short
    with pytest.raises(ValueError, match=r"time series need runs of \[\d+, \d+\] \(series 0 has no run of"):
        llm.generate({"prompt_token_ids": short, "multi_modal_data": {"timeseries": series}}, params, use_tqdm=False)


BAD_INPUTS = [
    ("two <ts><ts/> <ts><ts/>", [[1.0, 2.0]], "2 <ts><ts/> placeholder(s) in the text but 1 time series"),
    ("one <ts><ts/>", [[1.0, float("nan"), 2.0]], "time series 0: time series has 1 non-finite value"),
    ("one <ts><ts/>", [["a", "b"]], "multi_modal_data['timeseries'][0]: not a list of numbers"),
    ("one <ts><ts/>", [[]], "time series 0: a time series has length 0"),
    ("one <ts><ts/>", ["1,2,3"], "multi_modal_data['timeseries'][0]: a series must be a list of numbers"),
]


def test_bad_series_is_refused_with_where(engine):
    """Every bad input raises a ValueError saying what and which series; the engine keeps serving."""
    from vllm import SamplingParams

    _, _, llm = engine
    for text, series, expected in BAD_INPUTS:
        with pytest.raises(ValueError) as err:
            llm.generate({"prompt": text, "multi_modal_data": {"timeseries": series}}, SamplingParams(max_tokens=1),
                         use_tqdm=False)
        assert expected in str(err.value), (text, series, str(err.value))
    ok = llm.generate({"prompt": "one <ts><ts/>", "multi_modal_data": {"timeseries": [[1.0, 2.0]]}},
                      SamplingParams(max_tokens=1), use_tqdm=False)
    assert len(ok[0].outputs[0].token_ids) == 1


# --- `vllm serve` (OpenAI chat completions) ----------------------------------------------------------------


@pytest.fixture(scope="module")
def served(qwen3ts_model, tmp_path_factory):
    """`vllm serve DIR` (the console command next to this Python) on 127.0.0.1, a free port, for the
    init-model qwen3ts; stopped by the fixture. The CPU venv needs the `vllm` name (.ci/vllm_cpu_name.py)."""
    import shutil
    import subprocess
    import sys
    import time
    from importlib import metadata
    from pathlib import Path

    import openai

    from conftest import free_port

    vllm_command = Path(sys.executable).parent / "vllm"
    if not vllm_command.exists():
        vllm_command = shutil.which("vllm")
    assert vllm_command, f"no `vllm` command next to {sys.executable} or on PATH"
    try:
        metadata.version("vllm")
    except metadata.PackageNotFoundError:
        pytest.fail("this venv has vLLM but no distribution named `vllm` (the vllm-cpu build), so `vllm serve` exits "
                    "with PackageNotFoundError before serving. Build the venv with .ci/vllm-venv.sh, or: pip install "
                    "--no-deps $(python .ci/vllm_cpu_name.py /tmp/vllm-name)")
    port = free_port()
    log = tmp_path_factory.mktemp("vllm_serve") / "server.log"
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "TSPLUGIN_MAX_SERIES": "4"}
    command = [str(vllm_command), "serve", str(qwen3ts_model), "--served-model-name", "ts", "--host", "127.0.0.1",
               "--port", str(port), "--dtype", "float32", "--max-model-len", "2048", "--enforce-eager", "--seed", str(SEED)]
    with open(log, "w") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0, timeout=300)
    deadline = time.monotonic() + 600
    try:
        while True:
            assert proc.poll() is None, f"`vllm serve` exited ({proc.returncode}):\n{log.read_text()[-3000:]}"
            try:
                client.models.list()
                break
            except (openai.APIConnectionError, openai.InternalServerError):
                assert time.monotonic() < deadline, f"`vllm serve` did not come up:\n{log.read_text()[-3000:]}"
                time.sleep(1)
        yield client
    finally:
        proc.terminate()
        proc.wait(timeout=60)


SERIES = [round(float(v), 3) for v in np.sin(np.arange(45) / 4.0) * 7 + 20]


def _chat(client, content, stream=False, max_tokens=5):
    reply = client.chat.completions.create(model="ts", messages=[{"role": "user", "content": content}], temperature=0,
                                           max_tokens=max_tokens, stream=stream)
    if stream:
        with reply:  # closed also when an error event ends the stream
            return "".join(chunk.choices[0].delta.content or "" for chunk in reply if chunk.choices)
    return reply.choices[0].message.content


def test_serve_both_series_forms_streamed_or_not(served):
    text = {"type": "text", "text": "What happens in <ts><ts/>?"}
    ours = [text, {"type": "timeseries", "timeseries": {"data": SERIES}}]
    chatts = [text, {"timeseries": SERIES}]
    answer = _chat(served, ours)
    assert answer  # five greedy tokens of a random model: some text
    assert _chat(served, chatts) == answer
    assert _chat(served, ours, stream=True) == answer
    assert _chat(served, chatts, stream=True) == answer
    other = [text, {"timeseries": [v * -3 + 1 for v in SERIES[:17]]}]  # another series: the encoder is used
    assert _chat(served, other) != answer or _chat(served, other, max_tokens=12) != _chat(served, ours, max_tokens=12)


# (content, status, the error message exactly as `llamafactory-cli api` words it: api_series.message_series)
SERVE_BAD = [
    ([{"type": "text", "text": "two <ts><ts/> <ts><ts/>"}, {"timeseries": SERIES}], 400,
     "messages[0]: 2 <ts><ts/> placeholder(s) in the text but 1 series part(s). Write exactly one <ts><ts/> per series "
     "part, in order."),
    ([{"type": "text", "text": "one <ts><ts/>"}, {"timeseries": [1.0, "x"]}], 400,
     "messages[0].content[1]: value 1 is 'x' (a string), not a number. Clean the data (`tsconvert` reads historian "
     "strings and repairs gaps) and convert again."),
    ([{"type": "text", "text": "one <ts><ts/>"}, {"type": "timeseries", "timeseries": {"data": []}}], 400,
     "messages[0].content[1]: the series is empty; a series needs at least one number."),
    ([{"type": "text", "text": "one <ts><ts/>"}, {"timeseries": "/etc/passwd"}], 400,
     "messages[0].content[1]: series must be inline numbers; this server never opens a path or URL a client names."),
    ([{"type": "text", "text": "one <ts><ts/>"}, {"timeseries": [0.5] * 9000}], 413,
     "messages[0].content[1]: the series has 9000 points, more than this server's limit of 8192 "
     "(`timeseries_max_points` / $TSPLUGIN_MAX_POINTS). Downsample it (`tsconvert --max-length`)."),
    ([{"type": "text", "text": "<ts><ts/>" * 5}] + [{"timeseries": [1.0]}] * 5, 413,
     "more than 4 series in one request (this server's `timeseries_max_series` / $TSPLUGIN_MAX_SERIES)."),
]


def _error(err) -> tuple[int, str]:
    """(status, message) of an openai error from vLLM's `{"error": {"message": ...}}` body."""
    body = err.body if isinstance(err.body, dict) else {}
    return err.status_code, body.get("message", str(err))


@pytest.mark.parametrize("stream", [False, True])
def test_serve_bad_series_get_the_api_error_text(served, stream):
    """Checked before vLLM preprocesses the prompt: a 4xx (also for `stream: true`) whose message is exactly
    `llamafactory-cli api`'s (vLLM's own wording appended " None" to it before)."""
    import openai

    for content, status, expected in SERVE_BAD:
        with pytest.raises(openai.APIStatusError) as err:
            _chat(served, content, stream=stream)
        assert _error(err.value) == (status, expected)
    assert _chat(served, [{"type": "text", "text": "ok <ts><ts/>"}, {"timeseries": SERIES}])  # still serving


# The openai client leaves its event generator suspended when an error event ends a stream; collected here
# (gc.collect below), its cleanup raises inside openai and would be reported in whichever test ran next.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("stream", [False, True])
def test_serve_over_the_context_is_refused(served, stream):
    """2 x 1000 positions + prefixes > 2048: vLLM's own check after processing the prompt (names no part):
    a 400 without streaming, an error event inside the stream with it."""
    import gc

    import openai

    content = [{"type": "text", "text": "over <ts><ts/> the <ts><ts/> context"}, {"timeseries": [0.5] * 8000},
               {"timeseries": [0.5] * 8000}]
    with pytest.raises(openai.APIError) as err:
        _chat(served, content, stream=stream)
    assert "is longer than the maximum model length of 2048" in str(err.value)
    del err
    gc.collect()


def test_serve_nan_in_the_body_gets_400(served):
    """`NaN` in the JSON body (Python's json writes it) is refused, naming the value."""
    import httpx

    body = {"model": "ts", "max_tokens": 2, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "one <ts><ts/>"}, {"timeseries": [1.0, float("nan")]}]}]}
    import json

    reply = httpx.post(f"{served.base_url}chat/completions", content=json.dumps(body),
                       headers={"Content-Type": "application/json"}, timeout=120)
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["message"] == ("messages[0].content[1]: value 1 is nan, not a finite number. Clean the "
                                                "data (`tsconvert` interpolates NaN runs) and convert again.")
