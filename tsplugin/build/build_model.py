"""`tsplugin build-model`: a ready `qwen_ts` model dir from a local Qwen2/Qwen2.5/Qwen3 checkpoint.

    tsplugin build-model --llm Qwen3-8B/ --encoder patchtst [--encoder-ckpt PATH] --projector mlp2x_gelu -o OUT

What it does: adds `<ts>` / `<ts/>` to the LLM's tokenizer and resizes the embeddings when needed,
copies the LLM weights verbatim under `language_model`, builds the encoder named in the registry and a
freshly initialised projector (Xavier-normal, as ChatTS-Training recommends for new layers), and
writes config.json + safetensors + tokenizer + generation_config.

`--encoder-ckpt` (patchtst): a transformers PatchTST directory (`PatchTSTModel` or
`PatchTSTForPrediction` `save_pretrained`; its config decides the geometry) or an original-repository
`checkpoint.pth` (geometry from the weights plus `--context-window` / `--stride` / `--num-heads`, or
the checkpoint's setting directory name). Other encoders: a state dict (.safetensors / .pt) of the
encoder module. No download ever happens: every path is local.
"""

from __future__ import annotations

# lazy imports: a `tsplugin` sub-command: torch and the model classes load when it runs (`tsplugin --help` stays torch-free).

import argparse
import json
import sys
from pathlib import Path
from typing import Any

# CLI flag -> key of each encoder's block (flags an encoder does not use are rejected when given).
ENCODER_FLAGS: dict[str, dict[str, str]] = {
    "chatts_mlp": {"patch_len": "patch_size", "num_layers": "num_layers", "d_model": "hidden_size"},
    "patchtst": {k: k for k in ("context_window", "patch_len", "stride", "d_model", "num_layers", "num_heads", "ffn_dim")},
    "timellm": {k: k for k in ("context_window", "patch_len", "stride", "d_model", "num_heads")},
}
DEFAULT_BLOCKS: dict[str, dict[str, Any]] = {
    "chatts_mlp": {"patch_size": 8, "num_layers": 2},
    "patchtst": {"context_window": 512, "patch_len": 16, "stride": 8, "d_model": 128, "num_layers": 3, "num_heads": 4, "ffn_dim": 256},
    "timellm": {},
}
LLM_MODEL_TYPES = ("qwen2", "qwen2_moe", "qwen3", "qwen3_moe")


def check_llm_dir(llm: Path) -> None:
    """Fail before anything is built unless `llm` is a local Qwen2/Qwen2.5/Qwen3 checkpoint directory."""
    from transformers import AutoConfig

    if not (llm / "config.json").is_file():
        raise FileNotFoundError(f"--llm {llm}: no config.json there; pass a local Qwen2/Qwen2.5/Qwen3 checkpoint directory")
    llm_config = AutoConfig.from_pretrained(llm)
    if llm_config.model_type not in LLM_MODEL_TYPES:
        raise ValueError(f"--llm {llm}: model_type {llm_config.model_type!r} is not supported; expected one of {list(LLM_MODEL_TYPES)}")


def load_llm_with_ts_tokens(llm: Path, seed: int) -> tuple[Any, Any, int, int]:
    """(tokenizer with `<ts>`/`<ts/>` added, the LLM in float32 with its embeddings resized to it, `<ts>` id,
    `<ts/>` id). The LLM's config loses `architectures`, `_name_or_path` and `auto_map`: it becomes the
    `text_config` of a composite model, which must not point back at another class or code."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tsplugin.build.tokenizer import add_ts_tokens

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(llm)
    start_id, end_id = add_ts_tokens(tokenizer)
    lm = AutoModelForCausalLM.from_pretrained(llm, dtype=torch.float32)
    if len(tokenizer) > lm.get_input_embeddings().weight.shape[0]:
        lm.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=64)
    for key in ("architectures", "_name_or_path", "auto_map"):
        if hasattr(lm.config, key):
            setattr(lm.config, key, None)
    return tokenizer, lm, start_id, end_id


def copy_llm_weights(model: Any, lm: Any, llm: Path) -> None:
    """The LLM's weights, verbatim, into `model.language_model` (a tied lm_head may be absent)."""
    missing, unexpected = model.language_model.load_state_dict(lm.state_dict(), strict=False)
    tied = {"lm_head.weight"} if getattr(lm.config, "tie_word_embeddings", False) else set()
    if unexpected or set(missing) - tied:
        raise ValueError(f"--llm {llm}: weights do not fit {type(model.language_model).__name__}: missing {missing}, unexpected {unexpected}")
    model.language_model.tie_weights()


def encoder_block(encoder: str, flags: dict[str, Any], params: dict[str, Any] | None = None) -> dict[str, Any]:
    """The `ts.encoder` block from CLI-style flags (None = not given) and free `--encoder-param`s."""
    from tsplugin.models.encoders import get_encoder

    get_encoder(encoder)  # unknown names list the registered ones
    mapping = ENCODER_FLAGS.get(encoder, {})
    given = {k: v for k, v in flags.items() if v is not None}
    unused = sorted(set(given) - set(mapping))
    if unused:
        raise ValueError(f"--encoder {encoder} does not take {['--' + k.replace('_', '-') for k in unused]}; "
                         f"it takes {['--' + k.replace('_', '-') for k in mapping]} and --encoder-param KEY=VALUE")
    block = {"name": encoder, **DEFAULT_BLOCKS.get(encoder, {})}
    block.update({mapping[k]: v for k, v in given.items()})
    block.update(params or {})
    return block


def _patchtst_from_ckpt(path: Path, block: dict[str, Any], flags: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """(block, loader(backbone) -> report) for a pretrained PatchTST; explicit geometry flags must agree."""
    from transformers import PatchTSTConfig

    from tsplugin.models.encoders import patchtst_original as original
    from tsplugin.models.encoders.patchtst import block_from_patchtst_config

    if path.is_dir():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"--encoder-ckpt {path}: no config.json; pass a transformers PatchTST directory or a checkpoint.pth")
        ckpt_block = block_from_patchtst_config(PatchTSTConfig.from_pretrained(path))
        loader = lambda backbone: original.load_transformers_patchtst(backbone, path)  # noqa: E731
    elif path.is_file():
        hints = {k: flags[k] for k in ("context_window", "stride") if flags.get(k) is not None}
        if flags.get("num_heads") is not None:
            hints["n_heads"] = flags["num_heads"]
        hints.setdefault("setting", path.parent.name)
        config, _ = original.config_from_original_checkpoint(original.read_checkpoint(path), **hints)
        ckpt_block = block_from_patchtst_config(config)
        loader = lambda backbone: original.load_original_checkpoint(backbone, path)  # noqa: E731
    else:
        raise FileNotFoundError(f"--encoder-ckpt {path} does not exist")
    for flag, key in ENCODER_FLAGS["patchtst"].items():
        if flags.get(flag) is not None and flags[flag] != ckpt_block[key]:
            raise ValueError(f"--{flag.replace('_', '-')} {flags[flag]} contradicts --encoder-ckpt {path} ({key}={ckpt_block[key]}); "
                             "drop the flag: a pretrained encoder keeps its geometry")
    return ckpt_block, loader


def _state_dict_loader(path: Path) -> Any:
    def load(module: Any) -> str:
        from tsplugin.models.encoders.patchtst_original import read_checkpoint  # tensors only

        state = read_checkpoint(path)
        missing, unexpected = module.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(f"--encoder-ckpt {path}: does not fit the encoder: missing {missing}, unexpected {unexpected}")
        return f"{path}: loaded {len(state)} tensors"

    if not path.is_file():
        raise FileNotFoundError(f"--encoder-ckpt {path} is not a file (a .safetensors or .pt state dict of the encoder)")
    return load


def build_qwen_ts(
    llm: str | Path,
    output_dir: str | Path,
    encoder: str = "patchtst",
    projector: str = "mlp2x_gelu",
    encoder_ckpt: str | Path | None = None,
    flags: dict[str, Any] | None = None,
    encoder_params: dict[str, Any] | None = None,
    seed: int = 0,
    dtype: str = "float32",
    verbose: bool = False,
) -> Path:
    """Write a `qwen_ts` checkpoint (LLM weights kept, new encoder/projector) to `output_dir`; return it."""
    from tsplugin.build.init_model import save_checkpoint
    from tsplugin.models.qwen_ts import QwenTSConfig, QwenTSForCausalLM
    from tsplugin.models.projectors import get_projector

    llm, out, flags = Path(llm), Path(output_dir), dict(flags or {})
    get_projector(projector)  # bad names fail before any file is read
    block = encoder_block(encoder, flags, encoder_params)
    check_llm_dir(llm)
    load_encoder = None
    if encoder_ckpt is not None:
        ckpt = Path(encoder_ckpt)
        if encoder == "patchtst":
            block, load_encoder = _patchtst_from_ckpt(ckpt, block, flags)
        else:
            load_encoder = _state_dict_loader(ckpt)

    tokenizer, lm, start_id, end_id = load_llm_with_ts_tokens(llm, seed)
    text_config = lm.config
    config = QwenTSConfig(
        text_config=text_config.to_dict(),
        ts={"encoder": block, "projector": projector},
        ts_token_start_index=start_id,
        ts_token_end_index=end_id,
    )
    model = QwenTSForCausalLM(config)
    copy_llm_weights(model, lm, llm)
    report = None
    if load_encoder is not None:
        target = getattr(model.ts_encoder, "backbone", model.ts_encoder) if encoder == "patchtst" else model.ts_encoder
        report = load_encoder(target)
        if getattr(report, "missing", None):
            raise ValueError(f"--encoder-ckpt {encoder_ckpt}: the encoder still lacks {report.missing} after loading ({report})")
    model = save_checkpoint(model, tokenizer, out, dtype, llm)
    if verbose:
        count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
        print(f"wrote QwenTSForCausalLM (model_type qwen_ts, LLM {text_config.model_type}) to {out}")
        print(f"  parameters: LLM {count(model.language_model):,}, ts_encoder {count(model.ts_encoder):,}, "
              f"ts_projector {count(model.ts_projector):,}; dtype {dtype}; vocab {model.config.text_config.vocab_size}")
        print(f"  <ts> id {start_id}, <ts/> id {end_id}; encoder block {json.dumps(block)}; projector {projector}")
        if report is not None:
            print(f"  encoder weights: {report}")
    return out


def _parse_param(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--encoder-param {text!r}: write KEY=VALUE (VALUE as JSON, e.g. num_prototypes=1000)")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def add_llm_arguments(parser: argparse.ArgumentParser) -> None:
    """`--llm` and `-o/--output`, shared by the commands that wrap a local Qwen (build-model, build-forecaster)."""
    parser.add_argument("--llm", required=True, type=Path, help="local Qwen2/Qwen2.5/Qwen3 checkpoint directory")
    parser.add_argument("-o", "--output", required=True, type=Path, help="directory to write the model to")


def add_new_weights_arguments(parser: argparse.ArgumentParser) -> None:
    """`--seed` and `--dtype` of the layers such a command adds (build-model, build-forecaster)."""
    parser.add_argument("--seed", type=int, default=0, help="random seed of the new layers (default 0)")
    parser.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32",
                        help="dtype of the written weights (default float32)")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "build-model",
        help="build a qwen_ts model (local Qwen2/Qwen3 + time-series encoder + projector)",
        description=__doc__.split("\n\n")[0],
    )
    add_llm_arguments(parser)
    parser.add_argument("--encoder", default="patchtst", help="encoder registry name: chatts_mlp, patchtst, timellm (default patchtst)")
    parser.add_argument("--encoder-ckpt", type=Path, default=None,
                        help="pretrained encoder: PatchTST transformers dir or original checkpoint.pth; other encoders: a state dict")
    parser.add_argument("--projector", default="mlp2x_gelu", help="linear, mlp2x_gelu, mlpNx_gelu, identity (default mlp2x_gelu)")
    for flag, help_text in (
        ("--context-window", "points the encoder sees (patchtst: longer series keep their last points, shorter are front-padded)"),
        ("--patch-len", "points per patch (chatts_mlp: its patch_size)"),
        ("--stride", "patch stride"),
        ("--d-model", "encoder width (chatts_mlp: its output width; default the LLM hidden size)"),
        ("--num-layers", "encoder layers"),
        ("--num-heads", "attention heads"),
        ("--ffn-dim", "feed-forward width (patchtst)"),
    ):
        parser.add_argument(flag, type=int, default=None, help=help_text)
    parser.add_argument("--encoder-param", type=_parse_param, action="append", default=[], metavar="KEY=VALUE",
                        help="any other key of the encoder block (JSON value), repeatable")
    add_new_weights_arguments(parser)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Exit codes: 0 written; 2 an argument or input file that cannot be used (the message says which and the
    fix: unknown names, contradicting flags, a checkpoint refused or unreadable, an output that cannot be written)."""
    from tsplugin.checkpoints.weights import explain_any

    flags = {k: getattr(args, k) for k in ("context_window", "patch_len", "stride", "d_model", "num_layers", "num_heads", "ffn_dim")}
    try:
        build_qwen_ts(
            args.llm, args.output, encoder=args.encoder, projector=args.projector, encoder_ckpt=args.encoder_ckpt,
            flags=flags, encoder_params=dict(args.encoder_param), seed=args.seed, dtype=args.dtype, verbose=True,
        )
    except (ValueError, OSError) as err:  # CheckpointError is a ValueError; FileNotFoundError an OSError
        print(f"tsplugin build-model: {explain_any(err, args.llm) or err}", file=sys.stderr)
        return 2
    except Exception as err:  # a load failure inside transformers (e.g. a refused pickle in --llm)
        translated = explain_any(err, args.llm)
        if translated is None:
            raise
        print(f"tsplugin build-model: --llm: {translated}", file=sys.stderr)
        return 2
    return 0


__all__ = ["ENCODER_FLAGS", "add_parser", "build_qwen_ts", "encoder_block", "run"]
