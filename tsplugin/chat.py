"""Ask a time-series model one question: a Python API and `tsplugin chat`.

Prompts are built with LLaMA-Factory's own template and the plugin's placeholder expansion, so a
question is encoded exactly as training encoded it (same chat format, same `<ts>` positions, same
value-preserving prefix in the checkpoint's encoding profile, tsplugin.processing.profiles).

    from tsplugin.chat import TimeSeriesChat
    chat = TimeSeriesChat.from_pretrained("runs/quickstart/merged", template="chatts8b_nothink")
    chat.ask("Is there an anomaly in <ts><ts/>?", [values])
    # base + LoRA adapter (merged in memory, as LLaMA-Factory's own inference does):
    TimeSeriesChat.from_pretrained("base_dir", adapter="runs/quickstart/lora")

This path is independent of LLaMA-Factory's inference engine (transformers + peft directly), so the
engine, API and CLI are tested against it: same greedy settings, same answer.
"""

from __future__ import annotations

# lazy imports: a `tsplugin` sub-command: torch and the model classes load when it runs (`tsplugin --help` stays torch-free).

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from tsplugin.architectures import ARCHITECTURES


# config.json key holding the template a model was trained with (written by `llamafactory-cli export`,
# tsplugin.llamafactory.export); `tsplugin chat`, LlamaBoard and `tsplugin inspect` use it when present.
TEMPLATE_KEY = "ts_template"


def default_template(config: Any, profile: Any = None) -> str | None:
    """The template a model of this config was trained with, unless the user says otherwise.

    The template recorded at export (config `ts_template`) first, then the encoding profile's (the
    release's), then the architecture's (`tsplugin.architectures`; a qwen_ts model's follows its
    decoder, text_config.model_type).
    """
    recorded = config.get(TEMPLATE_KEY) if isinstance(config, dict) else getattr(config, TEMPLATE_KEY, None)
    if isinstance(recorded, str) and recorded:
        return recorded
    if profile is not None and getattr(profile, "default_template", None):
        return profile.default_template
    model_type = getattr(config, "model_type", None)
    if model_type not in ARCHITECTURES:
        return None
    return ARCHITECTURES[model_type].template_for(getattr(getattr(config, "text_config", None), "model_type", None))


def check_series(series: Sequence[Sequence[float]], names: Sequence[str], ts_block: Any) -> None:
    """ValueError naming the series unless each one can go to this model: the one rule for series values
    (`tsplugin.processing.series_values`, as training and the API) and the encoder's position table."""
    from tsplugin.processing.positions import max_series_points
    from tsplugin.processing.series_values import series_problem

    limit = max_series_points(ts_block)
    for values, name in zip(series, names):
        problem = series_problem(values)
        if problem is not None:
            raise ValueError(f"{name}: {problem.message}")
        if limit is not None and len(values) > limit:
            raise ValueError(
                f"{name}: the series has {len(values)} points but this model's encoder takes at most {limit} "
                f"(its position table, ts.max_sequence_length). Downsample it (`tsconvert --max-length {limit}`)"
            )


def check_placeholders(question: str, n_series: int) -> None:
    """ValueError unless the question has no placeholder (they are appended) or one per series."""
    from tsplugin.processing import count_placeholders

    found = count_placeholders(question)
    if found and found != n_series:
        raise ValueError(f"the question has {found} <ts><ts/> placeholder(s) but {n_series} series were given. "
                         "Write one <ts><ts/> per series, in order (or none: they are appended)")


class TimeSeriesChat:
    """A loaded model + tokenizer + LLaMA-Factory template, ready to answer questions."""

    def __init__(self, model: Any, tokenizer: Any, processor: Any, template: Any) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.processor = processor
        self.template = template

    @classmethod
    def from_pretrained(
        cls,
        model_dir: str | Path,
        template: str | None = None,
        device: str = "cpu",
        dtype: str = "auto",
        profile: str | None = None,
        adapter: str | Path | None = None,
    ) -> "TimeSeriesChat":
        """Load model, tokenizer, processor and template: a merged model, or a base model plus a LoRA
        adapter directory (`adapter`); `profile` overrides the detected encoding profile."""
        import torch
        from llamafactory.data import get_template_and_fix_tokenizer
        from llamafactory.hparams import DataArguments
        from transformers import AutoModelForCausalLM, AutoTokenizer

        import tsplugin.models  # noqa: F401
        from tsplugin.checkpoints.layouts import checkpoint_dir, read_config
        from tsplugin.processing import TimeSeriesProcessor

        model_dir = str(model_dir)  # a local directory or a Hub ID in the HF cache
        config = read_config(model_dir)
        if config is None:
            raise ValueError(
                f"{model_dir}: not a time-series checkpoint (no config.json with a `ts` block and a ChatTS model type "
                "in that directory or the HF cache)"
            )
        processor = TimeSeriesProcessor.from_config(config, model_dir=checkpoint_dir(model_dir), profile=profile)
        if processor.is_forecaster:  # it reads raw series and answers with numbers only
            raise ValueError(f"{model_dir} is a Time-LLM forecaster (model_type timellm): use `tsplugin forecast --model {model_dir}`")
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        torch_dtype = dtype if dtype == "auto" else getattr(torch, dtype)
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch_dtype)
        if adapter is not None:
            from peft import PeftModel

            # Merged in memory like LLaMA-Factory's inference (`adapter_name_or_path` without training).
            model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
        model = model.to(device).eval()
        if callable(getattr(model, "use_profile", None)):
            model.use_profile(processor.profile)  # one decision for prefix and padding (directory files included)
        name = template or default_template(model.config, processor.profile)
        if name is None:
            raise ValueError(f"{model_dir}: no default template for model_type {model.config.model_type!r}; pass --template.")
        processor.tokenizer = tokenizer
        lf_template = get_template_and_fix_tokenizer(tokenizer, DataArguments(template=name))
        return cls(model, tokenizer, processor, lf_template)

    def encode(self, question: str, series: Sequence[Sequence[float]], system: str | None = None) -> dict[str, Any]:
        """Model inputs for one question (placeholders appended when the question has none)."""
        import torch

        from tsplugin.processing import count_placeholders

        check_placeholders(question, len(series))
        check_series(series, [f"series {i}" for i in range(len(series))], getattr(self.model.config, "ts", None))
        if count_placeholders(question) == 0 and series:
            question = question.rstrip() + "\n" + "\n".join("<ts><ts/>" for _ in series)
        series = [list(map(float, s)) for s in series]
        messages = [{"role": "user", "content": question}, {"role": "assistant", "content": ""}]
        plugin = self.template.mm_plugin
        messages = plugin.process_messages(messages, [], [], series, self.processor)
        prompt_ids, _ = self.template.encode_oneturn(self.tokenizer, messages, system)
        inputs = plugin.get_mm_inputs([], [], series, [0], [0], [len(series)], [prompt_ids], self.processor)
        device = self.model.device
        inputs = {k: v.to(device) for k, v in inputs.items()}
        inputs["input_ids"] = torch.tensor([prompt_ids], device=device)
        inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
        return inputs

    def ask(
        self,
        question: str,
        series: Sequence[Sequence[float]],
        system: str | None = None,
        max_new_tokens: int = 128,
        do_sample: bool = False,
    ) -> str:
        """Generate the answer to `question` about `series` (greedy by default)."""
        import torch

        inputs = self.encode(question, series, system)
        stop_ids = [self.tokenizer.eos_token_id] + self.tokenizer.convert_tokens_to_ids(self.template.stop_words)
        with torch.no_grad():
            output = self.model.generate(
                **inputs,
                max_new_tokens=max_new_tokens,
                do_sample=do_sample,
                eos_token_id=[i for i in stop_ids if i is not None],
                pad_token_id=self.tokenizer.pad_token_id,
            )
        new_tokens = output[0, inputs["input_ids"].shape[1] :]
        return self.tokenizer.decode(new_tokens, skip_special_tokens=True)


def read_csv_series(paths: Sequence[str], value_col: str = "value", time_col: str | None = "timestamp") -> list[list[float]]:
    """Series from CSV files, read and cleaned exactly as `tsconvert` does (interpolated gaps, sorted).

    Raises ValueError with tsconvert's message (file, problem, fix) when a file cannot be used.
    """
    from converters.cleaning import clean
    from converters.csvread import read_series
    from converters.errors import RejectError

    series = []
    for path in paths:
        if not os.path.lexists(path):  # anything else (a FIFO, a device, a directory) is tsconvert's to name
            raise ValueError(f"{path}: no such file")
        try:
            raw = read_series(Path(path), [value_col], time_col, str(path))
            series.extend(v.tolist() for v in clean(raw, str(path)))
        except RejectError as err:
            raise ValueError(err.reject.message) from None
    return series


def run(args: argparse.Namespace) -> int:
    """Arguments, CSVs and series are checked before the model loads (and before torch is imported); a
    problem raises ValueError, printed as one line by `tsplugin.cli.main` (exit 2)."""
    from tsplugin.checkpoints.layouts import locate, read_config

    locate(args.model)
    if args.adapter is not None and not Path(args.adapter).is_dir():
        raise ValueError(f"--adapter {args.adapter}: no such directory; pass the LoRA adapter's output_dir")
    check_placeholders(args.question, len(args.csv))
    series = read_csv_series(args.csv, args.value_col)
    config = read_config(args.model)
    if config is None:
        raise ValueError(f"{args.model}: not a time-series checkpoint (its config.json has no `ts` block and no ChatTS model type)")
    check_series(series, args.csv, config.get("ts"))
    chat = TimeSeriesChat.from_pretrained(args.model, template=args.template, device=args.device,
                                          profile=args.profile, adapter=args.adapter)
    answer = chat.ask(args.question, series, system=args.system, max_new_tokens=args.max_new_tokens)
    print(answer)
    return 0


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "chat",
        help="answer one question about one or more series with a time-series model (merged, or base + --adapter)",
        description="Answer one question about CSV series. Each --csv is one series; the question's "
        "<ts><ts/> placeholders are filled in order (appended at the end when there are none).",
    )
    parser.add_argument("question", help='the question, e.g. "Is there a spike in <ts><ts/>?"')
    parser.add_argument("--model", required=True,
                        help="model directory or a Hub ID in the HF cache (merged export, or the base model with --adapter)")
    parser.add_argument("--adapter", default=None, help="LoRA adapter directory trained on --model (LLaMA-Factory's adapter_name_or_path)")
    parser.add_argument("--csv", action="append", required=True, help="CSV file with the series (repeatable)")
    parser.add_argument("--value-col", default="value", help="value column name (default: value)")
    parser.add_argument("--template", default=None, help="LLaMA-Factory template used in training")
    parser.add_argument("--system", default=None, help="system prompt (default: the template's)")
    parser.add_argument("--profile", default=None,
                        help="encoding profile (prefix format, last-patch padding) instead of the detected one; "
                        "`tsplugin inspect MODEL` shows the detected one")
    parser.add_argument("--max-new-tokens", type=int, default=128, help="most tokens the answer may have (default 128)")
    parser.add_argument("--device", default="cpu", help="torch device to run on: cpu, cuda, cuda:1, ... (default cpu)")
    parser.set_defaults(func=run)


if __name__ == "__main__":  # `python -m tsplugin.chat ...` is `tsplugin chat ...`
    from tsplugin.cli import main

    sys.exit(main(["chat", *sys.argv[1:]]))
