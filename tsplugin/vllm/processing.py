"""The `timeseries` modality in vLLM: data parser, processing info, dummy inputs, multimodal processor.

What a user passes: `LLM.generate({"prompt": text, "multi_modal_data": {"timeseries": [s0, s1, ...]}})`,
one 1-D series (list of numbers or numpy array) per `<ts><ts/>` placeholder of the text, in order
(a single series may be passed bare).

Design choices:
- The placeholder expands exactly as on the transformers path, through the ONE definition
  (`tsplugin.processing.TimeSeriesProcessor.expand`): the checkpoint's profile prefix, then
  ceil(L / patch) `<ts>` tokens. The text is expanded BEFORE it is tokenised, as LLaMA-Factory's plugin
  and ChatTS's processor do: tokenising around the placeholder and splicing tokens in would tokenise a
  prefix differently from the text before it (" [" is one token), and greedy outputs would differ.
- So this processor always applies the update itself (`_apply_hf_processor_main` returns
  `is_update_applied=True`) and vLLM only locates each series' `<ts>` run (`_get_prompt_updates`:
  the run is the whole replacement, every token an embedding). vLLM's per-item cache path, which
  tokenises the text without the items, is not used: encoding a series is cheap next to the decoder.
- A prompt given as token ids (`{"prompt_token_ids": [...]}`) holds `<ts>`, `<ts/>` id pairs: each pair
  becomes the tokenised prefix + the `<ts>` run (nothing else of the user's ids changes).
- A prompt given as token ids with the placeholders already expanded (no `<ts>`, `<ts/>` pair, each series'
  prefix and `<ts>` run in place: what LLaMA-Factory's `infer_backend: vllm` sends, the ids its HF engine
  would encode) is taken as it is, after checking that the `<ts>` runs are, in order, the series' lengths.
- Each item reaches the model as its (L, 2) float32 `[value, 1.0]` rows (`timeseries` field, one per
  series); the model pads them into the `(S, T, 2)` batch the encoder takes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cached_property
from numbers import Real
from typing import Any

import numpy as np
import torch
from transformers import BatchFeature

from vllm.multimodal.inputs import MultiModalFieldConfig, MultiModalKwargsItems
from vllm.multimodal.parse import MultiModalDataItems, MultiModalDataParser, ProcessorBatchItems
from vllm.multimodal.processing import (
    BaseMultiModalProcessor,
    BaseProcessingInfo,
    PromptReplacement,
    PromptUpdate,
    PromptUpdateDetails,
)
from vllm.multimodal.profiling import BaseDummyInputsBuilder

from tsplugin.processing import TimeSeriesProcessor, check_ts_token_ids

MODALITY = "timeseries"
FIELD = "timeseries"  # the model's keyword argument: one (L, 2) tensor per series
PREFIX_BUDGET = 64  # tokens a dummy series leaves for its prefix (the longest profile prefix is ~50)


class TimeSeriesItems(ProcessorBatchItems[np.ndarray]):
    """The series of one prompt, in placeholder order, each a 1-D float64 array."""

    def __init__(self, data: Sequence[np.ndarray]) -> None:
        super().__init__(list(data), MODALITY)

    def get_processor_data(self) -> Mapping[str, object]:
        return {FIELD: self.data}


def _as_series(value: Any, index: int) -> np.ndarray:
    if isinstance(value, (str, bytes, dict)):
        raise ValueError(
            f"multi_modal_data['timeseries'][{index}]: a series must be a list of numbers or a 1-D numpy array, "
            f"got {type(value).__name__}"
        )
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"multi_modal_data['timeseries'][{index}]: not a list of numbers ({err})") from None
    if array.ndim != 1:
        raise ValueError(
            f"multi_modal_data['timeseries'][{index}]: a series must be 1-D, got shape {tuple(array.shape)}; "
            "pass one 1-D series per <ts><ts/> placeholder"
        )
    return array


def parse_series(data: Any) -> list[np.ndarray]:
    """`multi_modal_data["timeseries"]` as a list of 1-D float64 arrays (a bare single series is one item)."""
    if isinstance(data, np.ndarray):
        return [_as_series(data, 0)] if data.ndim == 1 else [_as_series(row, i) for i, row in enumerate(data)]
    if isinstance(data, (list, tuple)):
        if data and all(isinstance(v, Real) and not isinstance(v, bool) for v in data):
            return [_as_series(data, 0)]  # one series given bare
        return [_as_series(item, i) for i, item in enumerate(data)]
    raise ValueError(
        f"multi_modal_data['timeseries'] must be a list of series (lists of numbers or 1-D arrays), got {type(data).__name__}"
    )


class TimeSeriesDataParser(MultiModalDataParser):
    """vLLM's parser plus the `timeseries` modality."""

    def _get_subparsers(self):
        return {**super()._get_subparsers(), MODALITY: self._parse_timeseries_data}

    def _parse_timeseries_data(self, data: Any) -> TimeSeriesItems | None:
        series = parse_series(data)
        return TimeSeriesItems(series) if series else None


class TimeSeriesProcessingInfo(BaseProcessingInfo):
    """The checkpoint's placeholder rules: tsplugin's `TimeSeriesProcessor` built from its config."""

    @cached_property
    def ts_processor(self) -> TimeSeriesProcessor:
        config = self.get_hf_config().to_dict()
        return TimeSeriesProcessor.from_config(config, model_dir=self.ctx.model_config.model)

    @cached_property
    def ts_token_ids(self) -> tuple[int, int]:
        """(`<ts>`, `<ts/>`) ids, checked against config.json (one message naming both on a mismatch)."""
        processor = self.ts_processor
        vocab = self.get_tokenizer().get_vocab()
        tokens = (processor.ts_token, processor.ts_end_token)
        return check_ts_token_ids(
            self.get_hf_config().to_dict(), {t: vocab.get(t) for t in tokens},
            config_file=f"{self.model_id}/config.json", tokenizer_file=f"{self.model_id}'s tokenizer",
            ts_token=tokens[0], ts_end_token=tokens[1],
        )

    def get_supported_mm_limits(self) -> Mapping[str, int | None]:
        return {MODALITY: None}

    def max_series_length(self, seq_len: int) -> int:
        """Points of the longest series a prompt of `seq_len` tokens can hold (and the encoder's table allows)."""
        ts = self.get_hf_config().ts
        longest = max(1, seq_len - PREFIX_BUDGET) * int(ts["patch_size"])
        if ts.get("use_position_embedding"):
            longest = min(longest, int(ts.get("max_sequence_length", 32768)))
        return longest

    def get_mm_max_tokens_per_item(self, seq_len: int, mm_counts: Mapping[str, int]) -> Mapping[str, int]:
        count = max(1, mm_counts.get(MODALITY, 1))
        length = max(1, self.max_series_length(seq_len) // count)
        return {MODALITY: self.ts_processor.num_patches(length)}


class TimeSeriesDummyInputsBuilder(BaseDummyInputsBuilder[TimeSeriesProcessingInfo]):
    """Profiling inputs: `count` placeholders, each with the longest series the context can hold."""

    def get_dummy_text(self, mm_counts: Mapping[str, int]) -> str:
        processor = self.info.ts_processor
        return (processor.ts_token + processor.ts_end_token) * mm_counts.get(MODALITY, 0)

    def get_dummy_mm_data(self, seq_len: int, mm_counts: Mapping[str, int], mm_options: Any = None):
        count = mm_counts.get(MODALITY, 0)
        length = max(1, self.info.max_series_length(seq_len) // max(1, count))
        return {MODALITY: [np.sin(np.arange(length, dtype=np.float64) / 8.0) for _ in range(count)]}


def _split_pairs(token_ids: Sequence[int], start: int, end: int) -> list[list[int]]:
    """Token ids cut at every `start, end` pair: n pairs -> n + 1 pieces."""
    pieces, current, i = [], [], 0
    while i < len(token_ids):
        if token_ids[i] == start and i + 1 < len(token_ids) and token_ids[i + 1] == end:
            pieces.append(current)
            current, i = [], i + 2
        else:
            current.append(token_ids[i])
            i += 1
    pieces.append(current)
    return pieces


class TimeSeriesMultiModalProcessor(BaseMultiModalProcessor[TimeSeriesProcessingInfo]):
    def _get_data_parser(self) -> MultiModalDataParser:
        return TimeSeriesDataParser()

    def _series(self, mm_items: MultiModalDataItems) -> list[np.ndarray]:
        return list(mm_items.get_items(MODALITY, TimeSeriesItems).data) if MODALITY in mm_items else []

    def _expand_text(self, prompt: str, series: list[np.ndarray], tokenization_kwargs: Mapping[str, object]):
        text, features = self.info.ts_processor.expand(prompt, series)
        tokenizer = self.info.get_tokenizer()
        ids = tokenizer(text, **{"add_special_tokens": True, **tokenization_kwargs})["input_ids"]
        return list(ids), features

    def _encode(self, series: list[np.ndarray]) -> list[np.ndarray]:
        out = []
        for i, values in enumerate(series):
            try:
                out.append(self.info.ts_processor.encode(values))
            except ValueError as err:
                raise ValueError(f"time series {i}: {err}") from None
        return out

    def _expanded_ids(self, prompt: list[int], series: list[np.ndarray]):
        """Token ids whose placeholders are expanded already: each series' run of `<ts>`, in order."""
        processor = self.info.ts_processor
        start, _ = self.info.ts_token_ids
        features = [feats for feats, _prefix in self._encode(series)]
        need = [processor.num_patches(len(f)) for f in features]
        at = 0
        for i, n in enumerate(need):
            first = prompt.index(start, at) if start in prompt[at:] else len(prompt)
            run = prompt[first : first + n]
            if len(run) != n or any(t != start for t in run):
                found = sum(1 for t in prompt if t == start)
                raise ValueError(
                    f"the prompt token ids hold {found} {processor.ts_token} positions where the {len(series)} time series "
                    f"need runs of {need} (series {i} has no run of {n}); expand each <ts><ts/> with the series it stands for"
                )
            at = first + n
        if start in prompt[at:]:
            raise ValueError(f"the prompt token ids hold more {processor.ts_token} positions than the {len(series)} "
                             f"time series need ({sum(need)})")
        return list(prompt), features

    def _expand_ids(self, prompt: list[int], series: list[np.ndarray]):
        processor = self.info.ts_processor
        start, end = self.info.ts_token_ids
        pieces = _split_pairs(prompt, start, end)
        if len(pieces) == 1 and series and start in prompt:  # no pair: expanded already (LLaMA-Factory's vLLM engine)
            return self._expanded_ids(prompt, series)
        if len(pieces) - 1 != len(series):
            raise ValueError(
                f"{len(pieces) - 1} <ts><ts/> placeholder(s) in the prompt token ids but {len(series)} time series; "
                "write exactly one placeholder per series, in order"
            )
        tokenizer = self.info.get_tokenizer()
        ids, features = list(pieces[0]), []
        for (feats, prefix), piece in zip(self._encode(series), pieces[1:]):
            features.append(feats)
            ids += tokenizer.encode(prefix, add_special_tokens=False) + [start] * processor.num_patches(len(feats)) + piece
        return ids, features

    def _apply_hf_processor_main(
        self,
        prompt: str | list[int],
        mm_items: MultiModalDataItems,
        hf_processor_mm_kwargs: Mapping[str, object],
        tokenization_kwargs: Mapping[str, object],
        *,
        enable_hf_prompt_update: bool,
    ) -> tuple[list[int], BatchFeature, bool]:
        series = self._series(mm_items)
        if isinstance(prompt, str):
            ids, features = self._expand_text(prompt, series, tokenization_kwargs)
        else:
            ids, features = self._expand_ids(list(prompt), series)
        data = {FIELD: [torch.from_numpy(f) for f in features]} if features else {}
        return ids, BatchFeature(data), True

    def _cached_apply_hf_processor(self, prompt, mm_data_items, hf_processor_mm_kwargs, tokenization_kwargs, *, mm_uuids=None):
        # Never the per-item cache path: it tokenises the text without its series (see the module docstring).
        return self._apply_hf_processor(
            prompt, mm_data_items, hf_processor_mm_kwargs, tokenization_kwargs, mm_uuids=mm_uuids
        )

    def _get_mm_fields_config(self, hf_inputs: BatchFeature, hf_processor_mm_kwargs: Mapping[str, object]):
        return {FIELD: MultiModalFieldConfig.batched(MODALITY)}

    def _get_prompt_updates(
        self,
        mm_items: MultiModalDataItems,
        hf_processor_mm_kwargs: Mapping[str, object],
        out_mm_kwargs: MultiModalKwargsItems,
    ) -> Sequence[PromptUpdate]:
        processor = self.info.ts_processor
        start, end = self.info.ts_token_ids
        series = self._series(mm_items)

        def run(item_idx: int) -> PromptUpdateDetails:
            n = processor.num_patches(len(series[item_idx]))
            return PromptUpdateDetails.select_token_id([start] * n, embed_token_id=start)

        return [PromptReplacement(modality=MODALITY, target=[start, end], replacement=run)]


__all__ = [
    "FIELD",
    "MODALITY",
    "TimeSeriesDataParser",
    "TimeSeriesDummyInputsBuilder",
    "TimeSeriesItems",
    "TimeSeriesMultiModalProcessor",
    "TimeSeriesProcessingInfo",
    "parse_series",
]
