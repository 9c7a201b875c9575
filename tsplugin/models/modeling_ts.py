"""The shared time-series causal-LM mixin: `ts_encoder`, the `timeseries` input, the splice, past length.

Every chat architecture (ChatTS-14B/8B in `tsplugin.models.chatts`, `qwen_ts`) is a stock causal LM plus
this mixin.

Design choices:
- Subclass the stock `Qwen2ForCausalLM` / `Qwen3ForCausalLM`, so `model.*` and `lm_head.weight`
  keep their names and all decoder features (SDPA, gradient checkpointing, caches, PEFT) are upstream's.
- The prompt already holds one `<ts>` token per patch (see `tsplugin.processing`). The forward
  embeds the tokens, overwrites the `<ts>` positions with the encoder's patch embeddings, in order,
  and calls the parent forward with `inputs_embeds`. Sequence length never changes, so labels,
  attention masks, position ids and padding side all behave exactly as for text.
- `timeseries` is consumed by the prefill step only: decode steps never see it.
"""

from __future__ import annotations

from typing import Any

import torch

from tsplugin.models.chunked_loss import forward_with_chunked_loss, loss_chunk_size
from tsplugin.models.placeholder_ids import expand_pairs, is_unexpanded, padding_side_of, positions_from_mask
from tsplugin.models.encoders.ts_embedding import TimeSeriesEmbedding
from tsplugin.processing.positions import positions_formula
from tsplugin.processing.profiles import CONFIG_KEY, get_profile, resolve_profile


def past_length(past_key_values: Any) -> int:
    """Number of cached positions (0 when there is no cache yet)."""
    if past_key_values is None:
        return 0
    if hasattr(past_key_values, "get_seq_length"):
        return int(past_key_values.get_seq_length())
    try:  # legacy tuple-of-tuples cache (transformers 4.x)
        return int(past_key_values[0][0].shape[-2])
    except (IndexError, TypeError):
        return 0


def scatter_ts_features(
    input_ids: torch.LongTensor,
    inputs_embeds: torch.Tensor,
    features: torch.Tensor,
    ts_token_id: int,
    n_series: int,
    rule: str,
) -> torch.Tensor:
    """`inputs_embeds` with the `<ts>` positions of `input_ids` replaced by `features` rows, in order.

    `rule` says how many positions a series costs (for the error when the counts differ).
    """
    ts_positions = input_ids == ts_token_id  # (B, L)
    n_tokens, n_patches = int(ts_positions.sum()), int(features.shape[0])
    if n_tokens != n_patches:
        raise ValueError(
            f"the batch has {n_tokens} <ts> positions but {n_patches} patch embeddings from "
            f"{n_series} series: each placeholder must be expanded to {rule} <ts> tokens (tsplugin.processing."
            "expand_placeholders), and the prompt must not be truncated inside a series"
        )
    mask = ts_positions.unsqueeze(-1).to(inputs_embeds.device)  # (B, L, 1), broadcast over hidden
    return inputs_embeds.masked_scatter(mask, features.to(inputs_embeds.device, inputs_embeds.dtype))


def build_ts_encoder(config: Any, owner: str) -> tuple[TimeSeriesEmbedding, str]:
    """The `ts_encoder` a chat model's config describes, and why its profile was chosen.

    The profile (`resolve_profile`) gives the last-patch padding and the layer-norm default; it is
    written back as `config.ts_profile`, so every save (checkpoint, export) names the profile it was
    built with. Shared by the transformers classes (`TimeSeriesCausalLMMixin`) and the vLLM ones
    (`tsplugin.vllm`). `owner`: the class building it, for the error.
    """
    if not isinstance(getattr(config, "ts", None), dict):
        raise ValueError(f"{owner} needs a config with a `ts` dict (the encoder block)")
    profile, reason = resolve_profile(config.to_dict())
    setattr(config, CONFIG_KEY, profile.name)
    ts = {"use_layer_norm": profile.layer_norm, **config.ts}
    return TimeSeriesEmbedding(ts, last_patch_padding=profile.last_patch_padding), reason


class TimeSeriesCausalLMMixin:
    """Adds `ts_encoder` and the `timeseries` input to a decoder-only causal LM."""

    # In training, a batch without series still runs the encoder on one dummy patch (times zero), so
    # every rank uses the same parameters: DDP without find_unused_parameters and ZeRO-3 need that.
    keep_ts_encoder_in_graph = True
    # > 0: training loss computed this many supervised positions at a time (tsplugin.models.chunked_loss).
    loss_chunk_size = 0

    config: Any
    ts_encoder: TimeSeriesEmbedding

    def _add_ts_encoder(self) -> None:
        self.ts_encoder, self.ts_profile_reason = build_ts_encoder(self.config, type(self).__name__)

    def use_profile(self, profile: Any) -> None:
        """Encode with another profile (a recipe's `timeseries_profile`): last-patch padding now, config on save."""
        profile = get_profile(profile)
        self.ts_encoder.last_patch_padding = profile.last_patch_padding
        setattr(self.config, CONFIG_KEY, profile.name)
        self.ts_profile_reason = f"set to {profile.name}"

    def post_init(self) -> None:
        # The parent __init__ calls post_init before `ts_encoder` exists: run it once, afterwards.
        if "ts_encoder" not in self._modules:
            return
        super().post_init()

    def _ts_token_id(self) -> int:
        token_id = getattr(self.config, "ts_token_start_index", None)
        if token_id is None:
            raise ValueError(
                "config.ts_token_start_index is not set: it must be the id of the <ts> token in this "
                "model's tokenizer (tsplugin init-model writes it)"
            )
        return int(token_id)

    def embed_timeseries(
        self, input_ids: torch.LongTensor, inputs_embeds: torch.Tensor, timeseries: torch.Tensor
    ) -> torch.Tensor:
        """Return `inputs_embeds` with every `<ts>` position replaced by the next patch embedding."""
        features, _ = self.ts_encoder(timeseries)  # (P, hidden)
        rule = positions_formula(self.config.ts)
        return scatter_ts_features(input_ids, inputs_embeds, features, self._ts_token_id(), timeseries.shape[0], rule)

    def _dummy_encoder_term(self, like: torch.Tensor) -> torch.Tensor:
        """0 * encoder(one constant patch): adds nothing, but puts every encoder parameter in the graph."""
        dummy = torch.zeros((1, self.config.ts["patch_size"], 2), device=like.device)
        dummy[..., 1] = 1.0  # one full patch of zeros, all points valid
        features, _ = self.ts_encoder(dummy)
        return features.sum().to(like.dtype) * 0.0

    def merge_ts_inputs(
        self,
        input_ids: torch.LongTensor | None,
        inputs_embeds: torch.Tensor | None,
        timeseries: torch.Tensor | None,
        past_key_values: Any,
    ) -> tuple[torch.LongTensor | None, torch.Tensor | None]:
        """(input_ids, inputs_embeds) for the decoder: series merged at prefill, ids kept otherwise."""
        if timeseries is not None and not torch.is_tensor(timeseries):
            timeseries = torch.as_tensor(timeseries, dtype=torch.float32)
        has_series = timeseries is not None and timeseries.shape[0] > 0
        if input_ids is not None and (has_series or past_length(past_key_values) == 0):
            if has_series:
                if inputs_embeds is None:
                    inputs_embeds = self.get_input_embeddings()(input_ids)
                inputs_embeds = self.embed_timeseries(input_ids, inputs_embeds, timeseries)
                input_ids = None
            elif inputs_embeds is None and bool((input_ids == self._ts_token_id()).any()):
                raise ValueError(
                    f"input_ids hold {int((input_ids == self._ts_token_id()).sum())} <ts> tokens but no "
                    "`timeseries` was passed; pass timeseries=FloatTensor(S, T, 2) with the prompt's series"
                )
            elif self.keep_ts_encoder_in_graph and self.training and torch.is_grad_enabled():
                if inputs_embeds is None:
                    inputs_embeds = self.get_input_embeddings()(input_ids)
                inputs_embeds = inputs_embeds + self._dummy_encoder_term(inputs_embeds)
                input_ids = None
        return input_ids, inputs_embeds

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Any = None,
        inputs_embeds: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        timeseries: torch.Tensor | None = None,
        **kwargs: Any,
    ):
        """Causal-LM forward; `timeseries` (S, T, 2) fills the `<ts>` positions of `input_ids`.

        Prompts from ChatTS's own processors (one `<ts><ts/>` pair per series, series as (S, 2T, 1)) are
        accepted too: the pairs are expanded first (`tsplugin.models.placeholder_ids`), so the logits
        cover the expanded sequence, as ChatTS's HF code returns them.
        """
        if input_ids is not None and timeseries is not None and past_length(past_key_values) == 0:
            if is_unexpanded(input_ids, getattr(self.config, "ts_token_end_index", None)):
                input_ids, attention_mask, labels = self.expand_ts_pairs(input_ids, attention_mask, labels, timeseries)
                if position_ids is None and bool((attention_mask == 0).any()):
                    position_ids = positions_from_mask(attention_mask)
        input_ids, inputs_embeds = self.merge_ts_inputs(input_ids, inputs_embeds, timeseries, past_key_values)
        chunk = loss_chunk_size(self, labels, kwargs)
        if chunk:  # training with `timeseries_chunked_loss`: the decoder, then the loss chunk by chunk
            return forward_with_chunked_loss(
                self.get_decoder(), self.get_output_embeddings(), chunk, labels, input_ids=input_ids,
                attention_mask=attention_mask, position_ids=position_ids, past_key_values=past_key_values,
                inputs_embeds=inputs_embeds, use_cache=use_cache, **kwargs,
            )
        return self.language_model_forward(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            inputs_embeds=inputs_embeds,
            labels=labels,
            use_cache=use_cache,
            **kwargs,
        )

    def language_model_forward(self, **kwargs: Any):
        """The text model's own causal-LM forward, once series are merged (the parent class's here)."""
        return super(TimeSeriesCausalLMMixin, self).forward(**kwargs)

    def expand_ts_pairs(
        self, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None, labels: torch.LongTensor | None,
        timeseries: torch.Tensor, side: str | None = None,
    ) -> tuple[torch.LongTensor, torch.Tensor, torch.LongTensor | None]:
        """ChatTS-processor prompts (`<ts><ts/>` per series) -> one `<ts>` per patch; `side`: where to pad
        (default: the side the batch is padded on)."""
        if not torch.is_tensor(timeseries):
            timeseries = torch.as_tensor(timeseries, dtype=torch.float32)
        pad_id = self.config.pad_token_id if self.config.pad_token_id is not None else 0
        return expand_pairs(
            input_ids, attention_mask, labels, self.ts_encoder.patch_counts(timeseries), self._ts_token_id(),
            int(self.config.ts_token_end_index), int(pad_id), side or padding_side_of(attention_mask),
        )

    def generate(self, *args: Any, **kwargs: Any):
        """`GenerationMixin.generate`; also takes ChatTS-processor prompts (`<ts><ts/>` per series).

        Those are expanded and left-padded (every row of a batch then continues from its own last
        token), and the returned sequences start with the caller's own `input_ids`, as ChatTS's code
        returns them (so `outputs[0][len(inputs["input_ids"][0]):]` is the answer either way).
        """
        input_ids = kwargs.get("input_ids", kwargs.get("inputs", args[0] if args else None))
        timeseries = kwargs.get("timeseries")
        end_id = getattr(self.config, "ts_token_end_index", None)
        if not torch.is_tensor(input_ids) or timeseries is None or not is_unexpanded(input_ids, end_id):
            return super().generate(*args, **kwargs)
        args = args[1:] if args and "input_ids" not in kwargs and "inputs" not in kwargs else args
        kwargs.pop("inputs", None)
        ids, mask, _ = self.expand_ts_pairs(input_ids, kwargs.get("attention_mask"), None, timeseries, side="left")
        kwargs.update(input_ids=ids, attention_mask=mask)
        out = super().generate(*args, **kwargs)
        sequences = out if torch.is_tensor(out) else out.sequences
        prompt = input_ids.to(sequences.device).repeat_interleave(sequences.shape[0] // input_ids.shape[0], dim=0)
        restored = torch.cat([prompt, sequences[:, ids.shape[1] :]], dim=1)
        if torch.is_tensor(out):
            return restored
        out.sequences = restored
        return out

    def prepare_inputs_for_generation(self, input_ids, past_key_values=None, timeseries=None, **kwargs):
        model_inputs = super().prepare_inputs_for_generation(input_ids, past_key_values=past_key_values, **kwargs)
        # Series are merged at prefill (empty cache) and live in the KV cache afterwards. Without a
        # cache (use_cache=False) every step re-reads the whole prompt, so it needs them again.
        model_inputs["timeseries"] = timeseries if past_length(past_key_values) == 0 else None
        return model_inputs


def set_loss_chunk_size(model: Any, chunk_size: int) -> Any:
    """Turn the chunked loss on (chunk_size > 0) or off (0) for a time-series model, PEFT-wrapped or not.

    An attribute of the model object, not of its config: it is a training setting and is never saved.
    """
    if chunk_size < 0:
        raise ValueError(f"timeseries_chunked_loss must be >= 0 (0 = off), got {chunk_size}")
    get_base = getattr(model, "get_base_model", None)
    base = get_base() if callable(get_base) else model
    if not isinstance(base, TimeSeriesCausalLMMixin):
        raise ValueError(
            f"timeseries_chunked_loss works with the time-series models (model_type chatts, qwen3ts, qwen_ts); "
            f"this model is {type(base).__name__}. Remove the key, or use `enable_liger_kernel` for stock models."
        )
    base.loss_chunk_size = int(chunk_size)
    return model


__all__ = ["TimeSeriesCausalLMMixin", "build_ts_encoder", "past_length", "scatter_ts_features", "set_loss_chunk_size"]
