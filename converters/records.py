"""Input record formats -> one normalised :class:`Sample`.

Supported (the LLaMA-Factory multimodal conventions): ShareGPT with ``messages`` (role/content)
or ``conversations`` (from/value), Alpaca (``instruction``/``input``/``output``, optional
``system`` and ``history``), and OpenAI chat (``messages`` whose content is a list of parts, an
``image_url`` part standing for one image). Media come from ``images`` (list) or ``image`` (str).
Each format is registered by name; ``auto`` picks one per record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from tsplugin.processing.placeholders import IMAGE_TOKEN

from .errors import RejectError
from .registry import Registry

SYSTEM, USER, ASSISTANT = "system", "user", "assistant"


@dataclass
class Sample:
    """One conversation: an optional system prompt, alternating user/assistant turns, image paths."""

    system: str
    turns: list[tuple[str, str]]  # (role, content), role in {user, assistant}
    images: list[str]


Parser = Callable[[dict], Sample]
Detector = Callable[[dict], bool]

INPUT_FORMATS: Registry[tuple[Detector, Parser]] = Registry("input format")


def register_input_format(name: str, detect: Detector, parse: Parser) -> None:
    """Register an input record format (refuses duplicate names)."""
    INPUT_FORMATS.register(name, (detect, parse))


def get_input_format(name: str) -> tuple[Detector, Parser]:
    """Look up a format by name; unknown names list the valid ones."""
    return INPUT_FORMATS.get(name)


def parse_record(record: Any, fmt: str = "auto") -> Sample:
    """Normalise one input record; raises RejectError(invalid_record / bad_turns) when it does not fit."""
    if not isinstance(record, dict):
        raise RejectError(
            "invalid_record",
            f"expected a JSON object, got {type(record).__name__}. Each record must be an object with messages/conversations/instruction",
        )
    carriers = [k for k in ("messages", "conversations") if k in record]
    alpaca = [k for k in ("instruction", "output") if k in record]
    if alpaca:
        carriers.append("/".join(repr(k) for k in alpaca))
    if len(carriers) > 1:
        shown = ", ".join(c if c.startswith("'") else repr(c) for c in carriers)
        raise RejectError(
            "two_conversations",
            f"two conversations in one record ({shown}); converting one would silently drop the other. "
            "Keep one form per record, or split it into two records",
        )
    if fmt == "auto":
        for name in INPUT_FORMATS.names():
            detect, parse = INPUT_FORMATS.get(name)
            if detect(record):
                return parse(record)
        raise RejectError(
            "invalid_record",
            f"no known format (keys: {', '.join(sorted(record)) or 'none'}). "
            "Give 'messages', 'conversations' or 'instruction'/'output', or pass --input-format",
        )
    detect, parse = INPUT_FORMATS.get(fmt)
    if not detect(record):
        raise RejectError("invalid_record", f"record does not look like --input-format {fmt}. Fix the record or pass --input-format auto")
    return parse(record)


def _images(record: dict) -> list[str]:
    imgs = record.get("images")
    if imgs is None:
        imgs = record.get("image")
    if imgs is None:
        return []
    if isinstance(imgs, str):
        return [imgs]
    if isinstance(imgs, list) and all(isinstance(p, str) for p in imgs):
        return list(imgs)
    raise RejectError("invalid_record", "'images' must be a list of path strings (or 'image' one string). Fix the record")


def _text(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    raise RejectError("invalid_record", f"{where} must be a string, got {type(value).__name__}. Fix the record")


_ROLE_ALIASES = {
    "user": USER, "human": USER,
    "assistant": ASSISTANT, "gpt": ASSISTANT,
    "system": SYSTEM,
}


def _build(system: str, turns: list[tuple[str, str]], images: list[str]) -> Sample:
    """Split off a leading system turn and check user/assistant alternate, ending on assistant."""
    if turns and turns[0][0] == SYSTEM:
        if system:
            raise RejectError("bad_turns", "two system prompts (a 'system' field and a system message). Keep one")
        system = turns[0][1]
        turns = turns[1:]
    for i, (role, _) in enumerate(turns):
        want = USER if i % 2 == 0 else ASSISTANT
        if role != want:
            raise RejectError(
                "bad_turns",
                f"message {i + 1} has role {role!r} but {want!r} was expected (turns must alternate user/assistant "
                "after an optional leading system message). Fix the record",
            )
    if not turns or len(turns) % 2:
        raise RejectError("bad_turns", "the conversation must end with an assistant answer. Add the answer or drop the record")
    return Sample(system, turns, images)


def _sharegpt_parse(record: dict) -> Sample:
    if "conversations" in record:
        msgs, role_tag, content_tag, key = record["conversations"], "from", "value", "conversations"
    else:
        msgs, role_tag, content_tag, key = record["messages"], "role", "content", "messages"
    if not isinstance(msgs, list):
        raise RejectError("invalid_record", f"'{key}' must be a list. Fix the record")
    turns = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or role_tag not in m or content_tag not in m:
            raise RejectError("invalid_record", f"{key}[{i}] needs '{role_tag}' and '{content_tag}'. Fix the record")
        role = _ROLE_ALIASES.get(m[role_tag])
        if role is None:
            raise RejectError(
                "bad_turns",
                f"{key}[{i}] has unsupported role {m[role_tag]!r} (supported: {', '.join(sorted(_ROLE_ALIASES))}). Fix the record",
            )
        turns.append((role, _text(m[content_tag], f"{key}[{i}].{content_tag}")))
    return _build(_text(record.get("system", ""), "system"), turns, _images(record))


def _is_sharegpt(record: dict) -> bool:
    if "conversations" in record:
        return True
    msgs = record.get("messages")
    return isinstance(msgs, list) and all(not isinstance(m, dict) or not isinstance(m.get("content"), list) for m in msgs)


def _is_openai(record: dict) -> bool:
    msgs = record.get("messages")
    return isinstance(msgs, list) and any(isinstance(m, dict) and isinstance(m.get("content"), list) for m in msgs)


def _openai_parse(record: dict) -> Sample:
    images = _images(record)
    turns = []
    for i, m in enumerate(record["messages"]):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise RejectError("invalid_record", f"messages[{i}] needs 'role' and 'content'. Fix the record")
        role = _ROLE_ALIASES.get(m["role"])
        if role is None:
            raise RejectError("bad_turns", f"messages[{i}] has unsupported role {m['role']!r}. Fix the record")
        content = m["content"]
        if isinstance(content, list):
            parts = []
            for j, part in enumerate(content):
                kind = part.get("type") if isinstance(part, dict) else None
                if kind == "text":
                    parts.append(_text(part.get("text"), f"messages[{i}].content[{j}].text"))
                elif kind == "image_url":
                    url = part.get("image_url")
                    url = url.get("url") if isinstance(url, dict) else url
                    parts.append(IMAGE_TOKEN)
                    images.append(_text(url, f"messages[{i}].content[{j}].image_url"))
                else:
                    raise RejectError(
                        "invalid_record", f"messages[{i}].content[{j}] has unsupported type {kind!r} (text, image_url). Fix the record"
                    )
            content = "".join(parts)
        turns.append((role, _text(content, f"messages[{i}].content")))
    return _build("", turns, images)


def _is_alpaca(record: dict) -> bool:
    return "instruction" in record and "output" in record


def _alpaca_parse(record: dict) -> Sample:
    prompt = _text(record["instruction"], "instruction")
    query = _text(record.get("input", "") or "", "input")
    if query:
        prompt = f"{prompt}\n{query}" if prompt else query  # LLaMA-Factory joins them with a newline
    turns: list[tuple[str, str]] = []
    history = record.get("history") or []
    if not isinstance(history, list):
        raise RejectError("invalid_record", "'history' must be a list of [prompt, answer] pairs. Fix the record")
    for i, pair in enumerate(history):
        if not (isinstance(pair, list) and len(pair) == 2):
            raise RejectError("invalid_record", f"history[{i}] must be a [prompt, answer] pair. Fix the record")
        turns += [(USER, _text(pair[0], f"history[{i}][0]")), (ASSISTANT, _text(pair[1], f"history[{i}][1]"))]
    turns += [(USER, prompt), (ASSISTANT, _text(record["output"], "output"))]
    return _build(_text(record.get("system", "") or "", "system"), turns, _images(record))


register_input_format("alpaca", _is_alpaca, _alpaca_parse)
register_input_format("openai", _is_openai, _openai_parse)
register_input_format("sharegpt", _is_sharegpt, _sharegpt_parse)
