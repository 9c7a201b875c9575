"""Series inside LLaMA-Factory's web chat state, without changing its events.

LlamaBoard's chat box keeps the conversation in a `gr.State` list of `{"role", "content"}` dicts:
`WebChatModel.append` adds the user's message, `WebChatModel.stream` answers it. Uploaded series
ride in the same list as entries of role `timeseries` (`{"role": "timeseries", "series": [...],
"names": [...]}`), placed before the user message they belong to. `split` turns the state into what
the engine takes (the messages without those entries + every series in placeholder order);
`merge_answer` puts the entries back around the streamed answer so a later turn still has them.
No gradio or torch here.
"""

from __future__ import annotations

from typing import Any, Sequence

from tsplugin.processing.placeholders import count_placeholders

SERIES_ROLE = "timeseries"


def is_series_entry(message: dict[str, Any]) -> bool:
    return isinstance(message, dict) and message.get("role") == SERIES_ROLE


def with_pending(messages: list[dict[str, Any]], series: Sequence[Any]) -> list[dict[str, Any]]:
    """The state with `series` as the next message's uploads (replaces uploads not yet sent)."""
    base = list(messages or [])
    if base and is_series_entry(base[-1]):
        base.pop()
    if not series:
        return base
    entry = {
        "role": SERIES_ROLE,
        "series": [list(s.values) for s in series],
        "names": [s.name for s in series],
    }
    return base + [entry]


def pending(messages: list[dict[str, Any]]) -> int:
    """Number of uploaded series not yet sent with a message."""
    return len(messages[-1]["series"]) if messages and is_series_entry(messages[-1]) else 0


def series_of(messages: list[dict[str, Any]]) -> list[tuple[str, list[float]]]:
    """(name, values) of every series in the conversation, sent or pending, in order."""
    out = []
    for message in messages or []:
        if is_series_entry(message):
            out.extend(zip(message["names"], message["series"]))
    return out


def split(messages: list[dict[str, Any]]) -> tuple[list[dict[str, str]], list[list[float]]]:
    """(messages for the engine, series in placeholder order); checks the counts turn by turn."""
    clean: list[dict[str, str]] = []
    series: list[list[float]] = []
    waiting: list[list[float]] = []
    for message in messages or []:
        if is_series_entry(message):
            waiting.extend(message["series"])
            continue
        found = count_placeholders(message.get("content") or "")
        if waiting or found:
            if found != len(waiting):
                turn = sum(1 for m in clean if m.get("role") == message.get("role")) + 1
                raise ValueError(
                    f"{message.get('role')} message {turn} has {found} <ts><ts/> placeholder(s) but "
                    f"{len(waiting)} series were uploaded for it. Put one <ts><ts/> in the text for each "
                    "uploaded series (in upload order), or clear the upload."
                )
            series.extend(waiting)
            waiting = []
        clean.append(message)
    if waiting:
        raise ValueError(f"{len(waiting)} uploaded series wait for a message: type a question and press Submit.")
    return clean, series


def merge_answer(state: list[dict[str, Any]], clean: list[dict[str, str]], output: list[dict[str, str]]) -> list[dict[str, Any]]:
    """`output` is `clean` plus the answer turn(s): return `state` (series entries kept) plus those turns."""
    return list(state) + list(output[len(clean) :])
