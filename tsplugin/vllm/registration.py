"""The `vllm.general_plugins` entry point `tsfactory_models`: vLLM runs `register()` in every process it
starts (engine core, workers, API server) before it reads a model.

- The architectures go to vLLM's `ModelRegistry` by qualified name (`module:Class`), so vLLM imports
  the model code only when a checkpoint names it. One row per released class name
  (`tsplugin.architectures`: `chatts` -> `Qwen2TSForCausalLM`, `qwen3ts` -> `Qwen3TSForCausalLM`).
- `import tsplugin.models` registers the configs with transformers' Auto classes, and the
  transformers hooks (`tsplugin.llamafactory.hooks`, installed by the .pth start-up file) normalise
  released config.json files: the first ChatTS-14B release (`model_type: qwen2`) loads as `chatts`,
  and `auto_map` is dropped, so a checkpoint's shipped .py files are never imported, whatever
  `trust_remote_code` says.
"""

from __future__ import annotations

# lazy imports: vLLM calls register() while it starts; torch and transformers load only then.

VLLM_MODELS = {
    "Qwen2TSForCausalLM": "tsplugin.vllm.chatts:Qwen2TSForCausalLM",
    "Qwen3TSForCausalLM": "tsplugin.vllm.qwen3ts:Qwen3TSForCausalLM",
}


def register() -> None:
    """Register tsplugin's time-series architectures with vLLM (idempotent: vLLM may call it repeatedly)."""
    from vllm import ModelRegistry

    # lazy: the Auto registrations of the configs vLLM reads through transformers
    import tsplugin.models  # noqa: F401

    supported = set(ModelRegistry.get_supported_archs())
    for architecture, target in VLLM_MODELS.items():
        if architecture not in supported:
            ModelRegistry.register_model(architecture, target)


__all__ = ["VLLM_MODELS", "register"]
