"""`tsplugin plan --fit`: settings that make a step fit, each with the recipe key or tsconvert option
that realises it, plus the savings LLaMA-Factory does not offer (listed, never pretended), and the
plugin options that exist but would not lower this step's peak (with the number).

Proposals are tried cheapest-in-quality first and kept only while the step still does not fit.
"""

from __future__ import annotations

from dataclasses import dataclass

from tsplugin.planner.estimate import GiB, PlanInputs, estimate
from tsplugin.planner.shapes import parameter_counts, series_positions

MIN_SERIES_POINTS = 64  # ChatTS authors: shorter series are less reliable
# Chunk proposed for `timeseries_chunked_loss`: 128 x 152064 x 12 B = 0.22 GiB, about one recomputed layer
# of a 14B step, and 128-row matmuls still keep the GPU busy.
LOSS_CHUNK = 128


@dataclass
class Proposal:
    change: str
    how: str  # the recipe key(s) / tsconvert option that realise it
    inputs: PlanInputs
    saved: float  # bytes of the total peak saved by this step


def round_cutoff(tokens: int) -> int:
    """cutoff_len for a sequence: next multiple of 128."""
    return -(-tokens // 128) * 128


def _step(props: list[Proposal], current: PlanInputs, change: str, how: str, new: PlanInputs) -> PlanInputs:
    before, after = estimate(current).total(), estimate(new).total()
    if after < before:
        props.append(Proposal(change, how, new, before - after))
        return new
    return current


def propose(p: PlanInputs) -> list[Proposal]:
    """Changes, in order, until the step fits (the list ends early when it does)."""
    props: list[Proposal] = []
    cur = p
    candidates = [
        # exact (same loss and gradients), so it comes first
        (lambda q: not q.loss_chunk, f"chunked loss, {LOSS_CHUNK} positions at a time (same loss and gradients)",
         f"timeseries_chunked_loss: {LOSS_CHUNK}", dict(loss_chunk=LOSS_CHUNK)),
        # exact too, but costs a CPU lookup + a host-to-device copy of the rows every step
        (lambda q: not q.offload_embed and q.gpus == 1, "frozen embed_tokens in CPU RAM (same numbers; rows copied per step)",
         "offload_embed_tokens: true", dict(offload_embed=True)),
        (lambda q: q.optim == "adamw_torch", "8-bit AdamW", "optim: adamw_bnb_8bit", dict(optim="adamw_bnb_8bit")),
        (lambda q: q.quant != "4", "4-bit NF4 decoder", "quantization_bit: 4  (double_quantization: true is the default)", dict(quant="4")),
        (lambda q: not q.gradient_checkpointing, "gradient checkpointing", "remove disable_gradient_checkpointing", dict(gradient_checkpointing=True)),
        (lambda q: q.batch_size > 1, "batch 1 (keep the effective batch with accumulation)",
         f"per_device_train_batch_size: 1, gradient_accumulation_steps: {16 * p.batch_size}", dict(batch_size=1)),
        (lambda q: q.lora_target == "all" or q.lora_rank > 8, "LoRA r8 on q,k,v (ChatTS's LoRA example)",
         "lora_rank: 8, lora_alpha: 16, lora_target: q_proj,k_proj,v_proj", dict(lora_target="q_proj,k_proj,v_proj", lora_rank=8)),
        (lambda q: not q.offload_checkpoints and q.gradient_checkpointing, "checkpointed hidden states in CPU RAM",
         "use_unsloth_gc: true", dict(offload_checkpoints=True)),
        # kept only if it lowers the peak: bitsandbytes dequantises the whole lm_head in each backward
        (lambda q: q.quant == "4" and not q.quantize_lm_head and parameter_counts(q.shape)["lm_head"] > 0,
         "lm_head in 4 bit", "quantize_lm_head: true", dict(quantize_lm_head=True)),
    ]
    for applies, change, how, fields in candidates:
        if estimate(cur).fits():
            return props
        if applies(cur):
            cur = _step(props, cur, change, how, cur.but(**fields))
    if estimate(cur).fits():
        return props
    if cur.series_length > MIN_SERIES_POINTS and cur.series_count:
        longest = _longest_series_that_fits(cur)
        if longest is not None:
            new = _with_cutoff(cur, series_length=longest)
            how = (f"tsconvert ... --max-length {longest} (downsamples: lttb keeps spikes; --downsample window keeps the first "
                   f"{longest}); cutoff_len: {new.cutoff_len}")
            cur = _step(props, cur, f"series of {longest} points ({series_positions(cur.shape, longest)} positions each)", how, new)
            return props
        cur = _step(props, cur, f"series of {MIN_SERIES_POINTS} points (the shortest ChatTS handles well)",
                    f"tsconvert ... --max-length {MIN_SERIES_POINTS}", _with_cutoff(cur, series_length=MIN_SERIES_POINTS))
    if not estimate(cur).fits():
        tokens = _longest_text_that_fits(cur)
        if tokens:
            cur = _step(props, cur, f"text of at most {tokens} tokens", f"cutoff_len: {round_cutoff(cur.but(text_tokens=tokens).sequence_tokens())}"
                        " (longer records are dropped with a counted warning)", _with_cutoff(cur, text_tokens=tokens))
    return props


def _with_cutoff(p: PlanInputs, **changes) -> PlanInputs:
    """`p` changed, sized at the cutoff_len the recipe would then use."""
    q = p.but(cutoff_len=None, **changes)
    return q.but(cutoff_len=round_cutoff(q.sequence_tokens()))


def _longest_series_that_fits(p: PlanInputs) -> int | None:
    lo, hi = MIN_SERIES_POINTS, p.series_length
    if not estimate(_with_cutoff(p, series_length=lo)).fits():
        return None
    while lo < hi:  # largest length that fits, in whole patches
        mid = (lo + hi + 1) // 2
        if estimate(_with_cutoff(p, series_length=mid)).fits():
            lo = mid
        else:
            hi = mid - 1
    return lo - lo % p.shape.patch_size if lo >= p.shape.patch_size else lo


def _longest_text_that_fits(p: PlanInputs) -> int:
    lo, hi = 0, p.text_tokens
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if estimate(_with_cutoff(p, text_tokens=mid)).fits():
            lo = mid
        else:
            hi = mid - 1
    return lo


def not_proposed(p: PlanInputs) -> list[tuple[str, float, str]]:
    """Plugin options that exist but do not lower this step's peak: (key, bytes it would add, why)."""
    rows = []
    if p.quant == "4" and not p.quantize_lm_head and parameter_counts(p.shape)["lm_head"]:
        before, after = estimate(p), estimate(p.but(quantize_lm_head=True))
        if after.total() >= before.total():
            saved = before.part("lm_head") + before.part("quantisation constants") - after.part("lm_head") - after.part("quantisation constants")
            rows.append(("quantize_lm_head: true", after.total() - before.total(),
                         f"saves {saved / GiB:.2f} GiB of weights, but bitsandbytes dequantises the whole lm_head to fp16 "
                         "in every backward through it, and that buffer sits on the loss peak"))
    return rows


def not_available(p: PlanInputs) -> list[tuple[str, float, str]]:
    """Savings LLaMA-Factory 0.9.5 (and this plugin) cannot realise: (what, bytes saved, why not)."""
    counts = parameter_counts(p.shape)
    c = p.compute_bytes
    rows = []
    if p.gpus > 1:
        rows.append(("embed_tokens kept off the GPU (offload_embed_tokens)", counts["embed_tokens"] * c / p.gpus,
                     "refused under DeepSpeed ZeRO-3, which partitions the embedding itself"))
    rows += [
        ("ts_encoder in 4/8 bit", counts["ts_encoder"] * (c - 0.5),
         "the plugin never quantises the encoder (it stays full precision by design)"),
    ]
    if p.gpus == 1:
        rows.append(("weights sharded over several cards (ZeRO-3 + QLoRA)", 0.0,
                     "available with 2+ cards: rerun with --gpus N (recipe chatts_zero3_offload.yaml)"))
    return rows


__all__ = ["LOSS_CHUNK", "MIN_SERIES_POINTS", "Proposal", "not_available", "not_proposed", "propose", "round_cutoff"]
