"""Does a model trained through the plugin read the series? GDSH-style anomaly answers on CPU.

Usage: python bench/gdsh_learning.py [--records 400] [--held-out 60] [--minutes 8] [--preset tiny]
                                     [--finetuning full|lora] [--seed 0] [--keep DIR]

Design choices:
- Data: GDSH-like records generated here (the shape of dataset_info/gdsh_sample_source: a Chinese prompt
  naming a process tag, one `<ts><ts/>`, a JSON answer `is_anomaly` / `anomaly_type` / `start` / `end`),
  256-512 points each, one of spike, dip, level_shift, drift, oscillation, flatline at a known span, or
  none. The `reason` field is left out so that generation stays short on CPU.
- Training: stock LLaMA-Factory in-process on a tiny random qwen3ts model (`tsplugin.build.init_model`),
  the encoder trainable (full fine-tuning with `freeze_vision_tower: false`, or LoRA with
  `additional_target: ts_encoder`), stopped by a wall-time callback after `--minutes`.
- Scoring: LLaMA-Factory `do_predict` with `predict_with_generate` on held-out records, scored by
  `tsplugin.eval.anomaly`; then again with the series shuffled between the held-out records (prompt
  and label kept). The gap between the two is what the model reads from the series: with shuffled
  series the text alone is left (the `[Value Offset|Value Scaling]` prefix still carries the record's
  own mean and scale, a weak leak the shuffle keeps on purpose: it is what a user's data has too).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")

TYPES = ("spike", "dip", "level_shift", "drift", "oscillation", "flatline")
TAGS = ("PIC-3105.PV", "AI-5512.PV", "TI-2201.PV", "LIC-0407.PV", "PI-0210.PV", "FIC-1203.PV", "TIC-6603.PV")
SCHEMA = '{"is_anomaly": bool, "anomaly_type": str, "start": int, "end": int}'


def make_series(rng: random.Random, kind: str) -> tuple[list[float], tuple[int, int] | None]:
    """A noisy process signal with `kind` injected at a random span (None for a normal series)."""
    n = rng.randint(256, 512)
    level, noise = rng.uniform(10, 500), rng.uniform(0.5, 2.0)
    period, wobble = rng.uniform(40, 120), rng.uniform(0, 2 * noise)
    x = [level + wobble * math.sin(2 * math.pi * i / period) + rng.gauss(0, noise) for i in range(n)]
    if kind == "none":
        return [round(v, 4) for v in x], None
    width = {"spike": (3, 12), "dip": (3, 12), "oscillation": (30, 90)}.get(kind, (60, 180))
    start = rng.randint(20, n - width[1] - 20)
    end = start + rng.randint(*width) - 1
    size = noise * rng.uniform(8, 15)
    if kind == "level_shift":
        end = n - 1  # a level shift lasts to the end of the window, as in GDSH
    for i in range(start, end + 1):
        t = (i - start) / max(1, end - start)
        if kind == "spike":
            x[i] += size * (1 - abs(2 * t - 1))
        elif kind == "dip":
            x[i] -= size * (1 - abs(2 * t - 1))
        elif kind == "level_shift":
            x[i] += size
        elif kind == "drift":
            x[i] += size * t
        elif kind == "oscillation":
            x[i] += size * 0.6 * math.sin(2 * math.pi * (i - start) / 8)
        elif kind == "flatline":
            x[i] = x[start]
    return [round(v, 4) for v in x], (start, end)


def make_record(rng: random.Random) -> dict:
    kind = rng.choice(TYPES + ("none",))
    series, span = make_series(rng, kind)
    answer = {"is_anomaly": span is not None, "anomaly_type": kind, "start": span[0] if span else None, "end": span[1] if span else None}
    prompt = f"请分析下图中 {rng.choice(TAGS)} 的运行数据：<ts><ts/>\n输出 JSON：{SCHEMA}"
    return {"input": prompt, "output": json.dumps(answer, ensure_ascii=False), "timeseries": [series]}


def write_dataset(directory: Path, splits: dict[str, list[dict]]) -> None:
    info = {}
    for name, records in splits.items():
        with open(directory / f"{name}.jsonl", "w", encoding="utf-8") as f:
            for record in records:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
        info[name] = {"file_name": f"{name}.jsonl", "columns": {"prompt": "input", "response": "output", "timeseries": "timeseries"}}
    (directory / "dataset_info.json").write_text(json.dumps(info, indent=2))


def shuffled(records: list[dict], seed: int) -> list[dict]:
    """Each record gets another record's series (a derangement); prompt and label kept."""
    order = list(range(len(records)))
    rng = random.Random(seed)
    while any(i == j for i, j in enumerate(order)):
        rng.shuffle(order)
    return [{**r, "timeseries": records[j]["timeseries"]} for r, j in zip(records, order)]


def train(model: Path, data: Path, out: Path, minutes: float, finetuning: str, seed: int) -> dict:
    from llamafactory.train.tuner import run_exp
    from transformers import TrainerCallback

    class WallTime(TrainerCallback):
        def __init__(self) -> None:
            self.start, self.stopped = time.monotonic(), False

        def on_train_begin(self, args, state, control, **kwargs):
            self.start = time.monotonic()  # the budget is for training, not loading and preprocessing

        def on_step_end(self, args, state, control, **kwargs):
            if time.monotonic() - self.start > minutes * 60:
                control.should_training_stop, self.stopped = True, True

    method = (
        dict(finetuning_type="full", freeze_vision_tower=False, learning_rate=1e-3)
        if finetuning == "full"
        else dict(finetuning_type="lora", lora_target="all", lora_rank=32, additional_target="ts_encoder", learning_rate=2e-3)
    )
    clock = WallTime()
    run_exp(dict(
        model_name_or_path=str(model), stage="sft", do_train=True, dataset="train", dataset_dir=str(data),
        template="chatts8b_nothink", cutoff_len=512, overwrite_cache=True, output_dir=str(out), logging_steps=5,
        save_strategy="no", overwrite_output_dir=True, report_to="none", per_device_train_batch_size=8,
        num_train_epochs=1000, lr_scheduler_type="constant_with_warmup", warmup_steps=20, max_grad_norm=1.0,
        bf16=False, seed=seed, disable_tqdm=True, timeseries_nan_guard=True, **method,
    ), callbacks=[clock])
    state = json.loads((out / "trainer_state.json").read_text())
    losses = [e["loss"] for e in state["log_history"] if "loss" in e] or [float("nan")]
    return {"steps": state["global_step"], "epochs": round(state["epoch"], 2), "first_logged_loss": losses[0],
            "last_logged_loss": losses[-1], "stopped_by_time": clock.stopped, "seconds": round(time.monotonic() - clock.start)}


def predict(model: Path, adapter: Path | None, data: Path, dataset: str, out: Path) -> Path:
    from llamafactory.train.tuner import run_exp

    extra = {"adapter_name_or_path": str(adapter), "finetuning_type": "lora"} if adapter else {"finetuning_type": "full"}
    run_exp(dict(
        model_name_or_path=str(model), stage="sft", do_predict=True, predict_with_generate=True, eval_dataset=dataset,
        dataset_dir=str(data), template="chatts8b_nothink", cutoff_len=512, overwrite_cache=True, output_dir=str(out),
        overwrite_output_dir=True, report_to="none", per_device_eval_batch_size=16, max_new_tokens=96,  # answers are ~60 tokens
        do_sample=False, bf16=False, disable_tqdm=True, **extra,
    ))
    return out / "generated_predictions.jsonl"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--records", type=int, default=400, help="training records (400)")
    p.add_argument("--held-out", type=int, default=60, help="held-out records scored (60)")
    p.add_argument("--minutes", type=float, default=8.0, help="training wall time (8)")
    p.add_argument("--preset", default="tiny", help="init-model preset (tiny)")
    p.add_argument("--finetuning", choices=("full", "lora"), default="full")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--keep", type=Path, default=None, help="work directory to keep (default: a temporary one)")
    args = p.parse_args(argv)

    import torch

    from tsplugin.eval.anomaly import format_scores, score_file
    from tsplugin.build.init_model import build_model

    if args.threads:
        torch.set_num_threads(args.threads)
    work = args.keep or Path(tempfile.mkdtemp(prefix="gdsh_learning_"))
    work.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    records = [make_record(rng) for _ in range(args.records + args.held_out)]
    held = records[args.records:]
    data = work / "data"
    data.mkdir(exist_ok=True)
    write_dataset(data, {"train": records[: args.records], "heldout": held, "heldout_shuffled": shuffled(held, args.seed)})

    model = build_model(work / "model", arch="qwen3ts", preset=args.preset, seed=args.seed)
    run = train(model, data, work / "trained", args.minutes, args.finetuning, args.seed)
    trained, adapter = (work / "trained", None) if args.finetuning == "full" else (model, work / "trained")
    results = {}
    for name in ("heldout", "heldout_shuffled"):
        results[name] = score_file(predict(trained, adapter, data, name, work / f"predict_{name}"))

    print(f"\n== training: {json.dumps(run)}  (work dir {work})")
    for name, scores in results.items():
        print(f"\n== {name} ({'series as recorded' if name == 'heldout' else 'series shuffled between records'})")
        print(format_scores(scores))
    a, b = results["heldout"], results["heldout_shuffled"]
    print("\n== gap (with series - shuffled series)")
    for metric in ("valid_share", "f1", "accuracy", "type_accuracy", "mean_span_iou"):
        print(f"{metric:<14} {getattr(a, metric):.3f} - {getattr(b, metric):.3f} = {getattr(a, metric) - getattr(b, metric):+.3f}")
    summary = {"training": run, **{k: v.to_dict() for k, v in results.items()}}
    (work / "gdsh_learning.json").write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
