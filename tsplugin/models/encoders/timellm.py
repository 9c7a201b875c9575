"""`timellm`: Time-LLM's reprogramming encoder (Jin et al., ICLR 2024) as a per-patch encoder.

Design choices:
- Per series: instance normalisation over its real points (mean, std = sqrt(var + 1e-5), as Time-LLM's
  non-affine RevIN; kept in `last_loc` / `last_scale` so a forecasting head can de-normalise), the
  LAST `context_window` points kept, patches of `patch_len` every `stride` after repeating the last
  value `stride` times (Time-LLM's end padding). No positional table, so a series is not padded up to
  the window: it costs `max(1, (min(L, context_window) + stride - patch_len) // stride + 1)` positions.
- Patch embedding: one Linear(patch_len -> d_model) (Time-LLM uses a width-3 circular Conv1d over
  patches; a Linear keeps each patch independent of its neighbours and of padding).
- Text prototypes: `mapping` = Linear(vocab_size -> num_prototypes) applied to the LLM's word-embedding
  matrix (V, d_llm), giving (num_prototypes, d_llm); Time-LLM uses 1000.
- Reprogramming: multi-head cross-attention, queries = patch embeddings, keys/values = prototypes,
  scaled by 1/sqrt(d_keys), softmax over prototypes, output projected to the LLM hidden size.
- The word embeddings are NOT part of this module: the model binds a callable once,
  `encoder.bind_word_embeddings(model.get_input_embeddings)`, resolved at every forward. The state dict
  therefore holds no copy of the vocabulary, PEFT wrapping (done after the build) is seen, and the
  matrix is detached: gradients reach `mapping`, the patch embedding and the attention, never the
  (frozen) word embeddings. If the embedding matrix grew (added tokens) the first `vocab_size` rows
  are the prototypes' source.

Block keys (config `ts.encoder`): `context_window`, `patch_len`, `stride`, `d_model`, `num_heads`,
`d_keys`, `num_prototypes`, `dropout`, `vocab_size` (default: the LLM config's).
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from tsplugin.models.encoders import register_encoder, series_lengths
# The block's defaults and checks and the position count are the torch-free contract's (the processor
# expands placeholders with them): tsplugin.processing.positions.
from tsplugin.processing.positions import TIMELLM_DEFAULTS, num_positions, timellm_block

EPS = 1e-5

WordEmbeddingSource = Callable[[], Any] | nn.Module | torch.Tensor


class TimeLLMEncoder(nn.Module):
    """(S, T_max, 2) [value, mask] -> (reprogrammed patches (P, d_llm), counts (S,))."""

    def __init__(self, ts_config: dict, llm_config: Any):
        super().__init__()
        block = timellm_block(ts_config)
        self.context_window, self.patch_len, self.stride = (int(block[k]) for k in ("context_window", "patch_len", "stride"))
        self.num_heads, self.d_keys = int(block["num_heads"]), int(block["d_keys"])
        d_model, n_proto = int(block["d_model"]), int(block["num_prototypes"])
        d_llm = int(getattr(llm_config, "hidden_size"))
        vocab = block["vocab_size"] or getattr(llm_config, "vocab_size", None)
        if not vocab:
            raise ValueError("timellm encoder block: the LLM config has no vocab_size; set `vocab_size` in the block")
        self.vocab_size, self.out_dim = int(vocab), d_llm
        self.patch_embedding = nn.Linear(self.patch_len, d_model)
        self.mapping = nn.Linear(self.vocab_size, n_proto)
        inner = self.num_heads * self.d_keys
        self.query = nn.Linear(d_model, inner)
        self.key = nn.Linear(d_llm, inner)
        self.value = nn.Linear(d_llm, inner)
        self.out = nn.Linear(inner, d_llm)
        self.dropout = nn.Dropout(float(block["dropout"]))
        object.__setattr__(self, "_word_source", None)  # a reference, never a submodule or buffer
        self.last_loc: torch.Tensor | None = None
        self.last_scale: torch.Tensor | None = None

    # ------------------------------------------------------------------ word embeddings
    def bind_word_embeddings(self, source: WordEmbeddingSource) -> None:
        """Where the (V, d_llm) word-embedding matrix comes from: a callable returning an embedding module
        or tensor (e.g. `model.get_input_embeddings`), a module with `.weight`, or a tensor."""
        object.__setattr__(self, "_word_source", source)

    def word_embeddings(self) -> torch.Tensor:
        """The current vocabulary matrix (vocab_size, d_llm), detached."""
        source = self._word_source
        if source is None:
            raise RuntimeError("timellm encoder has no word embeddings bound; the model must call "
                               "encoder.bind_word_embeddings(model.get_input_embeddings) after building it")
        if callable(source) and not isinstance(source, (nn.Module, torch.Tensor)):
            source = source()
        weight = source if isinstance(source, torch.Tensor) else getattr(source, "weight", None)
        if weight is None:
            raise TypeError(f"timellm word-embedding source gave {type(source).__name__}, which has no `.weight`")
        if weight.dim() != 2 or weight.shape[0] < self.vocab_size or weight.shape[1] != self.out_dim:
            raise ValueError(f"word-embedding matrix has shape {tuple(weight.shape)}; the encoder needs at least "
                             f"({self.vocab_size}, {self.out_dim}) (vocab_size, LLM hidden size)")
        return weight[: self.vocab_size].detach()

    def prototypes(self) -> torch.Tensor:
        """Text prototypes (num_prototypes, d_llm): a learned linear mix of the vocabulary."""
        words = self.word_embeddings().to(device=self.mapping.weight.device, dtype=self.mapping.weight.dtype)
        return self.mapping(words.transpose(0, 1)).transpose(0, 1)  # (V, d) -> (d, V) -> (d, n_proto) -> (n_proto, d)

    # ------------------------------------------------------------------ series -> patches
    @staticmethod
    def num_positions(length: int, ts_config: dict) -> int:
        """max(1, (min(L, context_window) + stride - patch_len) // stride + 1): the rule in tsplugin.processing.positions;
        `patches` computes the same count on the batch's tensors."""
        return num_positions({**ts_config, "name": "timellm"}, length)

    def normalise(self, timeseries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(normalised values (S, T), loc (S,), scale (S,), window start (S,), window length (S,))."""
        lengths = series_lengths(timeseries)  # (S,)
        m = lengths.clamp(max=self.context_window)
        start = lengths - m  # the last m points
        j = torch.arange(timeseries.shape[1], device=timeseries.device).unsqueeze(0)  # (1, T)
        inside = ((j >= start.unsqueeze(1)) & (j < lengths.unsqueeze(1))).to(timeseries.dtype)  # (S, T)
        values = timeseries[..., 0]
        n = m.clamp(min=1).to(values.dtype)
        loc = (values * inside).sum(1) / n
        var = (((values - loc.unsqueeze(1)) * inside) ** 2).sum(1) / n
        scale = torch.sqrt(var + EPS)
        return (values - loc.unsqueeze(1)) / scale.unsqueeze(1), loc, scale, start, m

    def patches(self, timeseries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Every patch of the batch in series order ((P, patch_len), counts (S,)); one gather, no loop."""
        normed, loc, scale, start, m = self.normalise(timeseries)
        self.last_loc, self.last_scale = loc, scale
        counts = ((m + self.stride - self.patch_len).clamp(min=0) // self.stride + 1).clamp(min=1)  # (S,)
        n_max = int(counts.max()) if counts.numel() else 0
        offs = (torch.arange(n_max, device=normed.device).unsqueeze(1) * self.stride
                + torch.arange(self.patch_len, device=normed.device).unsqueeze(0))  # (N, patch_len) inside the window
        offs = torch.minimum(offs.unsqueeze(0), (m - 1).clamp(min=0).view(-1, 1, 1))  # past the end: last value
        idx = (start.view(-1, 1, 1) + offs).flatten(1)  # (S, N * patch_len)
        values = normed.gather(1, idx).view(-1, n_max, self.patch_len)  # (S, N, patch_len)
        keep = torch.arange(n_max, device=normed.device).unsqueeze(0) < counts.unsqueeze(1)  # (S, N)
        return values[keep], counts

    # ------------------------------------------------------------------ forward
    def forward(self, timeseries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        weight = self.patch_embedding.weight
        timeseries = timeseries.to(device=weight.device, dtype=weight.dtype)
        if timeseries.shape[0] == 0:
            return weight.new_zeros((0, self.out_dim)), torch.zeros(0, dtype=torch.long, device=weight.device)
        patches, counts = self.patches(timeseries)
        queries = self.query(self.patch_embedding(patches)).view(-1, self.num_heads, self.d_keys)  # (P, H, E)
        protos = self.prototypes()
        keys = self.key(protos).view(-1, self.num_heads, self.d_keys)  # (n_proto, H, E)
        vals = self.value(protos).view(-1, self.num_heads, self.d_keys)
        scores = torch.einsum("phe,she->phs", queries, keys) / self.d_keys ** 0.5  # (P, H, n_proto)
        attn = self.dropout(torch.softmax(scores, dim=-1))
        out = torch.einsum("phs,she->phe", attn, vals).reshape(-1, self.num_heads * self.d_keys)  # (P, H*E)
        return self.out(out), counts


register_encoder("timellm", TimeLLMEncoder)

__all__ = ["TIMELLM_DEFAULTS", "TimeLLMEncoder", "timellm_block"]
