"""`TimeLLMForForecasting`: Time-LLM as its authors built it, trained by stock `llamafactory-cli train`.

Per series (channels are independent: a multivariate record is S univariate rows, never mixed):
1. the last `seq_len` points, RevIN-normalised (non-affine, per series);
2. a text prompt (dataset description, task, min/max/median/trend/top-k lags of the normalised window,
   `prompt.py`), embedded with the LLM's own word embeddings;
3. patches (16 every 8) -> Conv1d embedding -> reprogramming cross-attention to text prototypes
   (`ts_encoder`, `layers.py`);
4. [prompt ; patches] through the LLM's decoder (frozen, or LoRA-adapted); the hidden states at the
   patch positions, first `d_ff` channels, flattened through a linear head to `pred_len` (`ts_head`);
5. de-normalised with the window's RevIN statistics.
Training loss = MSE between step 5 and `forecast_target` (the target window on the data's own scale,
i.e. the converter's z-scored values); it is the loss this model returns, so LLaMA-Factory's trainer
optimises it unchanged. `accepts_loss_kwargs = False`: the loss is a per-micro-batch mean, so the
trainer divides by gradient accumulation itself.

Layout: `language_model.*` (the stock Qwen2/Qwen3 causal LM, so LoRA, 4-bit, export and merge see
ordinary layers; its lm_head is never used), `ts_encoder.*`, `ts_head.*`.

Inputs (LLaMA-Factory's collator, through the `timeseries` plugin): `timeseries` (S, T, 2) raw values
+ mask (series of all rows, in order), `timeseries_rows` (S,) the batch row of each series,
`forecast_target` (N, pred_len), `forecast_series` (N,) index into the S series, `forecast_names`
(N names). `input_ids` (the record's chat text) are not read: Time-LLM's LLM sees only its own prompt.

`generate` returns `input_ids` followed by the forecast written as text (one target: `v1, v2, ...`;
several: one `NAME: v1, ...` line each, the `tsconvert forecast` answer format), so LLaMA-Factory's
`do_predict` writes the head's numbers into generated_predictions.jsonl. It lives in
`ForecastGenerationMixin`: LLaMA-Factory's `patch_model` replaces a model's `generate` unless its
qualified name contains "GenerationMixin" (llamafactory/model/patcher.py, 0.9.5).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING
from transformers.utils import ModelOutput

from tsplugin.models.timellm.configuration_timellm import TimeLLMConfig
from tsplugin.models.timellm.layers import (
    FlattenHead,
    TimeLLMEncoder,
    num_patches,
    revin_denormalize,
    revin_normalize,
)
from tsplugin.models.timellm.prompt import prompt_texts, tokenize_left_padded

ANSWER_DECIMALS = 4


@dataclass
class ForecastOutput(ModelOutput):
    """`loss`: MSE against `forecast_target` (when given); `forecast`: (S, pred_len) on the data scale."""

    loss: torch.FloatTensor | None = None
    forecast: torch.FloatTensor | None = None


def format_answer(values: list[list[float]], names: list[str]) -> str:
    """The `tsconvert forecast` answer format: bare numbers for one series, `NAME: ...` lines for several."""
    rows = [", ".join(f"{v:.{ANSWER_DECIMALS}f}" for v in row) for row in values]
    if len(rows) == 1:
        return rows[0]
    return "\n".join(f"{name}: {row}" for name, row in zip(names, rows))


class TimeLLMPreTrainedModel(PreTrainedModel):
    config_class = TimeLLMConfig
    base_model_prefix = ""
    supports_gradient_checkpointing = True
    _no_split_modules = ["Qwen2DecoderLayer", "Qwen3DecoderLayer", "Qwen2MoeDecoderLayer", "Qwen3MoeDecoderLayer"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_attention_backend = True

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        # The decoder initialises itself (its own _init_weights); the new layers get torch's defaults, as the
        # authors' code, and the patch convolution Kaiming-normal (fan_in, leaky_relu), as their TokenEmbedding.
        if isinstance(module, nn.Conv1d):
            nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="leaky_relu")
        elif isinstance(module, nn.Linear):
            module.reset_parameters()


class ForecastGenerationMixin(GenerationMixin):
    """`generate` = forecast, written as the answer text (see the module docstring for the name)."""

    @torch.no_grad()
    def generate(self, input_ids: torch.LongTensor | None = None, attention_mask: torch.Tensor | None = None,
                 timeseries: torch.Tensor | None = None, timeseries_rows: torch.Tensor | None = None,
                 forecast_series: torch.Tensor | None = None, forecast_names: list[str] | None = None,
                 **kwargs: Any) -> torch.LongTensor:
        """(B, prompt + answer) token ids; generation options (max_new_tokens, do_sample, ...) do not apply."""
        if timeseries is None:
            raise ValueError("TimeLLMForForecasting.generate needs `timeseries`; it forecasts series, it does not chat")
        rows = self.forecast_rows(timeseries, timeseries_rows, forecast_series, forecast_names,
                                  n_rows=input_ids.shape[0] if input_ids is not None else None)
        tok = self.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        answers = [tok(text, add_special_tokens=False)["input_ids"] + ([tok.eos_token_id] if tok.eos_token_id is not None else [])
                   for text in rows]
        width = max(len(a) for a in answers)
        out = torch.full((len(answers), width), int(pad), dtype=torch.long)
        for i, a in enumerate(answers):
            out[i, : len(a)] = torch.tensor(a, dtype=torch.long)
        if input_ids is None:
            return out
        return torch.cat([input_ids, out.to(input_ids.device)], dim=1)


class TimeLLMForForecasting(ForecastGenerationMixin, TimeLLMPreTrainedModel):
    """model_type `timellm`: forward(timeseries, forecast_target, ...) -> ForecastOutput(loss, forecast)."""

    config_class = TimeLLMConfig
    accepts_loss_kwargs = False

    def __init__(self, config: TimeLLMConfig):
        super().__init__(config)
        if not isinstance(config.forecast, dict):
            raise ValueError("TimeLLMForForecasting needs a config with a `forecast` block; write one with "
                             "`tsplugin build-forecaster`")
        block = config.forecast
        lm_class = MODEL_FOR_CAUSAL_LM_MAPPING[type(config.text_config)]
        self.language_model = lm_class(config.text_config)
        vocab_rows = int(block["prototype_vocab"] or config.text_config.vocab_size)
        self.ts_encoder = TimeLLMEncoder(block, int(config.text_config.hidden_size), vocab_rows)
        self.patch_nums = num_patches(block["seq_len"], block["patch_len"], block["stride"])
        self.ts_head = FlattenHead(block["d_ff"], self.patch_nums, block["pred_len"], block["dropout"])
        object.__setattr__(self, "_tokenizer", None)  # a reference, never a submodule
        self.post_init()

    # --- LLM plumbing ------------------------------------------------------------------------
    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.language_model.get_output_embeddings()

    def set_output_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_output_embeddings(value)

    def get_decoder(self) -> nn.Module:
        return self.language_model.get_decoder()

    # --- the prompt's tokenizer --------------------------------------------------------------
    def bind_tokenizer(self, tokenizer: Any) -> None:
        """The tokenizer of the prompts and answers (LLaMA-Factory's load_model hook binds its own)."""
        object.__setattr__(self, "_tokenizer", tokenizer)

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            path = getattr(self.config, "_name_or_path", "") or ""
            if os.path.isfile(os.path.join(path, "tokenizer_config.json")):
                from transformers import AutoTokenizer

                self.bind_tokenizer(AutoTokenizer.from_pretrained(path))
            else:
                raise RuntimeError("TimeLLMForForecasting has no tokenizer for its prompts: call "
                                   "model.bind_tokenizer(AutoTokenizer.from_pretrained(MODEL_DIR))")
        return self._tokenizer

    # --- forecasting -----------------------------------------------------------------------------
    def windows(self, timeseries: torch.Tensor) -> torch.Tensor:
        """(S, T, 2) [value, mask] -> (S, seq_len): each series' last seq_len real points."""
        seq_len = self.config.forecast["seq_len"]
        lengths = (timeseries[..., 1] > 0).sum(dim=1)  # (S,)
        short = (lengths < seq_len).nonzero().flatten().tolist()
        if short:
            raise ValueError(f"series {short[:5]} have {lengths[short[:5]].tolist()} points but this Time-LLM model reads "
                             f"windows of seq_len={seq_len}; convert with `tsconvert forecast --seq-len {seq_len}`")
        idx = (lengths - seq_len).unsqueeze(1) + torch.arange(seq_len, device=timeseries.device)  # (S, seq_len)
        return timeseries[..., 0].float().gather(1, idx)

    def forecast(self, timeseries: torch.Tensor) -> torch.Tensor:
        """(S, T, 2) -> (S, pred_len) on the scale of the input values."""
        block = self.config.forecast
        embed = self.get_input_embeddings()
        dtype = torch.promote_types(torch.float32, embed.weight.dtype)  # RevIN and the loss never in half precision
        x = self.windows(torch.as_tensor(timeseries).to(embed.weight.device)).to(dtype)
        normed, mean, std = revin_normalize(x)  # (S, seq_len), (S, 1), (S, 1)
        texts = prompt_texts(normed, block["description"], block["seq_len"], block["pred_len"], block["top_k_lags"])
        prompt_ids, prompt_mask = tokenize_left_padded(self.tokenizer, texts, x.device)  # (S, Lp)
        prompt_emb = embed(prompt_ids)  # (S, Lp, d_llm)
        enc_dtype = self.ts_encoder.reprogramming.query.weight.dtype
        patches = self.ts_encoder(normed.to(enc_dtype), embed.weight)  # (S, P, d_llm)
        inputs = torch.cat([prompt_emb, patches.to(prompt_emb.dtype)], dim=1)  # (S, Lp + P, d_llm)
        mask = torch.cat([prompt_mask, prompt_mask.new_ones((x.shape[0], self.patch_nums))], dim=1)
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)  # left padding: real tokens count from 0
        hidden = self.get_decoder()(inputs_embeds=inputs, attention_mask=mask, position_ids=positions,
                                    use_cache=False).last_hidden_state  # (S, Lp + P, d_llm)
        at_patches = hidden[:, -self.patch_nums:, : block["d_ff"]]  # (S, P, d_ff)
        head_dtype = self.ts_head.linear.weight.dtype
        out = self.ts_head(at_patches.to(head_dtype)).to(dtype)  # (S, pred_len), normalised scale
        return revin_denormalize(out, mean, std)

    def forward(self, input_ids: torch.LongTensor | None = None, attention_mask: torch.Tensor | None = None,
                timeseries: torch.Tensor | None = None, timeseries_rows: torch.Tensor | None = None,
                forecast_target: torch.Tensor | None = None, forecast_series: torch.Tensor | None = None,
                forecast_names: list[str] | None = None, labels: torch.LongTensor | None = None,
                **kwargs: Any) -> ForecastOutput:
        """Forecast every series; with `forecast_target`, loss = MSE(forecast[forecast_series], forecast_target)."""
        if timeseries is None or timeseries.shape[0] == 0:
            raise ValueError("TimeLLMForForecasting got a batch without series; every record needs its input series "
                             "(`timeseries` column) and, to train, a `forecast_target` column (`tsconvert forecast` writes both)")
        pred = self.forecast(timeseries)
        loss = None
        if forecast_target is not None:
            target = forecast_target.to(pred.device, pred.dtype)
            series = forecast_series.to(pred.device) if forecast_series is not None else torch.arange(pred.shape[0], device=pred.device)
            if target.shape[-1] != pred.shape[-1] or target.shape[0] != series.shape[0]:
                raise ValueError(f"forecast_target has shape {tuple(target.shape)} for {series.shape[0]} series but this "
                                 f"model forecasts pred_len={pred.shape[-1]} steps; convert with `--pred-len {pred.shape[-1]}`")
            loss = torch.mean((pred[series] - target) ** 2)
        elif self.training:
            raise ValueError("TimeLLMForForecasting trains on `forecast_target`, which this batch lacks: map "
                             "`\"forecast_target\": \"forecast_target\"` in dataset_info.json (`tsconvert forecast` writes it)")
        return ForecastOutput(loss=loss, forecast=pred)

    def forecast_rows(self, timeseries: torch.Tensor, timeseries_rows: torch.Tensor | None = None,
                      forecast_series: torch.Tensor | None = None, forecast_names: list[str] | None = None,
                      n_rows: int | None = None) -> list[str]:
        """The answer text of each batch row: its targets (`forecast_series`/`forecast_names`) or, without
        targets, every series of the row (named `series K`)."""
        pred = self.forecast(timeseries).tolist()
        s = len(pred)
        rows = timeseries_rows.tolist() if timeseries_rows is not None else list(range(s))
        n_rows = n_rows if n_rows is not None else (max(rows) + 1 if rows else 0)
        wanted: list[list[tuple[int, str]]] = [[] for _ in range(n_rows)]
        if forecast_series is not None and len(forecast_series):
            names = list(forecast_names or [f"series {int(k)}" for k in forecast_series.tolist()])
            for k, name in zip(forecast_series.tolist(), names):
                wanted[rows[k]].append((k, name))
        else:
            for k in range(s):
                wanted[rows[k]].append((k, f"series {len(wanted[rows[k]])}"))
        return [format_answer([pred[k] for k, _ in row], [n for _, n in row]) for row in wanted]


__all__ = ["ForecastGenerationMixin", "ForecastOutput", "TimeLLMForForecasting", "TimeLLMPreTrainedModel", "format_answer"]
