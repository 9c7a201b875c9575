"""The `timeseries` multimodal plugin for LLaMA-Factory templates.

LLaMA-Factory's data path knows images, videos and audios. A time-series dataset's series travel
in the audio slot (`_audios` / `audios`) from the dataset converter to the collator: the processors
and the collator pass that slot through untouched, and a template that uses this plugin takes no
audio. Each `<ts><ts/>` in a message becomes the value-preserving prefix (in the format of the
checkpoint's encoding profile, tsplugin.processing.profiles) plus one `<ts>` token per patch; `get_mm_inputs`
turns the batch's series into the `timeseries` tensor the model takes.

Forecast targets (`forecast_target` column, JSON strings in the video slot, see
`tsplugin.llamafactory.data`): a chat model ignores them (it learns the answer text); for a Time-LLM
forecaster (`processor.is_forecaster`) `get_mm_inputs` returns the RAW series (the model normalises
each one itself, RevIN), `timeseries_rows`, and `forecast_target` / `forecast_series` /
`forecast_names` (the targets of every row, indices into the batch's series).
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch
from llamafactory.data.mm_plugin import BasePlugin

from tsplugin.llamafactory.data import decode_target
from tsplugin.processing import batch_series, encode_series, expand_text
from tsplugin.processing.placeholders import TS_END_TOKEN, TS_TOKEN, check_messages, count_placeholders

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizer

# True while LLaMA-Factory tokenises an in-memory dataset whose every time-series record `data.check_aligned` has
# checked (the `_get_preprocessed_dataset` hook sets it): their placeholders need no second check here.
RECORDS_CHECKED: contextvars.ContextVar[bool] = contextvars.ContextVar("tsplugin_records_checked", default=False)


def ts_processor_of(processor: Any) -> Any:
    """The TimeSeriesProcessor LLaMA-Factory holds for this model (attached by our load_tokenizer hook)."""
    if not callable(getattr(processor, "num_patches", None)):
        raise ValueError(
            "tsplugin: no time-series processor was loaded for this model, so placeholders cannot be "
            "expanded. Use a time-series model (model_type chatts / qwen3ts / qwen_ts, e.g. one made "
            "with `tsplugin init-model`) with a time-series template."
        )
    return processor


@dataclass
class TimeSeriesPlugin(BasePlugin):
    """Expands `<ts><ts/>` placeholders and batches series for ChatTS-style models."""

    ts_token: str = "<ts>"
    ts_end_token: str = "<ts/>"

    def _validate_input(self, processor, images, videos, audios) -> None:
        if len(images) != 0 or any(not isinstance(v, str) for v in videos):
            raise ValueError(
                "This time-series template takes no images or videos. Convert image-referencing data "
                "with `tsconvert` first, or choose an image template."
            )
        for series in audios:
            if isinstance(series, (str, bytes)) or not hasattr(series, "__len__"):
                raise ValueError(
                    f"A time-series template got {type(series).__name__} where a series (list of numbers) "
                    "was expected. Map the dataset's series column with `timeseries` in dataset_info.json "
                    "(not `audios`)."
                )

    def process_messages(
        self,
        messages: list[dict[str, str]],
        images: list,
        videos: list,
        audios: list,
        processor: Any,
    ) -> list[dict[str, str]]:
        self._validate_input(processor, images, videos, audios)
        series = list(audios)
        # a record with series came from a time-series dataset, which check_aligned checked (a text-only dataset
        # merged beside it was not: its records are checked here)
        checked = bool(series) and RECORDS_CHECKED.get() and (self.ts_token, self.ts_end_token) == (TS_TOKEN, TS_END_TOKEN)
        try:  # placeholders only in user turns, none stray, one per series (tsplugin.processing.placeholders)
            if not checked:
                check_messages(messages, len(series), ts_token=self.ts_token, ts_end_token=self.ts_end_token)
        except ValueError as err:
            raise ValueError(f"{err}. In a record: {str(messages)[:300]}") from None
        if not series or not self.expand_mm_tokens:
            # expand_mm_tokens off (LLaMA-Factory's vLLM/SGLang engines, scripts/vllm_infer.py): the placeholders
            # stay for vLLM's processor (tsplugin.vllm.processing) to expand, with the series as multi_modal_data.
            return messages

        ts_processor = ts_processor_of(processor)
        messages = [dict(message) for message in messages]  # only "content" (a str) is replaced: no deep copy
        start = 0
        for message in messages:
            count = count_placeholders(message["content"], self.ts_token, self.ts_end_token)
            if not count:
                continue
            # The text only: the features are encoded once, when the collator calls get_mm_inputs.
            message["content"] = expand_text(
                message["content"], series[start : start + count], ts_processor.num_patches, self.ts_token,
                self.ts_end_token, profile=ts_processor.profile,
            )
            start += count
        return messages

    def process_token_ids(self, input_ids, labels, images, videos, audios, tokenizer, processor):
        self._validate_input(processor, images, videos, audios)
        return input_ids, labels

    def get_mm_inputs(
        self,
        images: list,
        videos: list,
        audios: list,
        imglens: list[int],
        vidlens: list[int],
        audlens: list[int],
        batch_ids: list[list[int]],
        processor: Any,
    ) -> dict[str, torch.Tensor]:
        self._validate_input(processor, images, videos, audios)
        if len(audios) == 0:
            return {}

        ts_token_id = _token_id(processor.tokenizer, self.ts_token)
        start = 0
        for row, (ids, count) in enumerate(zip(batch_ids, audlens)):
            expected = self.expected_positions(audios[start : start + count], processor)
            found = sum(1 for t in ids if t == ts_token_id)
            if found != expected:
                raise ValueError(
                    f"Batch row {row}: {found} {self.ts_token} positions but its {count} series need "
                    f"{expected} patches. The text was cut inside a series (raise cutoff_len or shorten "
                    "the series with `tsconvert --max-length`)."
                )
            start += count

        if getattr(processor, "is_forecaster", False):
            return forecaster_inputs(audios, videos, audlens, vidlens)
        features = [encode_series(s) for s in audios]
        return {"timeseries": batch_series(features)}

    def expected_positions(self, series: Sequence[Sequence[float]], processor: Any) -> int:
        """Number of `<ts>` positions the given series expand to."""
        ts_processor = ts_processor_of(processor)
        return sum(ts_processor.num_patches(len(s)) for s in series)


def forecaster_inputs(audios: list, videos: list, audlens: list[int], vidlens: list[int]) -> dict[str, Any]:
    """Raw series + targets of a batch for a Time-LLM forecaster (see the module docstring)."""
    raw = [np.stack([np.asarray(s, dtype=np.float32), np.ones(len(s), dtype=np.float32)], axis=1) for s in audios]
    rows = [row for row, count in enumerate(audlens) for _ in range(count)]
    out: dict[str, Any] = {"timeseries": batch_series(raw), "timeseries_rows": torch.tensor(rows, dtype=torch.long)}
    if not videos:
        return out
    starts = np.concatenate([[0], np.cumsum(audlens)[:-1]]).astype(int)
    target_rows = [row for row, count in enumerate(vidlens) for _ in range(count)]
    values, series, names = [], [], []
    for row, text in zip(target_rows, videos):
        target = decode_target(text)
        values.append(target["values"])
        series.append(int(starts[row]) + int(target["series"]))
        names.append(str(target["name"]))
    lengths = sorted({len(v) for v in values})
    if len(lengths) != 1:
        raise ValueError(f"a batch holds forecast targets of lengths {lengths}; a Time-LLM model forecasts one horizon. "
                         "Convert every dataset of the run with the same --pred-len")
    out.update(forecast_target=torch.tensor(values, dtype=torch.float32), forecast_series=torch.tensor(series, dtype=torch.long),
               forecast_names=names)
    return out


def _token_id(tokenizer: PreTrainedTokenizer, token: str) -> int:
    token_id = tokenizer.convert_tokens_to_ids(token)
    if token_id is None or token_id == tokenizer.unk_token_id:
        raise ValueError(
            f"The tokenizer has no {token!r} token. Build the model with `tsplugin init-model` or "
            "`tsplugin build-model`, which add the time-series tokens."
        )
    return int(token_id)
