"""`tsplugin plan`: will this QLoRA/LoRA step fit the card? The peak-memory breakdown, before renting a GPU.

    tsplugin plan --model chatts-14b --gpu-mem 2080ti --series-length 5000 --text-tokens 512 --fit

Parts: weights by part (decoder linears, embed_tokens, lm_head, norms, ts_encoder), quantisation
constants, LoRA parameters + gradients + optimizer state, activations (with/without gradient
checkpointing), logits/loss, CUDA context and allocator margin. `--fit` proposes settings that fit,
each with the recipe key or tsconvert option that realises it. See bench/memory.md for how the
numbers were checked (exact parts on CPU; the GPU measurement script bench/measure_memory.py).
"""

from __future__ import annotations

import argparse
from typing import Any

from tsplugin.planner.estimate import GPUS, GiB, Estimate, PlanInputs, estimate, get_gpu_memory
from tsplugin.planner.fit import not_available, not_proposed, propose, round_cutoff
from tsplugin.planner.shapes import PRESETS, load_shape, parameter_counts


def render(est: Estimate) -> str:
    """The breakdown as a fixed-width table (GiB = 2^30 bytes, as torch.cuda reports)."""
    p = est.inputs
    s = p.shape
    counts = parameter_counts(s)
    out = [
        f"model {s.name} ({s.arch}): {sum(counts.values()) / 1e9:.2f} B parameters, {s.num_layers} layers, hidden {s.hidden_size}, "
        f"vocab {s.vocab_size}, ts patch {s.patch_size}, profile {s.profile}",
        f"sequence: {p.text_tokens} text + {p.series_count} x {p.series_length}-point series = {p.sequence_tokens()} positions; "
        f"sized for {p.seq()} x batch {p.batch_size} (cutoff_len: {p.cutoff_len or round_cutoff(p.sequence_tokens())})",
        f"quant {p.quant}, LoRA r{p.lora_rank} on {p.lora_target}, {p.optim}, gradient checkpointing "
        f"{'on' if p.gradient_checkpointing else 'off'}{' (offloaded)' if p.offload_checkpoints else ''}"
        + (f", ZeRO-3 over {p.gpus} cards" if p.gpus > 1 else "")
        + (f", chunked loss {p.loss_chunk}" if p.loss_chunk else "") + (", lm_head NF4" if p.quantize_lm_head else "")
        + (", embed_tokens in CPU RAM" if p.offload_embed else ""),
        "",
        f"{'part':50s} {'GiB':>8s}  note",
    ]

    def rows(title: str, lines: list, mark: Any = None) -> None:
        out.append(f"-- {title}")
        for line in lines:
            flag = "  <- peak" if mark is line else ""
            out.append(f"  {line.part:48s} {line.bytes / GiB:8.3f}  {line.note}{flag}")

    rows("weights and training state", est.static)
    rows("activations kept through the step", est.activations)
    rows("transient (the largest is alive at the peak)", est.transient, est.peak_transient())
    rows("margins", est.margins)
    budget = p.gpu_total_gib
    total = est.total() / GiB
    out += [
        "",
        f"{'peak allocated (torch.cuda.max_memory_allocated)':50s} {est.allocated() / GiB:8.3f}",
        f"{'total with margins':50s} {total:8.3f}   card: {budget:.2f} GiB",
        f"verdict: {'FITS' if est.fits() else 'DOES NOT FIT'} ({budget - total:+.2f} GiB headroom)",
    ]
    return "\n".join(out)


def render_fit(p: PlanInputs) -> str:
    out = ["", "== --fit: proposals (in order; each keeps the previous ones)"]
    props = propose(p)
    if estimate(p).fits():
        out.append("  nothing to change: it fits as is")
    for i, prop in enumerate(props, 1):
        out.append(f"  {i}. {prop.change}: saves {prop.saved / GiB:.2f} GiB -> {estimate(prop.inputs).total() / GiB:.2f} GiB")
        out.append(f"     how: {prop.how}")
    final = props[-1].inputs if props else p
    if not estimate(final).fits():
        out.append(f"  still DOES NOT FIT after every available change ({estimate(final).total() / GiB:.2f} GiB "
                   f"on a {p.gpu_total_gib:.2f} GiB card): use a bigger card, more cards (--gpus), or the 8B model")
    elif props:
        out.append(f"  => fits with cutoff_len: {final.cutoff_len or round_cutoff(final.sequence_tokens())}")
    skipped = not_proposed(final)
    if skipped:
        out.append("")
        out.append("== available, not proposed (it would not lower this step's peak)")
        for key, added, why in skipped:
            out.append(f"  - {key}: +{added / GiB:.2f} GiB. {why}")
    out.append("")
    out.append("== not available in LLaMA-Factory 0.9.5 / this plugin (saving it would bring, and why not)")
    for what, saved, why in not_available(final):
        out.append(f"  - {what}: {saved / GiB:.2f} GiB. {why}" if saved else f"  - {what}: {why}")
    return "\n".join(out)


def inputs_from_args(args: argparse.Namespace) -> PlanInputs:
    total, _ = get_gpu_memory(str(args.gpu_mem))
    return PlanInputs(
        shape=load_shape(args.model),
        gpu_total_gib=total,
        series_length=args.series_length,
        series_count=args.series_count,
        text_tokens=args.text_tokens,
        cutoff_len=args.cutoff_len,
        quant=str(args.quant),
        lora_rank=args.lora_rank,
        lora_target=args.lora_target,
        batch_size=args.batch_size,
        gradient_checkpointing=not args.no_gradient_checkpointing,
        offload_checkpoints=args.use_unsloth_gc,
        optim=args.optim,
        train_encoder=args.train_encoder,
        gpus=args.gpus,
        loss_chunk=args.chunked_loss,
        quantize_lm_head=args.quantize_lm_head,
        offload_embed=args.offload_embed_tokens,
    )


def run(args: argparse.Namespace) -> int:
    try:
        p = inputs_from_args(args)
    except ValueError as e:
        print(f"tsplugin plan: {e}")
        return 2
    print(render(estimate(p)))
    if args.fit:
        print(render_fit(p))
    return 0 if estimate(p).fits() or args.fit else 1


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "plan", help="peak GPU memory of a QLoRA/LoRA step, part by part, and settings that fit (--fit)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", default="chatts-14b", help=f"a preset ({', '.join(PRESETS)}) or a directory with config.json (default chatts-14b)")
    parser.add_argument("--gpu-mem", default="2080ti", help=f"card memory in GiB or a card name ({', '.join(GPUS)}) (default 2080ti)")
    parser.add_argument("--series-length", type=int, default=5000, help="points of the longest series (default 5000)")
    parser.add_argument("--series-count", type=int, default=1, help="series in one record (default 1)")
    parser.add_argument("--text-tokens", type=int, default=512, help="text tokens of the longest record (default 512)")
    parser.add_argument("--cutoff-len", type=int, default=None, help="the recipe's cutoff_len (default: what series + text need)")
    parser.add_argument("--quant", choices=["4", "8", "none"], default="4", help="quantization_bit (default 4)")
    parser.add_argument("--lora-rank", type=int, default=8, help="lora_rank (default 8)")
    parser.add_argument("--lora-target", default="all", help="lora_target: `all` or a comma list (q_proj,k_proj,v_proj,...) (default all)")
    parser.add_argument("--batch-size", type=int, default=1, help="per_device_train_batch_size, in records (default 1)")
    parser.add_argument("--no-gradient-checkpointing", action="store_true", help="disable_gradient_checkpointing: true")
    parser.add_argument("--use-unsloth-gc", action="store_true", help="offload checkpointed hidden states to CPU RAM")
    parser.add_argument("--optim", default="adamw_bnb_8bit", choices=["adamw_bnb_8bit", "paged_adamw_8bit", "adamw_torch"],
                        help="optim: the optimizer whose state is counted (default adamw_bnb_8bit)")
    parser.add_argument("--train-encoder", action="store_true", help="additional_target: ts_encoder (encoder trained in fp32)")
    parser.add_argument("--gpus", type=int, default=1, help="cards sharing the model under DeepSpeed ZeRO-3 (default 1)")
    parser.add_argument("--chunked-loss", type=int, default=0, metavar="N",
                        help="timeseries_chunked_loss: N (loss N positions at a time; default 0 = transformers' loss)")
    parser.add_argument("--quantize-lm-head", action="store_true", help="quantize_lm_head: true (lm_head in NF4; needs --quant 4)")
    parser.add_argument("--offload-embed-tokens", action="store_true", help="offload_embed_tokens: true (frozen embedding in CPU RAM)")
    parser.add_argument("--fit", action="store_true", help="propose settings that fit, with the keys that realise them")
    parser.set_defaults(func=run)


__all__ = ["add_parser", "inputs_from_args", "render", "render_fit", "run"]
