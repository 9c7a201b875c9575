"""Measure on CPU what the planner predicts, on a small real model: parameter, gradient and optimizer
bytes after one LoRA step, and activation bytes autograd saves (saved-tensor hooks).

Why: a planner nobody checked is a guess. On CPU the exactly computable parts (counts, bytes of
params/grads/optimizer state) must agree to the byte; the activation model must agree closely in
fp32 (the same per-tensor accounting the fp16 GPU estimate uses with 2-byte tensors).
Used by tests/test_plan.py and bench/plan_vs_measured.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _storage_key(t: Any) -> tuple[int, int]:
    st = t.untyped_storage()
    return st.data_ptr(), st.nbytes()


def lora_model(model_dir: str | Path, rank: int = 8, targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")):
    """The plugin's model from `model_dir` (fp32, CPU) with PEFT LoRA on the decoder linears."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    import tsplugin.models  # noqa: F401  (Auto registration)

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="sdpa")
    config = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=list(targets),
                        exclude_modules=r".*ts_encoder.*")
    return get_peft_model(model, config)


def measure_layer_activations(model: Any, seq: int, batch: int = 1) -> float:
    """Bytes autograd saves inside the decoder layers, per position per layer (parameters excluded)."""
    import torch

    base = model.get_base_model()
    layers = base.model.layers
    params = {_storage_key(p) for p in model.parameters()}
    seen: set[tuple[int, int]] = set()
    state = {"inside": False, "bytes": 0}

    def pack(t: torch.Tensor) -> torch.Tensor:
        key = _storage_key(t)
        if state["inside"] and key not in params and key not in seen:
            seen.add(key)
            state["bytes"] += key[1]
        return t

    def enter(*_: Any) -> None:
        state["inside"] = True

    def leave(*_: Any) -> None:
        state["inside"] = False

    handles = [h for layer in layers for h in (layer.register_forward_pre_hook(enter), layer.register_forward_hook(leave))]
    vocab = base.config.vocab_size
    ts_id = base.config.ts_token_start_index
    ids = torch.randint(0, min(vocab, 1000), (batch, seq))
    ids[ids == ts_id] = 0
    model.train()
    base.enable_input_require_grads()  # what LLaMA-Factory does with gradient checkpointing + LoRA
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = model(input_ids=ids, labels=ids, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    out.loss.backward()
    return state["bytes"] / (seq * batch * len(layers))


def measure_training_state(model: Any, optim: str = "adamw_torch", seq: int = 32) -> dict[str, int]:
    """Bytes of parameters (by part), trainable grads and optimizer state after one real step."""
    import torch

    if optim == "adamw_torch":
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    elif optim == "adamw_bnb_8bit":
        import bitsandbytes as bnb

        opt = bnb.optim.AdamW8bit([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    else:
        raise ValueError(f"unknown optim {optim!r}; use adamw_torch or adamw_bnb_8bit")
    vocab = model.get_base_model().config.vocab_size
    ids = torch.randint(0, min(vocab, 1000), (1, seq))
    ids[ids == model.get_base_model().config.ts_token_start_index] = 0
    model(input_ids=ids, labels=ids, use_cache=False).loss.backward()
    opt.step()

    parts = {"decoder_linears": 0, "linear_biases": 0, "embed_tokens": 0, "lm_head": 0, "norms": 0, "ts_encoder": 0, "lora": 0}
    for name, p in model.named_parameters():
        size = p.numel() * p.element_size()
        if "lora_" in name:
            parts["lora"] += size
        elif "ts_encoder" in name:
            parts["ts_encoder"] += size
        elif "embed_tokens" in name:
            parts["embed_tokens"] += size
        elif "lm_head" in name:
            parts["lm_head"] += size
        elif "norm" in name:
            parts["norms"] += size
        elif name.endswith("bias"):
            parts["linear_biases"] += size
        else:
            parts["decoder_linears"] += size
    parts["gradients"] = sum(p.grad.numel() * p.grad.element_size() for p in model.parameters() if p.grad is not None)
    states = {_storage_key(v): v for st in opt.state.values() for v in st.values() if torch.is_tensor(v) and v.dim() > 0}
    parts["optimizer_state"] = sum(key[1] for key in states)  # shared tables (bnb's qmap) counted once
    parts["lora_params"] = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
    return parts


__all__ = ["lora_model", "measure_layer_activations", "measure_training_state"]
