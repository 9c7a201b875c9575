"""Peak GPU memory of one QLoRA/LoRA training step, part by part (what `tsplugin plan` prints).

Design choices:
- Parameter, LoRA and optimizer bytes are exact arithmetic on the shapes (tsplugin.planner.shapes).
- Activations are counted tensor by tensor as autograd saves them in the Qwen2/Qwen3 decoder layers
  of transformers 5 (RMSNorm upcasts to fp32, SDPA saves q/k/v/out + logsumexp, SwiGLU saves four
  intermediate-wide tensors); `plan_measure` measures the same thing with saved-tensor hooks.
- The loss is modelled as transformers computes it: fp16 logits, an fp32 upcast, log-softmax output,
  and in backward two fp32 gradients of seq x vocab (peak 12 bytes per position x vocab in fp16); with
  `timeseries_chunked_loss: N` the same 12 bytes for N positions (one chunk, recomputed in backward).
- `quantize_lm_head`: lm_head in NF4 like the decoder linears, but bitsandbytes' backward dequantises the
  whole weight to fp16, so that buffer is added to the loss transient.
- What is not exact (allocator fragmentation, the CUDA context, bitsandbytes scratch buffers) is a
  named, separate line, so a measurement (bench/measure_memory.py) can correct it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional

from tsplugin.processing.profiles import prefix_token_estimate
from tsplugin.registry import Registry

from tsplugin.planner.shapes import ModelShape, lora_params, lora_tensor_sizes, parameter_counts, resolve_targets, series_positions

GiB = 1024**3
CUDA_CONTEXT_GIB = 0.5  # CUDA context + cuBLAS workspace, outside torch's allocator
FRAGMENTATION = 0.08  # reserved/allocated - 1 of the caching allocator, as a fraction of the peak
QUANT_BLOCK = 64  # bitsandbytes NF4 block size (one absmax per 64 weights)
DOUBLE_QUANT_BLOCK = 256  # double quantisation: absmax in 8 bit, one fp32 absmax per 256 of them
OPTIM_8BIT_BLOCK = 256  # bitsandbytes blockwise 8-bit optimizer states

# Cards by name: memory torch.cuda reports as total (GiB), a bit under the nominal size.
GPUS: Registry[tuple[float, str]] = Registry("GPU", hint="(or give GiB, e.g. 11)")


def register_gpu(name: str, total_gib: float, note: str) -> None:
    """Add a card (refuses duplicates)."""
    GPUS.register(name, (total_gib, note))


def get_gpu_memory(value: str) -> tuple[float, str]:
    """`--gpu-mem`: a card name or a number of GiB -> (total GiB, description)."""
    if value.lower() in GPUS:
        return GPUS[value.lower()]
    try:
        gib = float(value)
    except ValueError:
        raise GPUS.unknown(value, "--gpu-mem") from None
    if gib <= 0:
        raise ValueError(f"--gpu-mem must be positive, got {value}")
    return gib, f"{gib:g} GiB card"


register_gpu("2080ti", 10.75, "RTX 2080 Ti 11 GB (Turing: fp16 only, no FlashAttention-2)")
register_gpu("3090", 23.69, "RTX 3090 24 GB (Ampere)")
register_gpu("a100-40", 39.39, "A100 40 GB")
register_gpu("a100-80", 79.15, "A100 80 GB")


@dataclass(frozen=True)
class PlanInputs:
    """One training configuration: what a recipe plus the data decide."""

    shape: ModelShape
    gpu_total_gib: float = 10.75
    series_length: int = 5000
    series_count: int = 1
    text_tokens: int = 512
    cutoff_len: Optional[int] = None  # None: the sequence the series and text need
    quant: str = "4"  # "4" (NF4), "8" (LLM.int8) or "none"
    double_quant: bool = True
    lora_rank: int = 8
    lora_target: str = "all"
    batch_size: int = 1
    gradient_checkpointing: bool = True
    offload_checkpoints: bool = False  # LLaMA-Factory `use_unsloth_gc: true`
    optim: str = "adamw_bnb_8bit"
    compute_bytes: int = 2  # fp16 on Turing
    train_encoder: bool = False  # `additional_target: ts_encoder`
    gpus: int = 1  # > 1: DeepSpeed ZeRO-3 shards weights and optimizer state over the cards
    loss_chunk: int = 0  # `timeseries_chunked_loss: N`: logits of N positions at a time (0: transformers' loss)
    quantize_lm_head: bool = False  # `quantize_lm_head: true`: lm_head in NF4 (needs quant 4)
    offload_embed: bool = False  # `offload_embed_tokens: true`: frozen input embedding in CPU RAM (not with ZeRO-3)

    def __post_init__(self) -> None:
        if self.quant not in ("4", "8", "none"):
            raise ValueError(f"--quant must be 4, 8 or none, got {self.quant!r}")
        if self.optim not in OPTIMIZERS:
            raise ValueError(f"--optim {self.optim!r} unknown; choose one of {sorted(OPTIMIZERS)}")
        if self.loss_chunk < 0:
            raise ValueError(f"--chunked-loss must be >= 0 (0 = off), got {self.loss_chunk}")
        if self.offload_embed and self.gpus > 1:
            raise ValueError("--offload-embed-tokens is not supported with ZeRO-3 (--gpus > 1)")
        if self.quantize_lm_head and self.quant != "4":
            raise ValueError("--quantize-lm-head needs --quant 4 (quantize_lm_head: true needs quantization_bit: 4)")
        for name in ("series_length", "series_count", "text_tokens", "lora_rank", "batch_size", "gpus"):
            if getattr(self, name) < (0 if name in ("series_count", "series_length", "text_tokens") else 1):
                raise ValueError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        resolve_targets(self.lora_target)

    def sequence_tokens(self) -> int:
        """Decoder positions one record needs: text + per series (prefix + one `<ts>` per patch)."""
        per_series = (
            prefix_token_estimate(self.shape.profile, self.series_length) + series_positions(self.shape, self.series_length)
            if self.series_length
            else 0
        )
        return self.text_tokens + self.series_count * per_series

    def seq(self) -> int:
        """Positions the step is sized for: the cutoff when given (longer records are dropped)."""
        return self.cutoff_len if self.cutoff_len is not None else self.sequence_tokens()

    def but(self, **changes) -> "PlanInputs":
        return replace(self, **changes)


# LLaMA-Factory `optim` values the planner knows -> 8-bit states? (two Adam moments either way)
OPTIMIZERS: dict[str, bool] = {"adamw_torch": False, "adamw_bnb_8bit": True, "paged_adamw_8bit": True}
MIN_8BIT_SIZE = 4096  # bitsandbytes keeps 32-bit states for tensors smaller than this


def optimizer_state_bytes(optim: str, tensor_sizes: list[int]) -> int:
    """Adam state bytes for trainable tensors of these element counts (exact for torch and bitsandbytes)."""
    if optim not in OPTIMIZERS:
        raise ValueError(f"--optim {optim!r} unknown; choose one of {sorted(OPTIMIZERS)}")
    total = 0
    for n in tensor_sizes:
        if OPTIMIZERS[optim] and n >= MIN_8BIT_SIZE:
            total += 2 * n + 2 * 4 * (-(-n // OPTIM_8BIT_BLOCK))  # uint8 moments + fp32 absmax per block
        else:
            total += 8 * n
    if OPTIMIZERS[optim] and any(n >= MIN_8BIT_SIZE for n in tensor_sizes):
        total += 2 * 256 * 4  # the two quantisation maps bitsandbytes shares between all tensors
    return total


@dataclass
class Line:
    part: str
    bytes: float
    note: str = ""


@dataclass
class Estimate:
    """Peak memory by part; `static + activations + transient + margins`."""

    inputs: PlanInputs
    static: list[Line] = field(default_factory=list)
    activations: list[Line] = field(default_factory=list)
    transient: list[Line] = field(default_factory=list)  # only the largest one is alive at the peak
    margins: list[Line] = field(default_factory=list)

    def peak_transient(self) -> Line:
        return max(self.transient, key=lambda line: line.bytes) if self.transient else Line("none", 0.0)

    def allocated(self) -> float:
        """Peak of torch.cuda.max_memory_allocated() predicted for one step."""
        return sum(x.bytes for x in self.static + self.activations) + self.peak_transient().bytes

    def total(self) -> float:
        return self.allocated() + sum(x.bytes for x in self.margins)

    def fits(self) -> bool:
        return self.total() <= self.inputs.gpu_total_gib * GiB

    def part(self, name: str) -> float:
        return sum(x.bytes for x in self.static + self.activations + self.transient + self.margins if x.part == name)


def nf4_constant_bytes(weights: int, double_quant: bool = True) -> float:
    """bitsandbytes NF4 absmax bytes for `weights` weights (8-bit absmax + fp32 per 256 with double quant)."""
    return weights / QUANT_BLOCK * (1 + 4 / DOUBLE_QUANT_BLOCK) if double_quant else weights / QUANT_BLOCK * 4


def layer_activation_bytes(shape: ModelShape, c: int, lora_rank: int, n_targets: int, gqa_native: bool) -> float:
    """Bytes autograd saves per position in one decoder layer (no checkpointing), compute dtype of c bytes."""
    h, q, kv, inter = shape.hidden_size, shape.q_dim, shape.kv_dim, shape.intermediate_size
    # RMSNorm (frozen weight): fp32 copy of its input + rsqrt per position; its output is the next LoRA input
    norms = 2 * (4 * h + 4 + c * h)
    qk_norm = (4 * (q + kv) + 4 * (shape.num_heads + shape.num_kv_heads)) if shape.qk_norm else 0  # output feeds RoPE (saves nothing)
    k_v = 2 * c * (kv if gqa_native else q)  # SDPA's k and v (repeat_kv copies them to all heads with a mask)
    # q_rot, k, v, output (also o_proj's input: SDPA returns a transposed view), logsumexp
    attention = c * q + k_v + c * q + 4 * shape.num_heads
    mlp = 4 * c * inter  # gate out, silu out, up out, product (down_proj input)
    lora = c * lora_rank * n_targets  # lora_A outputs saved by lora_B
    return norms + qk_norm + attention + mlp + lora


def estimate(p: PlanInputs) -> Estimate:
    """The peak-memory breakdown of one training step of `p`."""
    s, c, est = p.shape, p.compute_bytes, Estimate(p)
    counts = parameter_counts(s)
    shard = float(p.gpus)  # ZeRO-3 keeps 1/N of every parameter and optimizer state on each card

    linears = counts["decoder_linears"]
    nf4_head = counts["lm_head"] if p.quantize_lm_head else 0  # quantised like the decoder linears
    if p.quant == "4":
        est.static.append(Line("decoder linears", linears / 2 / shard, "NF4, 2 weights a byte"))
        consts = nf4_constant_bytes(linears + nf4_head, p.double_quant)
        est.static.append(Line("quantisation constants", consts / shard,
                               "absmax per 64 weights, 8-bit with double quant" if p.double_quant else "fp32 absmax per 64 weights"))
    elif p.quant == "8":
        est.static.append(Line("decoder linears", linears / shard, "int8 (LLM.int8)"))
        rows = sum(o for _, o in s.linear_shapes().values()) * s.num_layers
        est.static.append(Line("quantisation constants", rows * 4 / shard, "fp32 scale per output row"))
    else:
        est.static.append(Line("decoder linears", linears * c / shard, f"{c}-byte weights"))
    est.static.append(Line("linear biases", counts["linear_biases"] * c / shard))
    if p.offload_embed:
        est.static.append(Line("embed_tokens", 0.0, f"in CPU RAM (offload_embed_tokens: true; {counts['embed_tokens'] * c / GiB:.2f} GiB there)"))
    else:
        est.static.append(Line("embed_tokens", counts["embed_tokens"] * c / shard, "kept in fp16 (not quantised)"))
    if counts["lm_head"] and nf4_head:
        est.static.append(Line("lm_head", nf4_head / 2 / shard, "NF4 (quantize_lm_head: true); its constants are counted above"))
    elif counts["lm_head"]:
        est.static.append(Line("lm_head", counts["lm_head"] * c / shard, "kept in fp16 (bitsandbytes skips lm_head)"))
    est.static.append(Line("norms", counts["norms"] * c / shard))
    enc = counts["ts_encoder"]
    est.static.append(Line("ts_encoder", enc * (4 if p.train_encoder else c) / shard,
                           "trained in fp32" if p.train_encoder else "frozen, never quantised"))

    n_lora = lora_params(s, p.lora_target, p.lora_rank)
    n_train = n_lora + (enc if p.train_encoder else 0)
    est.static.append(Line("LoRA parameters", n_lora * 4 / shard, f"{n_lora / 1e6:.1f} M, fp32 (LLaMA-Factory upcasts trainables)"))
    est.static.append(Line("gradients", n_train * 4 / shard, "fp32, kept across gradient accumulation"))
    sizes = lora_tensor_sizes(s, p.lora_target, p.lora_rank) + ([enc] if p.train_encoder else [])
    est.static.append(Line("optimizer state", optimizer_state_bytes(p.optim, sizes) / shard, p.optim))

    seq, b = p.seq(), p.batch_size
    tokens = seq * b
    n_targets = len(resolve_targets(p.lora_target))
    per_layer = layer_activation_bytes(s, c, p.lora_rank, n_targets, gqa_native=(b == 1))
    final_norm = 4 * s.hidden_size + 4 + c * s.hidden_size
    if p.gradient_checkpointing:
        kept = 0.0 if p.offload_checkpoints else tokens * s.num_layers * c * s.hidden_size
        note = "layer inputs offloaded to CPU (use_unsloth_gc)" if p.offload_checkpoints else "one hidden state per layer (gradient checkpointing)"
        est.activations.append(Line("activations (checkpoints)", kept, note))
        recompute = tokens * (per_layer + 2 * c * (s.hidden_size + s.intermediate_size))
        est.transient.append(Line("backward: one layer recomputed + its gradients", recompute))
    else:
        est.activations.append(Line("activations (all layers)", tokens * s.num_layers * per_layer, "gradient checkpointing off"))
        est.transient.append(Line("backward: gradient buffers", tokens * 2 * c * (s.hidden_size + s.intermediate_size)))
    est.activations.append(Line("final norm + embeddings out", tokens * (final_norm + 2 * c * s.hidden_size)))
    per_logit = max(c + 8, 12)
    if p.loss_chunk:  # tsplugin.models.chunked_loss: one chunk's logits alive, recomputed in backward
        rows = min(p.loss_chunk, tokens)
        loss = Line("logits + loss", rows * s.vocab_size * per_logit,
                    f"chunked: {rows} positions x vocab at a time (timeseries_chunked_loss: {p.loss_chunk}), {per_logit} B each")
    else:
        loss = Line("logits + loss", tokens * s.vocab_size * per_logit,
                    f"seq x vocab: fp16 logits, fp32 upcast, log-softmax; backward 3 x fp32 ({per_logit} B each)")
    est.transient.append(loss)
    if p.quant != "none":
        biggest = max(i * o for i, o in s.linear_shapes().values())
        for line in est.transient:  # bitsandbytes dequantises one weight to fp16 for each matmul
            line.bytes += biggest * c
        if nf4_head:  # ... and the whole lm_head, in every backward through it (MatMul4Bit.backward)
            loss.bytes += (nf4_head - biggest) * c
            loss.note += "; + the whole lm_head dequantised to fp16 in backward (bitsandbytes)"
    if p.gpus > 1:  # ZeRO-3 gathers a module's full parameters before using it
        gathered = max(counts["embed_tokens"], counts["lm_head"]) * c
        for line in est.transient:
            line.bytes += gathered
        est.activations.append(Line("ZeRO-3 gathered layers", 2 * (linears / s.num_layers) * (0.5 if p.quant == "4" else c),
                                    "current + prefetched layer"))

    alloc = est.allocated()
    est.margins.append(Line("allocator fragmentation", alloc * FRAGMENTATION, f"{FRAGMENTATION:.0%} of allocated (estimate)"))
    est.margins.append(Line("CUDA context", CUDA_CONTEXT_GIB * GiB, "outside torch's allocator (estimate)"))
    return est


__all__ = [
    "CUDA_CONTEXT_GIB", "Estimate", "GPUS", "GiB", "Line", "OPTIMIZERS", "PlanInputs",
    "estimate", "get_gpu_memory", "layer_activation_bytes", "nf4_constant_bytes", "optimizer_state_bytes", "register_gpu",
]
