"""Expanded series positions tokenised at the id level: a run of n `<ts>` tokens becomes n copies of `<ts>`'s id.

The plugin writes each series as its prefix plus one `<ts>` per position (`tsplugin.processing.expand_text`, where the
number of positions has its one definition). Handing the tokenizer that text makes it split the run into n added
tokens one by one: ~3x the time of the same text with a filler character per position (bench/data_scale.py, issue
19). `encode_text` tokenises the text between the runs and splices each run's ids in instead. A fast tokenizer
splits a text at its added tokens before anything else touches it, so the ids are the same
(tests/test_position_ids.py compares both ways on every released layout); a token that strips the space beside it
(`lstrip` / `rstrip`) or matches only whole words would change its neighbours, so such a tokenizer (or one without
the token) gets the whole text as before.
"""

from __future__ import annotations

import functools
import re
import weakref
from typing import Any

_SPLICE_IDS: weakref.WeakKeyDictionary[Any, dict[str, int | None]] = weakref.WeakKeyDictionary()


@functools.cache
def _runs(token: str) -> re.Pattern:
    return re.compile(f"((?:{re.escape(token)})+)")


def splice_id(tokenizer: Any, token: str) -> int | None:
    """The id of `token` when runs of it can be spliced without changing any id, else None (per tokenizer, once)."""
    try:
        known = _SPLICE_IDS.setdefault(tokenizer, {})
    except TypeError:  # not weakly referable: no cache
        known = {}
    if token not in known:
        known[token] = _splice_id(tokenizer, token)
    return known[token]


def _splice_id(tokenizer: Any, token: str) -> int | None:
    decoder = getattr(tokenizer, "added_tokens_decoder", None)
    if not isinstance(decoder, dict):
        return None
    for token_id, added in decoder.items():
        if str(added) == token:
            if getattr(added, "lstrip", False) or getattr(added, "rstrip", False) or getattr(added, "single_word", False):
                return None
            return int(token_id)
    return None


def encode_text(tokenizer: Any, text: str, token: str, token_id: int | None) -> list[int]:
    """`tokenizer.encode(text, add_special_tokens=False)`, with each run of `token` spliced in as ids (`token_id`
    from `splice_id`; None: the whole text goes to the tokenizer). The texts between the runs are tokenised in one
    batch (one call: most of a call's cost is its fixed overhead)."""
    if token_id is None or token not in text:
        return tokenizer.encode(text, add_special_tokens=False)
    parts = _runs(token).split(text)  # text, run, text, run, ..., text
    texts = [part for part in parts[0::2] if part]
    encoded = iter(tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else ())
    ids: list[int] = []
    width = len(token)
    for k, part in enumerate(parts):
        if k % 2:
            ids += [token_id] * (len(part) // width)
        elif part:
            ids += next(encoded)
    return ids


class PositionIds:
    """Mixin for LLaMA-Factory's Template classes: text elements are encoded with `encode_text`, for the `<ts>`
    token of the template's multimodal plugin (`position_template` builds the classes)."""

    def _convert_elements_to_ids(self, tokenizer: Any, elements: Any) -> list[int]:
        token = getattr(self.mm_plugin, "ts_token", None)
        if token is None:
            return super()._convert_elements_to_ids(tokenizer, elements)
        token_id = splice_id(tokenizer, token)
        ids: list[int] = []
        for element in elements:
            if isinstance(element, str):
                if element:
                    ids += encode_text(tokenizer, element, token, token_id)
            else:
                ids += super()._convert_elements_to_ids(tokenizer, [element])
        return ids


def position_template(template_class: type) -> type:
    """`PositionIds` + `template_class` (LLaMA-Factory's Template or ReasoningTemplate), a module attribute named
    `PositionIds<Base>` so that a template pickles (dataset workers) and unpickles in a fresh process."""
    name = f"PositionIds{template_class.__name__}"
    cls = globals().get(name)
    if cls is None or template_class not in cls.__bases__:
        cls = type(name, (PositionIds, template_class), {"__module__": __name__, "__qualname__": name})
        globals()[name] = cls
    return cls


def __getattr__(name: str) -> type:  # unpickling in a process that has not built the class yet
    if name.startswith("PositionIds") and name != "PositionIds":
        from llamafactory.data import template

        base = getattr(template, name[len("PositionIds"):], None)
        if isinstance(base, type) and issubclass(base, template.Template):
            return position_template(base)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
