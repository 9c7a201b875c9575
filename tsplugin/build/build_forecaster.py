"""`tsplugin build-forecaster`: a Time-LLM forecaster (`timellm`) from a local Qwen2/Qwen2.5/Qwen3 checkpoint.

    tsplugin build-forecaster --llm Qwen2.5-3B/ --seq-len 512 --pred-len 96 -o OUT \
        [--patch-len 16 --stride 8 --d-model 32 --d-ff 32 --num-heads 8 --num-prototypes 1000 \
         --prototype-vocab 32000 --description "..."]

What it does: adds `<ts>` / `<ts/>` to the tokenizer (the `timeseries` data plugin marks each series
with one), copies the LLM weights verbatim under `language_model`, builds the reprogramming layer
(`ts_encoder`) and the flatten head (`ts_head`) with their own initialisation, and writes config.json
+ safetensors + tokenizer. Train it with `yaml_recipes/timellm_forecast_qwen25_3b_qlora.yaml`.
"""

from __future__ import annotations

# lazy imports: a `tsplugin` sub-command: torch and the model classes load when it runs (`tsplugin --help` stays torch-free).

import argparse
import sys
from pathlib import Path
from typing import Any

from tsplugin.build.build_model import (
    add_llm_arguments,
    add_new_weights_arguments,
    check_llm_dir,
    copy_llm_weights,
    load_llm_with_ts_tokens,
)

# The integer keys of the forecast block, with their --help. The defaults named here are
# tsplugin.models.timellm.FORECAST_DEFAULTS (not imported: `tsplugin --help` stays free of transformers;
# tests/test_cli_help.py checks they agree).
INT_FLAG_HELP: dict[str, str] = {
    "seq_len": "input window, in points (default 512)",
    "pred_len": "forecast horizon, in points (default 96)",
    "patch_len": "points per patch (default 16)",
    "stride": "points between the starts of two patches (default 8)",
    "d_model": "patch embedding width, in channels (default 32)",
    "d_ff": "LLM hidden channels the head reads, also the reprogramming key width per head (default 32)",
    "num_heads": "reprogramming attention heads (default 8)",
    "num_prototypes": "text prototypes the patches are reprogrammed onto (default 1000)",
    "prototype_vocab": "word-embedding rows the prototypes mix (default None: the whole vocabulary)",
    "top_k_lags": "autocorrelation lags the prompt names (default 5)",
}
INT_FLAGS = tuple(INT_FLAG_HELP)


def build_timellm(llm: str | Path, output_dir: str | Path, forecast: dict[str, Any] | None = None, seed: int = 0,
                  dtype: str = "float32", verbose: bool = False) -> Path:
    """Write a `timellm` checkpoint (LLM weights kept, new reprogramming + head) to `output_dir`; return it."""
    from tsplugin.build.init_model import save_checkpoint
    from tsplugin.models.timellm import TimeLLMConfig, TimeLLMForForecasting

    llm, out = Path(llm), Path(output_dir)
    check_llm_dir(llm)
    tokenizer, lm, start_id, end_id = load_llm_with_ts_tokens(llm, seed)
    text_config = lm.config
    config = TimeLLMConfig(text_config=text_config.to_dict(), forecast=dict(forecast or {}),
                           ts_token_start_index=start_id, ts_token_end_index=end_id)
    model = TimeLLMForForecasting(config)
    copy_llm_weights(model, lm, llm)
    model = save_checkpoint(model, tokenizer, out, dtype, llm)
    if verbose:
        count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
        print(f"wrote TimeLLMForForecasting (model_type timellm, LLM {text_config.model_type}) to {out}")
        print(f"  parameters: LLM {count(model.language_model):,} (frozen unless LoRA), ts_encoder {count(model.ts_encoder):,}, "
              f"ts_head {count(model.ts_head):,}; forecast block {model.config.forecast}")
    return out


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("build-forecaster", help="build a Time-LLM forecaster (local Qwen + reprogramming + head)",
                                   description=__doc__.split("\n\n")[0])
    add_llm_arguments(parser)
    for flag, help_text in INT_FLAG_HELP.items():
        parser.add_argument("--" + flag.replace("_", "-"), type=int, default=None, help=f"forecast block `{flag}`: {help_text}")
    parser.add_argument("--dropout", type=float, default=None,
                        help="forecast block `dropout`: dropout probability of the patch embedding, attention and head (default 0.1)")
    parser.add_argument("--description", default=None,
                        help="forecast block `description`: the dataset description Time-LLM's prompt opens with (default 'A time series.')")
    add_new_weights_arguments(parser)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    block = {k: getattr(args, k) for k in (*INT_FLAGS, "dropout", "description") if getattr(args, k) is not None}
    try:
        build_timellm(args.llm, args.output, block, seed=args.seed, dtype=args.dtype, verbose=True)
    except (ValueError, FileNotFoundError) as err:
        print(f"tsplugin build-forecaster: {err}", file=sys.stderr)
        return 2
    return 0


__all__ = ["add_parser", "build_timellm", "run"]
