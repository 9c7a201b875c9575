"""`ChatTSProcessor`: text with `<ts><ts/>` placeholders + series -> the inputs tsplugin's models take.

What `AutoProcessor.from_pretrained(MODEL)` returns for every time-series checkpoint once tsfactory is
installed (released ChatTS-14B / ChatTS-8B layouts included; their own processing_*.py is never run).
It follows the released processors' call (`processor(text=[...], timeseries=[...], padding=True,
return_tensors="pt")`, series of all prompts in one flat list, left padding by default) and encodes
exactly as training does (`tsplugin.processing.TimeSeriesProcessor`): each placeholder becomes the
prefix of the checkpoint's encoding profile plus one `<ts>` per patch, and `timeseries` is the
encoder's (S, T_max, 2) float32 tensor `[value, mask]`.
"""

from __future__ import annotations

import json
import os
from typing import Any, Sequence

from transformers import AutoTokenizer
from transformers.feature_extraction_utils import BatchFeature
from transformers.processing_utils import ProcessorMixin

from tsplugin.checkpoints.layouts import HUB_KWARGS, checkpoint_dir, forget_shipped_processor, read_config
from tsplugin.checkpoints.tokenizer_files import TOKENIZER_JSON, write_release_tokenizer_config
from tsplugin.processing import TimeSeriesProcessor, batch_series, check_ts_token_ids

PROCESSOR_CONFIG = "processor_config.json"


class ChatTSProcessor(ProcessorMixin):
    """Tokenizer + the checkpoint's series rules (patch rule, encoding profile, `<ts>` tokens)."""

    attributes = ["tokenizer"]
    tokenizer_class = "AutoTokenizer"

    def __init__(self, tokenizer: Any = None, chat_template: str | None = None, ts_rules: TimeSeriesProcessor | None = None, **kwargs: Any):
        if ts_rules is None:
            raise ValueError(
                "ChatTSProcessor needs the model's series rules: load it with AutoProcessor.from_pretrained(MODEL) "
                "or ChatTSProcessor.from_pretrained(MODEL), MODEL a time-series checkpoint"
            )
        self.ts_rules = ts_rules
        if chat_template is None and tokenizer is not None:
            chat_template = getattr(tokenizer, "chat_template", None)
        super().__init__(tokenizer, chat_template=chat_template, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *args: Any, **kwargs: Any) -> "ChatTSProcessor":
        """From a checkpoint (local dir or Hub ID). `tokenizer=` reuses a loaded tokenizer; `timeseries_profile=`
        overrides the detected encoding profile. No weights are read and no shipped code is run."""
        path = os.fspath(pretrained_model_name_or_path)
        hub = {k: v for k, v in kwargs.items() if k in HUB_KWARGS and v is not None}
        config = read_config(path, **hub)
        if config is None:
            raise ValueError(
                f"{path}: not a time-series checkpoint (its config.json has no `ts` block and no ChatTS model type); "
                "ChatTSProcessor serves ChatTS-14B / ChatTS-8B and models written by `tsplugin init-model` / `build-model`"
            )
        model_dir = checkpoint_dir(path, **hub)
        rules = TimeSeriesProcessor.from_config(config, model_dir=model_dir, profile=kwargs.get("timeseries_profile"))
        tokenizer = kwargs.get("tokenizer")
        if tokenizer is None:
            tok_kwargs = {k: kwargs[k] for k in ("use_fast", "trust_remote_code") if k in kwargs}
            tokenizer = AutoTokenizer.from_pretrained(path, **hub, **tok_kwargs)
            forget_shipped_processor(tokenizer)  # ours: what it saves never names the shipped processor
        ids = {t: tokenizer.convert_tokens_to_ids(t) for t in (rules.ts_token, rules.ts_end_token)}
        ids = {t: (i if i != tokenizer.unk_token_id else None) for t, i in ids.items()}
        where = model_dir or path
        check_ts_token_ids(config, ids, os.path.join(where, "config.json"), f"the tokenizer in {where}", rules.ts_token, rules.ts_end_token)
        return cls(tokenizer, ts_rules=rules)

    def __call__(
        self,
        text: str | Sequence[str] | None = None,
        timeseries: Sequence[Any] | None = None,
        padding: bool | str = False,
        padding_side: str = "left",
        return_tensors: str | None = None,
        **kwargs: Any,
    ) -> BatchFeature:
        """`input_ids`, `attention_mask` (+ `timeseries` when there are series) for a batch of prompts.

        `timeseries` holds the series of all prompts, in order of their placeholders (as ChatTS's processor).
        """
        if text is None:
            raise ValueError("ChatTSProcessor needs `text`: one prompt or a list of prompts with <ts><ts/> placeholders")
        texts = [text] if isinstance(text, str) else list(text)
        series = [] if timeseries is None else list(timeseries)
        counts = [self.ts_rules.count_placeholders(t) for t in texts]
        if sum(counts) != len(series):
            raise ValueError(
                f"{sum(counts)} {self.ts_rules.ts_token}{self.ts_rules.ts_end_token} placeholder(s) in the text "
                f"({', '.join(map(str, counts))} per prompt) but {len(series)} time series; pass one series per "
                "placeholder, all prompts' series in one list, in order"
            )
        expanded, features, start = [], [], 0
        for i, (prompt, n) in enumerate(zip(texts, counts)):
            try:
                prompt, feats = self.ts_rules.expand(prompt, series[start : start + n])
            except ValueError as err:
                raise ValueError(f"prompt {i}: {err}") from None
            expanded.append(prompt)
            features.extend(feats)
            start += n
        data = dict(self.tokenizer(expanded, padding=padding, padding_side=padding_side, **kwargs))
        if features:
            batch = batch_series(features)  # (S, T_max, 2) float32
            data["timeseries"] = batch if return_tensors == "pt" else batch.numpy()
        return BatchFeature(data=data, tensor_type=return_tensors)

    @property
    def model_input_names(self) -> list[str]:
        return list(dict.fromkeys(list(self.tokenizer.model_input_names) + ["timeseries"]))

    def save_pretrained(self, save_directory: str | os.PathLike, push_to_hub: bool = False, **kwargs: Any) -> list[str]:
        """The tokenizer (in the released checkpoints' form, which transformers 4.57 and 5.x both load:
        `tsplugin.checkpoints.tokenizer_files`) plus `processor_config.json` naming this class (the rules live in
        config.json)."""
        os.makedirs(save_directory, exist_ok=True)
        files = list(self.tokenizer.save_pretrained(save_directory))
        if os.path.isfile(os.path.join(save_directory, TOKENIZER_JSON)):  # a slow tokenizer saves no tokenizer.json
            write_release_tokenizer_config(save_directory)
        path = os.path.join(save_directory, PROCESSOR_CONFIG)
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"processor_class": type(self).__name__}, f, indent=2)
        return files + [path]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rules={self.ts_rules!r}, tokenizer={type(self.tokenizer).__name__})"


__all__ = ["ChatTSProcessor"]
