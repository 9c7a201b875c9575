"""`tsplugin inspect MODEL`: what the plugin makes of a checkpoint, before any training.

    tsplugin inspect ./ckpt --gpu-mem 2080ti
    tsplugin inspect bytedance-research/ChatTS-8B      # a Hub ID already in the HF cache

Design choices:
- Reads files only (config.json, tokenizer files, file names, safetensors headers): no torch, no model
  load, never the checkpoint's own .py files, never a download (a Hub ID is looked up in the local HF
  cache with huggingface_hub's `try_to_load_from_cache`).
- One line per fact, each saying where it came from, so a user can check it against the model card.
- The encoding profile and its reason come from `tsplugin.processing.profiles.resolve_profile`, the same call
  training and chat make; the plan line from the planner (`tsplugin plan`).
"""

from __future__ import annotations

import argparse
import os
import struct
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from tsplugin.chat import TEMPLATE_KEY, default_template
from tsplugin.checkpoints.layouts import locate
from tsplugin.planner.estimate import GiB, PlanInputs, estimate, get_gpu_memory
from tsplugin.planner.shapes import load_shape
from tsplugin.processing import TimeSeriesProcessor
from tsplugin.userfiles import UserFileError, load_json, open_regular, parse_json
from tsplugin.processing.profiles import (
    CONFIG_KEY,
    RECIPE_KEY,
    TSProfile,
    check_ts_token_ids,
    resolve_profile,
    tokenizer_file_token_ids,
)

PREFIX_SHAPES = {
    "stats": "[offset=..|scaling=..|length=..|max=..|min=..|left=..|right=..]",
    "value_offset": "[Value Offset: ..|Value Scaling: ..]",
}
MAX_CONFIG_BYTES = 16 << 20  # a config.json is kilobytes; released ones under 10 KB
MAX_SAFETENSORS_HEADER = 100_000_000  # the safetensors format's own cap on the header (N <= 100 MB)
EXAMPLE_LENGTH = 256  # series length shown in the positions line (ChatTS's typical training length)


def _read_config(directory: Path) -> dict[str, Any]:
    path = directory / "config.json"
    if not path.exists():
        raise ValueError(f"{path} not found: a checkpoint directory holds config.json")
    return load_json(path, "config.json", MAX_CONFIG_BYTES)


def _safetensors_dtypes(path: Path) -> Counter:
    """Tensor dtypes from a safetensors header (8-byte little-endian length + a JSON object); no tensor is read.
    A cut file, a length beyond the file or the format's cap, or a header that is not an object of
    `{"dtype": ...}` entries is refused by name (the file is not what its name says)."""
    fd = open_regular(path, "safetensors file")
    try:
        size = os.fstat(fd).st_size
        head = os.read(fd, 8)
        fix = ". Copy the file again or re-save it with safetensors"
        if len(head) < 8:
            raise UserFileError(f"{path}: {len(head)} bytes, too short for a safetensors file (8-byte header length first){fix}")
        (length,) = struct.unpack("<Q", head)
        if length > min(size - 8, MAX_SAFETENSORS_HEADER):
            raise UserFileError(
                f"{path}: its header length says {length} bytes but the file holds {size - 8} after it "
                f"(and safetensors caps headers at {MAX_SAFETENSORS_HEADER}): cut short or not a safetensors file{fix}"
            )
        data = bytearray()
        while len(data) < length and (chunk := os.read(fd, min(1 << 20, length - len(data)))):
            data += chunk
        header = parse_json(bytes(data), str(path), "safetensors header")
    finally:
        os.close(fd)
    if not isinstance(header, dict) or not all(isinstance(v, dict) and isinstance(v.get("dtype"), str)
                                               for k, v in header.items() if k != "__metadata__"):
        raise UserFileError(f"{path}: the safetensors header is not an object of tensors with a dtype each: not a safetensors file{fix}")
    return Counter(v["dtype"] for k, v in header.items() if k != "__metadata__")


def weights_line(directory: Path, config: dict[str, Any]) -> str:
    names = sorted(os.listdir(directory))
    safetensors = [n for n in names if n.endswith(".safetensors")]
    bins = [n for n in names if n.endswith(".bin") and n.startswith("pytorch_model")]
    index = [n for n in names if n.endswith(".index.json")]
    declared = config.get("torch_dtype") or config.get("dtype")
    if safetensors:
        dtypes: Counter = Counter()
        for name in safetensors:
            dtypes.update(_safetensors_dtypes(directory / name))
        found = ", ".join(f"{d} ({n} tensors)" for d, n in sorted(dtypes.items()))
        kind = f"{len(safetensors)} safetensors file{'s' if len(safetensors) > 1 else ''}"
        return f"{kind}{' + ' + index[0] if index else ''}; dtype {found} (read from the headers)"
    if bins:
        kind = f"{len(bins)} .bin shard{'s' if len(bins) > 1 else ''} (pickled state dicts)"
        return f"{kind}{' + ' + index[0] if index else ''}; dtype {declared or 'not stated'} (config.json torch_dtype)"
    return f"no weight files (neither *.safetensors nor pytorch_model*.bin); config.json torch_dtype {declared}"


def tokens_line(directory: Path, config: dict[str, Any]) -> tuple[str, str | None]:
    """(line, error or None): `<ts>`/`<ts/>` ids from config.json and the tokenizer files."""
    ids, source = tokenizer_file_token_ids(directory, ["<ts>", "<ts/>"])
    if source is None:
        return "tokens: no tokenizer.json or tokenizer_config.json with added tokens", (
            f"{directory}: no tokenizer files; copy the checkpoint's tokenizer files next to config.json"
        )
    try:
        start, end = check_ts_token_ids(config, ids, str(directory / "config.json"), str(directory / source))
    except ValueError as err:
        return "tokens: config.json and the tokenizer DISAGREE", str(err)
    where = "config.json ts_token_start_index/ts_token_end_index = " + source
    if config.get("ts_token_start_index") is None:
        where = f"{source} (config.json has no ts_token_start_index)"
    return f"tokens: <ts> {start}, <ts/> {end} ({where})", None


def template_line(config: dict[str, Any], profile: TSProfile) -> str:
    recorded = config.get(TEMPLATE_KEY)
    if isinstance(recorded, str) and recorded:
        return f"template: {recorded} (config.json {TEMPLATE_KEY}: the one it was trained and exported with; override with `template:`)"

    if profile.default_template:
        return f"template: {profile.default_template} (the {profile.name} profile's; override with `template:`)"
    text = config.get("text_config") if isinstance(config.get("text_config"), dict) else {}
    cfg = SimpleNamespace(model_type=config.get("model_type"), text_config=SimpleNamespace(model_type=text.get("model_type")))
    return f"template: {default_template(cfg)} (by architecture; override with `template:`)"


def encoder_line(config: dict[str, Any]) -> str:

    ts = config.get("ts") or {}
    processor = TimeSeriesProcessor.from_config(config, profile="tsfactory-v0")  # positions only
    positions = processor.num_patches(EXAMPLE_LENGTH)
    if isinstance(ts.get("encoder"), dict):
        return f"encoder: {ts['encoder'].get('name')} (ts.encoder); a {EXAMPLE_LENGTH}-point series costs {positions} <ts> positions"
    extras = ", position embedding" if ts.get("use_position_embedding") else ""
    extras += ", layer norm" if ts.get("use_layer_norm") else ""
    return (
        f"patch size: {ts.get('patch_size')} (ts.patch_size{extras}); a {EXAMPLE_LENGTH}-point series costs "
        f"{positions} <ts> positions"
    )


def code_line(directory: Path) -> str:
    code = sorted(n for n in os.listdir(directory) if n.endswith(".py"))
    if not code:
        return "shipped code: none"
    return (
        f"shipped code: {', '.join(code)}: ignored; tsplugin never imports a checkpoint's .py files "
        "(its own classes load these weights, with trust_remote_code true or false)"
    )


def padding_text(profile: TSProfile) -> str:
    fill = "the series' last value" if profile.last_patch_padding == "repeat_last" else "zeros"
    where = (
        f"; padded points take position index {profile.pad_position_index}"
        if profile.pad_position_index
        else ""
    )
    return f"last patch: filled with {fill}{where}"


def plan_line(directory: Path, gpu_mem: str, series_length: int, text_tokens: int) -> str:

    total, card = get_gpu_memory(gpu_mem)
    inputs = PlanInputs(load_shape(str(directory)), gpu_total_gib=total, series_length=series_length, text_tokens=text_tokens)
    est = estimate(inputs)
    verdict = "FITS" if est.fits() else "DOES NOT FIT"
    return (
        f"plan: `tsplugin plan --model {directory} --gpu-mem {gpu_mem} --series-length {series_length} "
        f"--text-tokens {text_tokens}` -> QLoRA 4-bit, {est.total() / GiB:.2f} of {total:.2f} GiB ({card}): {verdict}"
        + ("" if est.fits() else "; add --fit for settings that fit")
    )


def report(model: str, gpu_mem: str = "2080ti", series_length: int = 5000, text_tokens: int = 512, profile: str | None = None) -> tuple[list[str], list[str]]:
    """(lines, errors) of `tsplugin inspect`."""
    directory, found = locate(model)
    config = _read_config(directory)
    resolved, reason = resolve_profile(config, directory, profile)
    lines = [
        f"model: {directory} ({found})",
        f"architecture: {', '.join(config.get('architectures') or ['not stated'])} (model_type {config.get('model_type')})",
        f"profile: {resolved.name}: {resolved.release}",
        f"  detected from: {reason}",
        f"  set it with: `{CONFIG_KEY}` in config.json or `{RECIPE_KEY}` in the recipe",
        f"  prefix before each series: {PREFIX_SHAPES[resolved.prefix_style]}",
        f"  {padding_text(resolved)}",
    ]
    errors: list[str] = []
    line, error = tokens_line(directory, config)
    lines.append(line)
    if error:
        errors.append(error)
    lines += [encoder_line(config), template_line(config, resolved), code_line(directory), f"weights: {weights_line(directory, config)}"]
    lines.append(plan_line(directory, gpu_mem, series_length, text_tokens))
    return lines, errors


def run(args: argparse.Namespace) -> int:
    """Print the report; a checkpoint that cannot be read raises (one line from `tsplugin.cli.main`, exit 2)."""
    lines, errors = report(args.model, args.gpu_mem, args.series_length, args.text_tokens, args.profile)
    print("\n".join(lines))
    for error in errors:
        print(f"error: {error}")
    return 2 if errors else 0


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "inspect",
        help="what the plugin detects in a checkpoint: release/profile, token ids, template, code, weights, plan",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", help="checkpoint directory, or a Hub ID (ORG/NAME) already in the local HF cache")
    parser.add_argument("--gpu-mem", default="2080ti", help="card for the plan line: GiB or a name (2080ti, 3090, a100-40, a100-80) (default 2080ti)")
    parser.add_argument("--series-length", type=int, default=5000, help="points of the longest series, for the plan line (default 5000)")
    parser.add_argument("--text-tokens", type=int, default=512, help="text tokens of the longest record, for the plan line (default 512)")
    parser.add_argument("--profile", default=None, help="show the result with this profile (as `timeseries_profile` would)")
    parser.set_defaults(func=run)


__all__ = ["add_parser", "locate", "report", "run"]
