"""Forecast quality of a small model trained on CPU for a bounded time, next to naive baselines.

The whole forecasting path on a real series shipped inside statsmodels (Mauna Loa weekly CO2,
1958-2001, 2284 weeks with gaps; no download): CSV -> `tsconvert forecast` (seq 96 -> pred 24, train
z-scoring) -> a randomly initialised small model trained with LLaMA-Factory in-process for `--minutes`
-> `do_predict` with greedy generation on evenly spaced test windows -> `tsplugin eval forecast` ->
model vs naive vs seasonal-naive MSE/MAE and the ratios.

Models (`--model`): `timellm` (default) = a tiny random Qwen2 + Time-LLM's reprogramming encoder as a
`qwen_ts` model (`tsplugin build-model --encoder timellm`, context 96, patches of 16 every 8); `chatts` /
`qwen3ts` = the ChatTS architectures of `tsplugin init-model`.

Design choices: full fine-tuning with encoder and projector trained (`freeze_vision_tower: false`,
`freeze_multi_modal_projector: false`): a random model has nothing for LoRA to adapt; a callback stops
training at the time budget (LLaMA-Factory has no such option); training uses every train window (stride 1), prediction an evenly spaced subset of
the test windows (a second converter run with --max-windows-per-split, same train statistics).

    pip install -e '.[bench]'
    python bench/forecast_quality.py --minutes 8
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
for _k, _v in (("HF_HUB_OFFLINE", "1"), ("HF_DATASETS_OFFLINE", "1"), ("TOKENIZERS_PARALLELISM", "false"), ("WANDB_DISABLED", "true")):
    os.environ.setdefault(_k, _v)

# statsmodels dataset -> (loader, value column, season in points)
DATASETS = {
    "co2": ("statsmodels.datasets.co2", "co2", 52),
    "sunspots": ("statsmodels.datasets.sunspots", "SUNACTIVITY", 11),
}


def write_csv(dataset: str, path: Path) -> tuple[int, int]:
    """The statsmodels series as `date,VALUE` (missing weeks left empty: the converter interpolates them)."""
    import importlib

    module, column, season = DATASETS[dataset]
    data = importlib.import_module(module).load_pandas().data
    if dataset == "sunspots":
        dates = [f"{int(y)}-01-01" for y in data["YEAR"]]
    else:
        dates = [d.strftime("%Y-%m-%d") for d in data.index]
    values = data[column].tolist()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        f.write(f"date,{column}\n")
        for d, v in zip(dates, values):
            f.write(f"{d},{'' if v != v else repr(float(v))}\n")
    return len(values), season


def time_limit_callback(minutes: float):
    from transformers import TrainerCallback

    class TimeLimit(TrainerCallback):
        """Stop training once the wall-clock budget is spent (checked after every step)."""

        def __init__(self) -> None:
            self.start = time.monotonic()
            self.steps = 0

        def on_train_begin(self, args, state, control, **kwargs):
            self.start = time.monotonic()  # after model loading and preprocessing

        def on_step_end(self, args, state, control, **kwargs):
            self.steps = state.global_step
            if time.monotonic() - self.start > minutes * 60:
                control.should_training_stop = True
            return control

    return TimeLimit()


def make_model(args: argparse.Namespace, out: Path) -> Path:
    """A random model of the chosen kind, built locally (no download)."""
    from tsplugin.init_model import PRESETS, build_model

    if args.model != "timellm":
        return build_model(out / "model", arch=args.model, preset=args.preset, seed=args.seed)
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from tsplugin.build_model import build_qwen_ts
    from tsplugin.tokenizer_build import build_tokenizer

    tokenizer = build_tokenizer(ts_tokens=False)
    config = Qwen2Config(vocab_size=len(tokenizer), tie_word_embeddings=False, bos_token_id=None, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, **PRESETS[args.preset])
    torch.manual_seed(args.seed)
    Qwen2ForCausalLM(config).save_pretrained(out / "base")
    tokenizer.save_pretrained(out / "base")
    flags = {"context_window": args.seq_len, "patch_len": 16, "stride": 8, "d_model": 32, "num_heads": 4}
    return build_qwen_ts(out / "base", out / "model", encoder="timellm", flags=flags, seed=args.seed)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=8.0, help="training budget in minutes (default: 8)")
    p.add_argument("--dataset", choices=sorted(DATASETS), default="co2", help="statsmodels series (default: co2)")
    p.add_argument("--seq-len", type=int, default=96)
    p.add_argument("--pred-len", type=int, default=24)
    p.add_argument("--precision", type=int, default=2, help="decimals in the answers (default: 2)")
    p.add_argument("--test-windows", type=int, default=48, help="evenly spaced test windows to predict (default: 48)")
    p.add_argument("--model", choices=["timellm", "chatts", "qwen3ts"], default="timellm",
                   help="timellm: tiny Qwen2 + Time-LLM reprogramming encoder (qwen_ts); chatts/qwen3ts: ChatTS architectures")
    p.add_argument("--preset", default="tiny", help="tsplugin init-model preset (default: tiny)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "bench_forecast")
    args = p.parse_args(argv)

    from converters.forecast import ForecastOptions, convert_forecast
    from tsplugin.eval_forecast import evaluate_forecast, format_report
    out = args.out
    t0 = time.monotonic()
    n_rows, season = write_csv(args.dataset, out / f"{args.dataset}.csv")
    common = dict(csv=out / f"{args.dataset}.csv", seq_len=args.seq_len, pred_len=args.pred_len, out_dir=out / "data",
                  target=None, precision=args.precision)
    train_report = convert_forecast(ForecastOptions(name=args.dataset, **common))
    convert_forecast(ForecastOptions(name=f"{args.dataset}_eval", max_windows_per_split=args.test_windows, **common))
    print(f"data: {args.dataset} ({n_rows} rows), {args.seq_len} -> {args.pred_len}, train windows "
          f"{train_report['windows']['train']['written']}, test windows predicted {args.test_windows} of "
          f"{train_report['windows']['test']['available']}")

    model_dir = make_model(args, out)
    template = {"timellm": "qwen_ts", "chatts": "chatts", "qwen3ts": "chatts8b_nothink"}[args.model]
    from llamafactory.train.tuner import run_exp

    base = dict(stage="sft", template=template, dataset_dir=str(out / "data"), cutoff_len=1024, overwrite_cache=True,
                report_to="none", bf16=False, seed=args.seed, disable_tqdm=True, overwrite_output_dir=True)
    limit = time_limit_callback(args.minutes)
    train_start = time.monotonic()
    run_exp(dict(base, model_name_or_path=str(model_dir), do_train=True, finetuning_type="full", freeze_vision_tower=False, freeze_multi_modal_projector=False,
                 dataset=f"{args.dataset}_train", output_dir=str(out / "trained"), per_device_train_batch_size=args.batch_size,
                 learning_rate=args.lr, lr_scheduler_type="constant_with_warmup", warmup_steps=20, max_steps=1_000_000,
                 logging_steps=10, save_strategy="no", max_grad_norm=1.0), callbacks=[limit])
    train_s = time.monotonic() - train_start
    logs = [json.loads(line) for line in (out / "trained" / "trainer_log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in logs if "loss" in r]
    print(f"trained {limit.steps} steps in {train_s / 60:.1f} min, loss {losses[0]:.3f} -> {losses[-1]:.3f}" if losses else
          f"trained {limit.steps} steps in {train_s / 60:.1f} min")

    predict_start = time.monotonic()
    run_exp(dict(base, model_name_or_path=str(out / "trained"), do_predict=True, predict_with_generate=True,
                 finetuning_type="full", eval_dataset=f"{args.dataset}_eval_test", output_dir=str(out / "predict"),
                 per_device_eval_batch_size=16, do_sample=False, max_new_tokens=args.pred_len * (args.precision + 6) + 16))
    print(f"predicted {args.test_windows} windows in {(time.monotonic() - predict_start) / 60:.1f} min")

    report = evaluate_forecast(out / "predict" / "generated_predictions.jsonl", out / "data" / f"{args.dataset}_eval_test.jsonl",
                               season=season)
    (out / "eval.json").write_text(json.dumps(report, indent=2) + "\n")
    print(format_report(report))
    n = report["normalized"]
    ratio = n["ratio_vs_naive"]["mse"]
    print(f"\nRESULT {args.dataset} {args.seq_len}->{args.pred_len}, {args.preset} {args.model} model, {args.minutes:g} min CPU training: "
          f"test MSE (normalised) model {_f(n['model']['mse'])} vs naive {_f(n['naive']['mse'])} vs seasonal-naive "
          f"{_f(n['seasonal_naive']['mse'])}; model/naive MSE ratio {_f(ratio)}, MAE ratio {_f(n['ratio_vs_naive']['mae'])}; "
          f"unparseable {report['unparseable_share']:.1%}; total {(time.monotonic() - t0) / 60:.1f} min")
    return 0


def _f(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4g}"


if __name__ == "__main__":
    sys.exit(main())
