"""Plugin overhead: time-series records vs text-only records, through stock LLaMA-Factory.

Usage: python bench/plugin_overhead.py [--dataset chatts_dev] [--arch chatts] [--repeats 2]
                                       [--warmup 2] [--steps 8] [--batch 1] [--copies 2]
                                       [--threads 1] [--profile auto|always|never]

(a) Training step time. The time-series set is the --dataset-dir entry (every record as shipped);
    its text-only twin has the SAME token count per record: each placeholder becomes the prefix
    the plugin writes plus one ordinary filler token per patch, so both sides train on identical
    sequence lengths, batches and padding. The token counts are checked record by record after
    LLaMA-Factory's own preprocessing (the bench refuses to time unequal twins). A step is the
    interval between consecutive `on_step_end` callbacks (data loading and collation included);
    the first --warmup steps are dropped, and the median over the remaining steps of all repeats is
    reported, the two sides alternating run by run. Target: time-series / text-only <= 1.10.
(b) Preprocessing throughput (records/s) of `llamafactory.data.get_dataset` with the plugin's
    template, on the entry as shipped vs the same records with series and placeholders removed
    (text-only, same template, much shorter). Fresh datasets cache per run; median of repeats.
When a ratio misses 1.10 (or --profile always), cProfile runs one time-series pass and the bench
prints where the time goes (encoder, sp_stats, collator, Arrow conversion, tokenisation, ...).
Not a test; no timed assertions. Numbers from a shared CPU vary: compare the two sides of one run.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from lf_output import lf_output_to, offline

offline()

ROOT = Path(__file__).resolve().parents[1]
TARGET = 1.10
TEMPLATES = {"chatts": "chatts", "qwen3ts": "chatts8b_nothink"}
FILLERS = (".", "~", "-", "*")  # tried in order until every twin matches token for token


# ----------------------------------------------------------------------------- data


def read_entry(dataset_dir: Path, name: str) -> tuple[list[dict], dict]:
    info = json.loads((dataset_dir / "dataset_info.json").read_text())
    if name not in info:
        raise SystemExit(f"{dataset_dir}/dataset_info.json has no entry {name!r}; entries: {sorted(info)}")
    entry = info[name]
    path = (dataset_dir / entry["file_name"]).resolve()
    with open(path, encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    return records, entry


def write_set(directory: Path, name: str, records: Sequence[dict], with_series: bool) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / f"{name}.jsonl", "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    info_path = directory / "dataset_info.json"
    info = json.loads(info_path.read_text()) if info_path.exists() else {}
    columns = {"prompt": "input", "response": "output"}
    if with_series:
        columns["timeseries"] = "timeseries"
    info[name] = {"file_name": f"{name}.jsonl", "columns": columns}
    info_path.write_text(json.dumps(info, indent=2))


def same_length_twin(record: dict, patch_size: int, filler: str, profile: str) -> dict:
    """Text-only record: each placeholder -> the plugin's prefix + one filler token per patch."""
    from tsplugin.processing import num_patches, sp_encode
    from tsplugin.processing.placeholders import PLACEHOLDER_PATTERN

    series = iter(record["timeseries"])

    def expand(_match) -> str:
        values = next(series)
        return sp_encode(values, profile)[1] + filler * num_patches(len(values), patch_size)

    return {"input": PLACEHOLDER_PATTERN.sub(expand, record["input"]), "output": record["output"]}


def stripped_twin(record: dict) -> dict:
    """Text-only record: series and placeholders removed."""
    from tsplugin.processing.placeholders import PLACEHOLDER_PATTERN

    return {"input": PLACEHOLDER_PATTERN.sub("", record["input"]), "output": record["output"]}


# ----------------------------------------------------------------------------- LLaMA-Factory


def lf_args(model: Path, data_dir: Path, dataset: str, out: Path, template: str, **overrides: Any) -> dict:
    args = dict(
        model_name_or_path=str(model), stage="sft", do_train=True, finetuning_type="lora", lora_target="all",
        lora_rank=8, dataset=dataset, dataset_dir=str(data_dir), template=template, cutoff_len=4096,
        overwrite_cache=True, output_dir=str(out), overwrite_output_dir=True, logging_steps=1,
        save_strategy="no", report_to="none", per_device_train_batch_size=4, learning_rate=1e-4,
        bf16=False, seed=42, data_seed=42, disable_tqdm=True, max_steps=10,
    )
    args.update(overrides)
    return args


def tokenized(args: dict) -> tuple[Any, float, float]:
    """LLaMA-Factory's dataset pipeline (`get_dataset`) as training runs it; returns (dataset, seconds, CPU seconds
    of this process) of `get_dataset` alone."""
    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer

    model_args, data_args, training_args, _, _ = get_train_args(args)
    module = load_tokenizer(model_args)
    template = get_template_and_fix_tokenizer(module["tokenizer"], data_args)
    start, cpu = time.perf_counter(), time.process_time()
    dataset = get_dataset(template, model_args, data_args, training_args, "sft", **module)["train_dataset"]
    return dataset, time.perf_counter() - start, time.process_time() - cpu


def step_timer() -> Any:
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        """Wall time between consecutive optimizer-step ends (data loading + collation included)."""

        def __init__(self) -> None:
            self.stamps: list[float] = []

        def on_train_begin(self, args, state, control, **kwargs):
            self.stamps = [time.perf_counter()]

        def on_step_end(self, args, state, control, **kwargs):
            self.stamps.append(time.perf_counter())

        def intervals(self) -> list[float]:
            return [b - a for a, b in zip(self.stamps, self.stamps[1:])]

    return StepTimer()


def train_steps(args: dict) -> tuple[list[float], float]:
    """Per-step intervals and the trainer's train_runtime of one in-process `llamafactory-cli train`."""
    from llamafactory.train.tuner import run_exp

    timer = step_timer()
    run_exp(args, callbacks=[timer])
    runtime = json.loads((Path(args["output_dir"]) / "train_results.json").read_text())["train_runtime"]
    return timer.intervals(), runtime


# ----------------------------------------------------------------------------- profiling

BUCKETS = {  # label -> (file suffix, function name) as pstats names them
    "ts_encoder forward (tsplugin/models/encoders/ts_embedding.py)": ("ts_embedding.py", "forward"),
    "sp_stats: each read of a series (tsplugin/processing/profiles.py)": ("profiles.py", "sp_stats"),
    "encode_series (tsplugin/processing/__init__.py)": ("processing/__init__.py", "encode_series"),
    "batch_series (tsplugin/processing/__init__.py)": ("processing/__init__.py", "batch_series"),
    "collator get_mm_inputs (tsplugin mm_plugin.py)": ("mm_plugin.py", "get_mm_inputs"),
    "plugin process_messages (placeholder expansion)": ("mm_plugin.py", "process_messages"),
    "collator __call__ (llamafactory/data/collator.py)": ("collator.py", "__call__"),
    "check_aligned (tsplugin/llamafactory/data.py)": ("data.py", "check_aligned"),
    "dataset processor preprocess_dataset": ("supervised.py", "preprocess_dataset"),
    "tokenizer encode (LLaMA-Factory template)": ("template.py", "_convert_elements_to_ids"),
    "datasets load_dataset (JSON -> Arrow)": ("load.py", "load_dataset"),
    "datasets map (Arrow write of results)": ("arrow_dataset.py", "map"),
    "model forward (decoder + encoder)": ("modeling_chatts.py", "forward"),
    "loss.backward": ("_tensor.py", "backward"),
    "optimizer step": ("optimizer.py", "wrapper"),
}


def profile_report(prof: cProfile.Profile, total: float, top: int = 12) -> str:
    """Named buckets (cumulative seconds, share of the profiled total) and the top functions by own time."""
    stats = pstats.Stats(prof)
    lines = [f"  profiled total {total:.2f} s (cProfile adds overhead to Python-heavy code)"]
    found: dict[str, float] = {}
    for (filename, _line, func), (_cc, _nc, _tt, ct, _callers) in stats.stats.items():
        for label, (suffix, name) in BUCKETS.items():
            if func == name and filename.endswith(suffix):
                found[label] = max(found.get(label, 0.0), ct)
    for label, seconds in sorted(found.items(), key=lambda kv: -kv[1]):
        lines.append(f"  {seconds:8.3f} s {100 * seconds / total:5.1f}%  {label}")
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(top)
    body = [ln for ln in buf.getvalue().splitlines() if ln.strip() and not ln.lstrip().startswith(("Ordered", "List reduced"))]
    lines.append("  top functions by own time (ncalls tottime percall cumtime percall where):")
    lines += ["    " + ln.strip() for ln in body if "{" in ln or ".py" in ln][:top]
    return "\n".join(lines)


def profiled(fn, *args) -> tuple[cProfile.Profile, float]:
    prof = cProfile.Profile()
    start = time.perf_counter()
    prof.enable()
    try:
        fn(*args)
    finally:
        prof.disable()
    return prof, time.perf_counter() - start


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="chatts_dev", help="entry of --dataset-dir's dataset_info.json (default chatts_dev)")
    parser.add_argument("--dataset-dir", type=Path, default=ROOT / "tests" / "fixtures" / "chatts_dev",
                        help="folder with dataset_info.json (default: the ChatTS dev fixture, which has its own)")
    parser.add_argument("--arch", default="chatts", choices=sorted(TEMPLATES), help="tiny model architecture")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--repeats", type=int, default=2, help="runs per side, alternating (default 2)")
    parser.add_argument("--warmup", type=int, default=2, help="steps dropped from each run (default 2)")
    parser.add_argument("--steps", type=int, default=8, help="timed steps per run (default 8)")
    parser.add_argument("--batch", type=int, default=1, help="per-device batch size (default 1: chatts_dev records are ~1.8k tokens)")
    parser.add_argument("--copies", type=int, default=2, help="(b): the records repeated this many times (default 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1; shared CPUs are slower with more)")
    parser.add_argument("--profile", default="auto", choices=("auto", "always", "never"))
    parser.add_argument("--keep", type=Path, default=None, help="keep model, data and runs in this directory")
    parser.add_argument("--verbose", action="store_true", help="show LLaMA-Factory's output (default: WORK/lf.log)")
    args = parser.parse_args(argv)

    import torch

    import tsplugin._bootstrap  # noqa: F401  (hooks, also without the .pth)
    from tsplugin.build.init_model import build_model
    from tsplugin.processing.profiles import INIT_MODEL_PROFILES
    from tsplugin.processing import TimeSeriesProcessor

    torch.set_num_threads(args.threads)
    template = TEMPLATES[args.arch]
    tmp = tempfile.mkdtemp(prefix="plugin_overhead_")
    work = args.keep or Path(tmp)
    work.mkdir(parents=True, exist_ok=True)
    stack = contextlib.ExitStack()
    try:
        say = stack.enter_context(lf_output_to(None if args.verbose else work / "lf.log"))
        model = build_model(work / "model", arch=args.arch, preset=args.preset, seed=0)
        patch = TimeSeriesProcessor.from_pretrained(model).patch_size
        records, _entry = read_entry(args.dataset_dir, args.dataset)
        data = work / "data"
        write_set(data, "ts", records, with_series=True)
        n_series = sum(len(r["timeseries"]) for r in records)
        n_points = sum(len(s) for r in records for s in r["timeseries"])
        say(f"{args.dataset}: {len(records)} records, {n_series} series, {n_points} points; {args.arch} {args.preset}, patch {patch}, template {template}")

        # ---- (a) equal-length twins
        ts_lengths = [len(x) for x in tokenized(lf_args(model, data, "ts", work / "o", template))[0]["input_ids"]]
        filler = None
        for candidate in FILLERS:
            write_set(data, "text_same_len", [same_length_twin(r, patch, candidate, INIT_MODEL_PROFILES[args.arch]) for r in records], with_series=False)
            twin_lengths = [len(x) for x in tokenized(lf_args(model, data, "text_same_len", work / "o", template))[0]["input_ids"]]
            if twin_lengths == ts_lengths:
                filler = candidate
                break
            say(f"filler {candidate!r}: {sum(a != b for a, b in zip(twin_lengths, ts_lengths))} records differ in length; trying the next")
        if filler is None:
            raise SystemExit(f"no filler in {FILLERS} gives text-only twins of equal token length; cannot compare step times")
        say(f"(a) twins: filler {filler!r}; token lengths equal for {len(ts_lengths)}/{len(ts_lengths)} records "
              f"(min {min(ts_lengths)}, median {int(statistics.median(ts_lengths))}, max {max(ts_lengths)})")

        total_steps = args.warmup + args.steps
        sides = {"ts": "ts", "text": "text_same_len"}
        steps: dict[str, list[float]] = {"ts": [], "text": []}
        runtimes: dict[str, list[float]] = {"ts": [], "text": []}
        for rep in range(args.repeats):
            for side in (("ts", "text") if rep % 2 == 0 else ("text", "ts")):
                run_args = lf_args(model, data, sides[side], work / f"run_{side}_{rep}", template,
                                   max_steps=total_steps, per_device_train_batch_size=args.batch)
                intervals, runtime = train_steps(run_args)
                steps[side] += intervals[args.warmup :]
                runtimes[side].append(runtime / total_steps)
                say(f"(a) repeat {rep} {side:>4}: median step {statistics.median(intervals[args.warmup:]):.4f} s, "
                      f"train_runtime/steps {runtime / total_steps:.4f} s")
        step_ts, step_text = statistics.median(steps["ts"]), statistics.median(steps["text"])
        ratio_a = step_ts / step_text

        # ---- (b) preprocessing throughput
        write_set(data, "ts_b", records * args.copies, with_series=True)
        write_set(data, "text_b", [stripped_twin(r) for r in records] * args.copies, with_series=False)
        n_b = len(records) * args.copies
        prep: dict[str, list[float]] = {"ts": [], "text": []}
        for rep in range(args.repeats):
            for side, name in (("ts", "ts_b"), ("text", "text_b")):
                cache = work / f"cache_{side}_{rep}"
                _, seconds, _ = tokenized(lf_args(model, data, name, work / "o", template, cache_dir=str(cache)))
                shutil.rmtree(cache, ignore_errors=True)
                prep[side].append(seconds)
                say(f"(b) repeat {rep} {side:>4}: {n_b} records in {seconds:.2f} s = {n_b / seconds:.1f} records/s")
        rps_ts, rps_text = n_b / statistics.median(prep["ts"]), n_b / statistics.median(prep["text"])
        ratio_b = rps_text / rps_ts

        # ---- profiles
        reports = []
        if args.profile == "always" or (args.profile == "auto" and ratio_a > TARGET):
            run_args = lf_args(model, data, "ts", work / "run_profile", template, max_steps=total_steps,
                               per_device_train_batch_size=args.batch)
            stats, total = profiled(train_steps, run_args)
            reports.append(f"profile (a): one time-series training run ({total_steps} steps, dataset preprocessing included)\n"
                           + profile_report(stats, total))
        if args.profile == "always" or (args.profile == "auto" and ratio_b > TARGET):
            stats, total = profiled(tokenized, lf_args(model, data, "ts_b", work / "o", template, cache_dir=str(work / "cache_prof")))
            reports.append(f"profile (b): get_dataset on {n_b} time-series records\n" + profile_report(stats, total))
    finally:
        stack.close()
        if args.keep is None:
            shutil.rmtree(tmp, ignore_errors=True)

    for report in reports:
        print(report)
    print("=== plugin overhead summary ===")
    print(f"data: {args.dataset} ({len(records)} records, {n_series} series of {n_points // max(n_series, 1)} points avg); "
          f"model {args.arch}/{args.preset} LoRA (lora_target all), batch {args.batch}, torch threads {args.threads}")
    print(f"(a) train step, median of {args.repeats}x{args.steps} steps after {args.warmup} warm-up "
          f"(equal token lengths, median {int(statistics.median(ts_lengths))} tokens/record):")
    print(f"    time-series {step_ts:.4f} s/step   text-only {step_text:.4f} s/step   ratio {ratio_a:.3f} "
          f"(target <= {TARGET:.2f}: {'met' if ratio_a <= TARGET else 'MISSED'})")
    print(f"    train_runtime/steps (warm-up included), medians: time-series {statistics.median(runtimes['ts']):.4f} s   "
          f"text-only {statistics.median(runtimes['text']):.4f} s   ratio {statistics.median(runtimes['ts']) / statistics.median(runtimes['text']):.3f}")
    print(f"(b) get_dataset throughput, median of {args.repeats} runs on {n_b} records:")
    print(f"    time-series {rps_ts:.1f} records/s   text-only (series+placeholders removed) {rps_text:.1f} records/s   "
          f"slowdown {ratio_b:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
