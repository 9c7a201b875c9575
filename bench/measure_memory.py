"""Measure the true peak GPU memory of one QLoRA step of ChatTS-14B / ChatTS-8B, with no download.

Builds a random-initialised model with the real shapes (tsplugin.planner.shapes presets) directly on the
GPU in 4-bit NF4 (double quantisation, fp16 storage, as LLaMA-Factory's BitsAndBytesConfig), the
ts_encoder/embeddings/lm_head/norms in fp16, LoRA as LLaMA-Factory sets it up (fp32 adapters,
gradient checkpointing with reentrant checkpoints, input grads), then runs two optimizer steps
(the second holds the optimizer state) on one record: text + one series. Prints
torch.cuda.max_memory_allocated/reserved next to `tsplugin plan` for the same settings, and the ratio.

    python bench/measure_memory.py --model chatts-14b --series-length 5000 --text-tokens 512 --lora-target q_proj,k_proj,v_proj
    python bench/measure_memory.py --model chatts-8b --series-length 5000 --text-tokens 512 --lora-target all
    # the single-card 2080 Ti recipe (chatts_qlora_2080ti.yaml): chunked loss + embed_tokens in CPU RAM
    python bench/measure_memory.py --model chatts-14b --lora-target q_proj,k_proj,v_proj --chunked-loss 128 --offload-embed-tokens
    # add --quantize-lm-head to measure lm_head in NF4 (the planner says it costs more at this peak)

On a machine without CUDA it exits with status 2 and says so.
"""

from __future__ import annotations

import argparse
import sys


def build_4bit_model(preset: str, seed: int = 0, device: str = "cuda", shape=None, quantize_lm_head: bool = False):
    """The ChatTS model with real shapes on `device`: decoder linears NF4, everything else fp16, random weights.
    (`shape` overrides the preset: a CPU dry run of this code uses a tiny one.)"""
    import bitsandbytes as bnb
    import torch
    from torch import nn

    from tsplugin.models import get_architecture
    from tsplugin.planner.shapes import get_preset

    shape = shape or get_preset(preset)
    config_cls, model_cls = get_architecture(shape.arch)
    extra = {"head_dim": shape.head_dim} if shape.arch == "qwen3ts" else {}
    config = config_cls(
        hidden_size=shape.hidden_size, num_hidden_layers=shape.num_layers, num_attention_heads=shape.num_heads,
        num_key_value_heads=shape.num_kv_heads, intermediate_size=shape.intermediate_size, vocab_size=shape.vocab_size,
        tie_word_embeddings=False, max_position_embeddings=32768, ts=dict(shape.ts, hidden_size=shape.hidden_size),
        ts_token_start_index=shape.vocab_size - 400, ts_token_end_index=shape.vocab_size - 399, use_cache=False, **extra,
    )
    config._attn_implementation = "sdpa"
    torch.manual_seed(seed)
    with torch.device("meta"):
        model = model_cls(config)
    targets = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    parents = [(parent, name) for layer in model.model.layers for parent in (layer.self_attn, layer.mlp)
               for name in targets if hasattr(parent, name)]
    if quantize_lm_head:  # `quantize_lm_head: true`: lm_head in NF4 like the decoder linears
        parents.append((model, "lm_head"))
    for parent, name in parents:
        child = getattr(parent, name)
        if not isinstance(child, nn.Linear):
            continue
        q = bnb.nn.Linear4bit(child.in_features, child.out_features, bias=child.bias is not None,
                              compute_dtype=torch.float16, compress_statistics=True, quant_type="nf4",
                              quant_storage=torch.float16, device="meta")
        data = torch.empty(child.out_features, child.in_features, dtype=torch.float16, device=device).normal_(0, 0.02)
        q.weight = bnb.nn.Params4bit(data, requires_grad=False, compress_statistics=True, quant_type="nf4",
                                     quant_storage=torch.float16).to(device)
        if child.bias is not None:
            q.bias = nn.Parameter(torch.zeros(child.out_features, dtype=torch.float16, device=device), requires_grad=False)
        setattr(parent, name, q)
    for module in model.modules():  # everything still on meta: fp16 on cuda
        for name, p in list(module._parameters.items()):
            if p is not None and p.is_meta:
                fill = torch.ones if "norm" in name or isinstance(module, nn.modules.normalization.LayerNorm) else None
                t = fill(p.shape, dtype=torch.float16, device=device) if fill else torch.empty(p.shape, dtype=torch.float16, device=device).normal_(0, 0.02)
                module._parameters[name] = nn.Parameter(t, requires_grad=False)
    for module in model.modules():
        if "norm" in type(module).__name__.lower() and hasattr(module, "weight") and module.weight is not None:
            module.weight.data.fill_(1.0)
    model.model.rotary_emb = type(model.model.rotary_emb)(config=config, device=device)
    model.is_loaded_in_4bit = True
    return model, shape


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="chatts-14b", choices=["chatts-14b", "chatts-14b-0801", "chatts-8b"])
    parser.add_argument("--series-length", type=int, default=5000)
    parser.add_argument("--text-tokens", type=int, default=512)
    parser.add_argument("--answer-tokens", type=int, default=64, help="positions with a label (the rest is prompt)")
    parser.add_argument("--lora-rank", type=int, default=8)
    parser.add_argument("--lora-target", default="all")
    parser.add_argument("--chunked-loss", type=int, default=0, metavar="N", help="timeseries_chunked_loss: N (0 = transformers' loss)")
    parser.add_argument("--offload-embed-tokens", action="store_true", help="offload_embed_tokens: true (embedding in CPU RAM)")
    parser.add_argument("--quantize-lm-head", action="store_true", help="quantize_lm_head: true (lm_head in NF4)")
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available():
        print("bench/measure_memory.py: no CUDA device here; this measurement needs an NVIDIA GPU "
              "(run it on the card you plan for). Planner numbers: tsplugin plan --model "
              f"{args.model} --series-length {args.series_length} --text-tokens {args.text_tokens}")
        return 2

    import bitsandbytes as bnb
    from peft import LoraConfig, get_peft_model

    from tsplugin.planner.estimate import GiB, PlanInputs, estimate
    from tsplugin.planner.shapes import resolve_targets, series_positions
    from tsplugin.processing import batch_series, encode_series

    device = torch.cuda.get_device_properties(0)
    model, shape = build_4bit_model(args.model, quantize_lm_head=args.quantize_lm_head)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
    model.enable_input_require_grads()
    lora = LoraConfig(r=args.lora_rank, lora_alpha=2 * args.lora_rank, lora_dropout=0.0,
                      target_modules=list(resolve_targets(args.lora_target)), exclude_modules=r".*ts_encoder.*")
    model = get_peft_model(model, lora)
    for p in model.parameters():
        if p.requires_grad:
            p.data = p.data.float()  # LLaMA-Factory upcasts trainable parameters to fp32
    model.train()
    if args.chunked_loss:
        from tsplugin.models.modeling_ts import set_loss_chunk_size

        set_loss_chunk_size(model, args.chunked_loss)
    if args.offload_embed_tokens:
        from tsplugin.models.cpu_embedding import offload_input_embedding

        offload_input_embedding(model)
    loaded = torch.cuda.memory_allocated()

    n_ts = series_positions(shape, args.series_length)
    seq = args.text_tokens + 26 + n_ts
    ids = torch.randint(0, shape.vocab_size - 1000, (1, seq), device=device)
    ids[0, args.text_tokens // 2 + 26: args.text_tokens // 2 + 26 + n_ts] = model.config.ts_token_start_index
    labels = torch.full_like(ids, -100)
    labels[0, -args.answer_tokens:] = ids[0, -args.answer_tokens:]
    features = encode_series(torch.randn(args.series_length).numpy())  # (L, 2): sp-encoded value, mask
    timeseries = batch_series([features]).to("cuda")  # (1, L, 2)

    opt = bnb.optim.AdamW8bit([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    scaler = torch.amp.GradScaler("cuda")
    torch.cuda.reset_peak_memory_stats()
    for _ in range(2):
        with torch.autocast("cuda", dtype=torch.float16):
            loss = model(input_ids=ids, labels=labels, timeseries=timeseries).loss
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 0.3)
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    allocated, reserved = torch.cuda.max_memory_allocated(), torch.cuda.max_memory_reserved()
    free, total = torch.cuda.mem_get_info()

    plan = estimate(PlanInputs(shape, gpu_total_gib=device.total_memory / GiB, series_length=args.series_length,
                               text_tokens=args.text_tokens, lora_rank=args.lora_rank, lora_target=args.lora_target,
                               loss_chunk=args.chunked_loss, offload_embed=args.offload_embed_tokens,
                               quantize_lm_head=args.quantize_lm_head))
    print(f"device: {device.name}, {device.total_memory / GiB:.2f} GiB; {args.model}, {seq} positions "
          f"({args.text_tokens} text + 26 prefix + {n_ts} series), LoRA r{args.lora_rank} on {args.lora_target}; "
          f"chunked loss {args.chunked_loss or 'off'}, embed_tokens {'CPU' if args.offload_embed_tokens else 'GPU'}, "
          f"lm_head {'NF4' if args.quantize_lm_head else 'fp16'}")
    print(f"after load (weights + LoRA): {loaded / GiB:.3f} GiB")
    print(f"max_memory_allocated: {allocated / GiB:.3f} GiB   planner: {plan.allocated() / GiB:.3f} GiB   "
          f"planner/measured: {plan.allocated() / allocated:.3f}")
    print(f"max_memory_reserved:  {reserved / GiB:.3f} GiB   planner (with fragmentation): "
          f"{(plan.allocated() + plan.part('allocator fragmentation')) / GiB:.3f} GiB")
    print(f"device memory in use (incl. CUDA context): {(total - free) / GiB:.3f} GiB   planner total: {plan.total() / GiB:.3f} GiB")
    print(f"loss {loss.item():.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
