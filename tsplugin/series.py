"""Placeholder syntax shared by the converter, the LLaMA-Factory plugin and the chat API (no torch)."""

from __future__ import annotations

import re

# Both spellings seen in the wild: ChatTS's `<ts><ts/>` and the XML-looking `<ts></ts>`.
PLACEHOLDER = "<ts><ts/>"
PLACEHOLDER_PATTERN = re.compile(r"<ts>(?:<ts/>|</ts>)")


def count_placeholders(text: str) -> int:
    """Number of series placeholders in `text`."""
    return len(PLACEHOLDER_PATTERN.findall(text))
