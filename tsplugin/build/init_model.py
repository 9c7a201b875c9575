"""`tsplugin init-model`: write a randomly initialised ChatTS-architecture checkpoint, offline.

Two ways:
- from scratch: a preset-sized Qwen2 (`--arch chatts`) or Qwen3 (`--arch qwen3ts`) decoder with a
  locally trained tokenizer (tsplugin.build.tokenizer), for tests, demos and pipeline dry runs;
- `--base DIR`: a local Qwen2/Qwen3 checkpoint whose weights are kept; `<ts>`/`<ts/>` are added to
  its tokenizer, embeddings are resized if needed and a fresh `ts_encoder` gets Xavier-normal init
  (what ChatTS-Training recommends for a newly added encoder).

The `ts` block follows the released checkpoints: chatts = ChatTS-14B first release (patch 16, 5
layers, no position embedding); qwen3ts = ChatTS-8B (patch 8, position embedding, 8192 points).
The encoding profile (config.json `ts_profile`: prefix format, last-patch padding, template) is the
current release's for both (chatts-14b-0801, chatts-8b) unless `--profile` names another.
Builds are deterministic: the same arguments and seed give byte-identical safetensors.
"""

from __future__ import annotations

# lazy imports: a `tsplugin` sub-command: torch and the model classes load when it runs (`tsplugin --help` stays torch-free).

import argparse
import sys
from pathlib import Path
from typing import Any

from tsplugin.architectures import ARCHITECTURES, backbone_model_types, get_spec
from tsplugin.registry import UnknownNameError

# Decoder sizes. Parameter counts with the built-in tokenizer (~2.3k tokens, untied lm_head):
# tiny ~1.5M, small ~10M, medium ~30M, large ~100M.
PRESETS: dict[str, dict[str, int]] = {
    "tiny": dict(hidden_size=128, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2, intermediate_size=384),
    "small": dict(hidden_size=256, num_hidden_layers=8, num_attention_heads=4, num_key_value_heads=2, intermediate_size=1024),
    "medium": dict(hidden_size=512, num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=4, intermediate_size=1536),
    "large": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, num_key_value_heads=4, intermediate_size=2560),
}

# Encoder block per architecture init-model builds (`tsplugin.architectures`; hidden_size is filled from the decoder).
TS_BLOCKS: dict[str, dict[str, Any]] = {
    name: dict(spec.init_ts_block) for name, spec in ARCHITECTURES.items() if spec.init_ts_block is not None
}
# `--base`: a plain decoder's model_type -> the architecture built on it.
BASE_MODEL_TYPES = {base: arch for base, arch in backbone_model_types().items() if arch in TS_BLOCKS}
DTYPES = ("float32", "bfloat16", "float16")


def ts_block(arch: str, hidden_size: int, patch_size: int | None = None, position_embedding: bool | None = None) -> dict[str, Any]:
    if arch not in TS_BLOCKS:
        raise UnknownNameError("--arch", arch, sorted(TS_BLOCKS))
    ts = dict(TS_BLOCKS[arch], hidden_size=hidden_size)
    if patch_size is not None:
        if patch_size <= 0:
            raise ValueError(f"--patch-size must be positive, got {patch_size}")
        ts["patch_size"] = patch_size
    if position_embedding is not None:
        ts["use_position_embedding"] = position_embedding
        ts.setdefault("embedding_dim", 16)
        ts.setdefault("max_sequence_length", 8192)
    return ts


def init_profile(arch: str, profile: str | None) -> str:
    """The `ts_profile` a new checkpoint gets: `profile` if given (checked), else the architecture's current one."""
    from tsplugin.processing.profiles import get_profile

    return get_profile(profile or get_spec(arch).default_profile, "--profile").name


def xavier_init_ts_encoder(encoder: Any) -> None:
    """Xavier-normal weights, zero biases (LayerNorm, if any, stays at ones/zeros)."""
    import torch

    with torch.no_grad():
        for module in encoder.modules():
            if isinstance(module, torch.nn.Linear):
                torch.nn.init.xavier_normal_(module.weight)
                torch.nn.init.zeros_(module.bias)
            elif isinstance(module, torch.nn.Embedding):
                torch.nn.init.xavier_normal_(module.weight)


def _generation_config(tokenizer: Any, base: Path | None) -> Any:
    from transformers import GenerationConfig

    if base is not None and (base / "generation_config.json").is_file():
        gen = GenerationConfig.from_pretrained(base)
    else:
        gen = GenerationConfig(do_sample=False)
    # Qwen stops on <|im_end|> (end of turn) and <|endoftext|>.
    eos = [tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")] + [tokenizer.eos_token_id]
    eos = [i for i in eos if isinstance(i, int) and i != getattr(tokenizer, "unk_token_id", None)]
    if eos and gen.eos_token_id is None:
        gen.eos_token_id = list(dict.fromkeys(eos))
    if gen.pad_token_id is None and tokenizer.pad_token_id is not None:
        gen.pad_token_id = tokenizer.pad_token_id
    return gen


def save_checkpoint(model: Any, tokenizer: Any, out: Path, dtype: str, base: Path | None) -> Any:
    """Cast, name the architecture, set Qwen stop tokens and write model + tokenizer to `out` (the tokenizer in
    the released checkpoints' form, which transformers 4.57 and 5.x both load: tsplugin.checkpoints.tokenizer_files)."""
    import torch

    from tsplugin.checkpoints.tokenizer_files import save_tokenizer

    model = model.to(getattr(torch, dtype))
    model.config.architectures = [type(model).__name__]
    model.generation_config = _generation_config(tokenizer, base)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    save_tokenizer(tokenizer, out)
    return model


def build_model(
    output_dir: str | Path,
    arch: str | None = None,
    preset: str = "tiny",
    patch_size: int | None = None,
    position_embedding: bool | None = None,
    seed: int = 0,
    base: str | Path | None = None,
    dtype: str = "float32",
    verbose: bool = False,
    profile: str | None = None,
) -> Path:
    """Write a ChatTS-architecture checkpoint to `output_dir` and return its path.

    `arch` defaults to chatts, or to the architecture matching `base` (qwen2 -> chatts, qwen3 -> qwen3ts).
    `profile` (written as config.json `ts_profile`) defaults to the current release's for the architecture
    (`default_profile` in `tsplugin.architectures`).
    """
    import torch

    from tsplugin.models import get_architecture
    from tsplugin.build.tokenizer import add_ts_tokens, build_tokenizer

    if dtype not in DTYPES:
        raise UnknownNameError("dtype", dtype, list(DTYPES))
    out = Path(output_dir)
    torch.manual_seed(seed)
    base_path = Path(base) if base is not None else None

    if base_path is None:
        if preset not in PRESETS:
            raise UnknownNameError("preset", preset, sorted(PRESETS))
        arch = arch or "chatts"
        config_cls, model_cls = get_architecture(arch)
        tokenizer = build_tokenizer(seed=seed)
        start_id, end_id = add_ts_tokens(tokenizer)
        sizes = dict(PRESETS[preset])
        extra: dict[str, Any] = {}
        if get_spec(arch).backbone == "qwen3":  # Qwen3Config's head_dim defaults to 128, not hidden / heads
            extra["head_dim"] = sizes["hidden_size"] // sizes["num_attention_heads"]
        config = config_cls(
            vocab_size=-(-len(tokenizer) // 64) * 64,  # padded like Qwen's embedding tables
            max_position_embeddings=32768,
            tie_word_embeddings=False,
            bos_token_id=None,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            ts=ts_block(arch, sizes["hidden_size"], patch_size, position_embedding),
            ts_token_start_index=start_id,
            ts_token_end_index=end_id,
            ts_profile=init_profile(arch, profile),
            **sizes,
            **extra,
        )
        model = model_cls(config)
    else:
        model, tokenizer = _from_base(base_path, arch, patch_size, position_embedding, profile)

    xavier_init_ts_encoder(model.ts_encoder)
    model = save_checkpoint(model, tokenizer, out, dtype, base_path)
    if verbose:
        n_params = sum(p.numel() for p in model.parameters())
        n_ts = sum(p.numel() for p in model.ts_encoder.parameters())
        print(f"wrote {type(model).__name__} (model_type {model.config.model_type}) to {out}")
        print(f"  parameters: {n_params:,} (ts_encoder {n_ts:,}); dtype {dtype}; vocab {model.config.vocab_size}")
        print(f"  <ts> id {model.config.ts_token_start_index}, <ts/> id {model.config.ts_token_end_index}, ts block {model.config.ts}")
        print(f"  encoding profile {model.config.ts_profile} (config.json ts_profile)")
        for f in sorted(out.iterdir()):
            print(f"  {f.name} ({f.stat().st_size:,} bytes)")
    return out


def _from_base(
    base: Path, arch: str | None, patch_size: int | None, position_embedding: bool | None, profile: str | None = None
) -> tuple[Any, Any]:
    """Load a Qwen2/Qwen3 checkpoint into the matching ChatTS class; add the ts tokens."""
    from transformers import AutoConfig, AutoTokenizer

    from tsplugin.models import get_architecture
    from tsplugin.build.tokenizer import add_ts_tokens

    if not (base / "config.json").is_file():
        raise FileNotFoundError(f"--base {base}: no config.json there; pass a local Qwen2/Qwen3 checkpoint directory")
    base_config = AutoConfig.from_pretrained(base)
    base_type = base_config.model_type
    if base_type not in BASE_MODEL_TYPES:
        raise ValueError(
            f"--base {base}: model_type {base_type!r} is not supported; expected one of {sorted(BASE_MODEL_TYPES)}"
        )
    wanted = BASE_MODEL_TYPES[base_type]
    if arch is not None and arch != wanted:
        raise ValueError(f"--base {base} is a {base_type} checkpoint, which becomes --arch {wanted}, not {arch}")
    config_cls, model_cls = get_architecture(wanted)

    tokenizer = AutoTokenizer.from_pretrained(base)
    start_id, end_id = add_ts_tokens(tokenizer)
    fields = base_config.to_dict()
    for key in ("model_type", "architectures", "auto_map", "transformers_version", "_name_or_path"):
        fields.pop(key, None)
    config = config_cls(
        **fields,
        ts=ts_block(wanted, base_config.hidden_size, patch_size, position_embedding),
        ts_token_start_index=start_id,
        ts_token_end_index=end_id,
        ts_profile=init_profile(wanted, profile),
    )
    model, info = model_cls.from_pretrained(base, config=config, output_loading_info=True)
    unexpected = list(info.get("unexpected_keys", []))
    missing = [k for k in info.get("missing_keys", []) if not k.startswith("ts_encoder.")]
    if unexpected or missing:
        raise ValueError(f"--base {base}: weights do not fit {model_cls.__name__}: missing {missing}, unexpected {unexpected}")
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=64)
    return model, tokenizer


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "init-model",
        help="write a random ChatTS-architecture checkpoint (tiny..large, or on a local Qwen base)",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("-o", "--output", required=True, type=Path, help="directory to write the checkpoint to")
    parser.add_argument("--arch", choices=sorted(TS_BLOCKS), default=None,
                        help="chatts (Qwen2 backbone, ChatTS-14B) or qwen3ts (Qwen3, ChatTS-8B); default chatts, or from --base")
    parser.add_argument("--preset", choices=list(PRESETS), default="tiny", help="decoder size when not using --base (default tiny)")
    parser.add_argument("--patch-size", type=int, default=None, help="encoder patch size (default: 16 chatts, 8 qwen3ts)")
    pos = parser.add_mutually_exclusive_group()
    pos.add_argument("--position-embedding", dest="position_embedding", action="store_true", default=None,
                     help="use the learned per-point position embedding (default for qwen3ts)")
    pos.add_argument("--no-position-embedding", dest="position_embedding", action="store_false",
                     help="plain value patches (default for chatts)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed, same bytes (default 0)")
    parser.add_argument("--base", type=Path, default=None, help="local Qwen2/Qwen3 checkpoint to build on (keeps its weights)")
    parser.add_argument("--dtype", choices=DTYPES, default="float32", help="dtype of the written weights (default float32)")
    parser.add_argument("--profile", default=None,
                        help="encoding profile written as config.json ts_profile (prefix format, last-patch padding, "
                        "template); default: chatts-14b-0801 for chatts, chatts-8b for qwen3ts")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Exit codes: 0 written; 2 an argument or --base checkpoint that cannot be used (the message says the fix)."""
    if args.base is not None and not args.base.is_dir():
        print(f"tsplugin init-model: --base {args.base} is not a directory; pass a local checkpoint (no downloads)", file=sys.stderr)
        return 2
    try:
        build_model(
            args.output,
            arch=args.arch,
            preset=args.preset,
            patch_size=args.patch_size,
            position_embedding=args.position_embedding,
            seed=args.seed,
            base=args.base,
            dtype=args.dtype,
            verbose=True,
            profile=args.profile,
        )
    except (ValueError, OSError) as err:  # FileNotFoundError is an OSError
        print(f"tsplugin init-model: {_explained(err, args.base)}", file=sys.stderr)
        return 2
    except Exception as err:  # a load failure inside transformers (e.g. a refused pickle in --base)
        if args.base is None or _explained(err, args.base) is err:
            raise
        print(f"tsplugin init-model: --base: {_explained(err, args.base)}", file=sys.stderr)
        return 2
    return 0


def _explained(err: BaseException, base: Path | None) -> BaseException:
    """A refused or unreadable weight file of --base as a clear error (never PyTorch's weights_only=False advice)."""
    from tsplugin.checkpoints.weights import explain_any

    return (explain_any(err, base) if base is not None else None) or err


__all__ = ["PRESETS", "TS_BLOCKS", "add_parser", "build_model", "run", "ts_block", "xavier_init_ts_encoder"]
