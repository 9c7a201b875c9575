"""Tokenizer files in the form the released checkpoints ship (transformers 4.x), loadable by 4.57 and 5.x.

Why: transformers 5 saves `tokenizer_class: TokenizersBackend` and `extra_special_tokens` as a list; 4.57
(the version vLLM 0.11 runs with) fails on both ("Tokenizer class TokenizersBackend does not exist",
"'list' object has no attribute 'keys'"). The released ChatTS checkpoints were written by 4.x:
`tokenizer_class: Qwen2Tokenizer`, an `added_tokens_decoder` table, `additional_special_tokens` as a list.
Both versions load that form, so everything tsplugin writes (init-model, build-model, build-forecaster,
`llamafactory-cli export`) is rewritten to it after the tokenizer is saved.

Design choices:
- Works on the saved files only (`tokenizer.json`'s `added_tokens` are the truth for ids and flags), so the
  same function serves tsplugin's own saves and LLaMA-Factory's export, whatever object saved them.
- The class: a generic fast tokenizer (`TokenizersBackend` / `PreTrainedTokenizerFast`) with Qwen's ChatML
  special tokens is written `Qwen2Tokenizer` (what Qwen and ChatTS ship; the class only adds defaults for
  special tokens, and the file states each of them); another generic one stays `PreTrainedTokenizerFast`;
  a model-specific class keeps its name without the `Fast` suffix (the 4.x convention; both versions
  map the name to their fast class when `tokenizer.json` is there).
- Nothing a user wrote is dropped: named (dict) `extra_special_tokens` (an empty one is dropped: 5.x
  would read it as "no additional special tokens"), `auto_map`, `processor_class`,
  `chat_template` and every other key are kept; only the 5-only forms are rewritten.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TOKENIZER_CONFIG = "tokenizer_config.json"
TOKENIZER_JSON = "tokenizer.json"
GENERIC_CLASSES = ("TokenizersBackend", "PreTrainedTokenizerFast")
QWEN_CLASS = "Qwen2Tokenizer"
QWEN_CHATML_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
# Keys only transformers 5 writes; 4.57 passes unknown keys on to the tokenizer's __init__.
TRANSFORMERS5_ONLY_KEYS = ("backend",)
_ADDED_TOKEN_FLAGS = ("lstrip", "normalized", "rstrip", "single_word", "special")


def added_tokens_decoder(tokenizer_json: dict[str, Any], where: str) -> dict[str, dict[str, Any]]:
    """`added_tokens_decoder` (id -> content and flags, the 4.x table) from tokenizer.json's `added_tokens`."""
    table = {}
    for index, token in enumerate(tokenizer_json.get("added_tokens") or []):
        missing = [k for k in ("id", "content") if k not in token]
        if missing:
            raise ValueError(f"{where}: added_tokens[{index}] has no {', '.join(missing)}; the file is not a "
                             "`tokenizers` tokenizer.json. Save the tokenizer again with save_pretrained.")
        entry = {"content": token["content"]}
        special = bool(token.get("special", False))
        # `tokenizers` writes every flag; its default for a missing `normalized` is "not special".
        entry.update({flag: bool(token.get(flag, not special if flag == "normalized" else False)) for flag in _ADDED_TOKEN_FLAGS})
        table[str(int(token["id"]))] = entry
    return dict(sorted(table.items(), key=lambda item: int(item[0])))


def release_class(saved_class: str | None, added: set[str]) -> str | None:
    """The `tokenizer_class` a 4.x release would carry for a tokenizer saved as `saved_class`."""
    if saved_class in GENERIC_CLASSES or saved_class is None:
        if all(token in added for token in QWEN_CHATML_TOKENS):
            return QWEN_CLASS
        return "PreTrainedTokenizerFast" if saved_class is not None else None
    return saved_class[: -len("Fast")] if saved_class.endswith("Fast") else saved_class


def release_tokenizer_config(config: dict[str, Any], tokenizer_json: dict[str, Any], where: str) -> dict[str, Any]:
    """`config` (a saved tokenizer_config.json) rewritten to the 4.x release form; a new dict."""
    out = {k: v for k, v in config.items() if k not in TRANSFORMERS5_ONLY_KEYS}
    out["added_tokens_decoder"] = added_tokens_decoder(tokenizer_json, where)  # tokenizer.json is the truth
    additional = config.get("additional_special_tokens") or []
    if not isinstance(additional, list):
        raise ValueError(f"{where}: additional_special_tokens is a {type(additional).__name__}, not a list; "
                         "write it as a list of token strings.")
    additional = [t if isinstance(t, str) else t.get("content") for t in additional]
    extra = config.get("extra_special_tokens")
    if isinstance(extra, list):  # transformers 5's form: the 4.x additional_special_tokens
        out.pop("extra_special_tokens")
        additional += [t for t in (e if isinstance(e, str) else e.get("content") for e in extra) if t not in additional]
    elif extra == {}:  # what 4.x writes when there are no named extras; 5.x then reads no additional tokens
        out.pop("extra_special_tokens")
    if additional:
        out["additional_special_tokens"] = additional
    added = {entry["content"] for entry in out["added_tokens_decoder"].values()}
    unknown = [t for t in additional if t not in added]
    if unknown:
        raise ValueError(f"{where}: special tokens {unknown} are not in tokenizer.json's added_tokens; the files "
                         "disagree. Save the tokenizer again with save_pretrained.")
    cls = release_class(config.get("tokenizer_class"), added)
    if cls is not None:
        out["tokenizer_class"] = cls
    return dict(sorted(out.items()))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err}); save the tokenizer again with save_pretrained.") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: holds a {type(data).__name__}, not a JSON object; save the tokenizer again with save_pretrained.")
    return data


def write_release_tokenizer_config(directory: str | Path) -> Path:
    """Rewrite `directory/tokenizer_config.json` (next to its tokenizer.json) to the 4.x release form."""
    directory = Path(directory)
    config_path, json_path = directory / TOKENIZER_CONFIG, directory / TOKENIZER_JSON
    for path in (config_path, json_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not found; save a fast tokenizer there first "
                                    "(tokenizer.save_pretrained writes tokenizer.json and tokenizer_config.json).")
    config, tokenizer_json = _read_json(config_path), _read_json(json_path)
    rewritten = release_tokenizer_config(config, tokenizer_json, str(config_path))
    if rewritten != config:
        tmp = config_path.with_name(config_path.name + ".tmp")
        tmp.write_text(json.dumps(rewritten, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        tmp.replace(config_path)
    return config_path


def save_tokenizer(tokenizer: Any, directory: str | Path) -> Path:
    """`tokenizer.save_pretrained(directory)`, then the release form of tokenizer_config.json."""
    tokenizer.save_pretrained(str(directory))
    return write_release_tokenizer_config(directory)


__all__ = ["added_tokens_decoder", "release_class", "release_tokenizer_config", "save_tokenizer",
           "write_release_tokenizer_config"]
