"""`llamafactory-cli chat recipe.yaml` with series, for time-series templates.

Two ways to give a series in the terminal, both listed in the banner (and again with `/help`):

- inline, as ChatTS-Training's CLI demo reads it: `Is there a spike in <ts>[1, 2, 50, 2]<ts/>?`
- a CSV file: `/csv data/pump.csv [COLUMN]` reads the value column as `tsconvert` does (default
  `value`, gaps interpolated, rows sorted by `timestamp`); the loaded series fills the next bare
  `<ts><ts/>` of your next message, or is appended to that message when it has none.

`clear` and `exit` work as in LLaMA-Factory's own chat. The series of every turn stay with the
conversation (the engine re-reads them each turn), `clear` drops them. Templates without the
`timeseries` plugin get LLaMA-Factory's own `run_chat`, unchanged.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from tsplugin.chat import read_csv_series
from tsplugin.processing.placeholders import PLACEHOLDER, PLACEHOLDER_PATTERN

BANNER = (
    "Welcome to the CLI application, use `clear` to remove the history, use `exit` to exit the application.\n"
    "Time series: write one inline as <ts>[1, 2, 3]<ts/>, or load a CSV with `/csv PATH [COLUMN]` (value column "
    "as tsconvert reads it, default `value`): it fills the next <ts><ts/> of your message or is appended to it. "
    "`/help` shows this again."
)
# `<ts>[...]<ts/>` (or `</ts>`): the numbers between the tags are one series.
INLINE_PATTERN = re.compile(r"<ts>\s*(\[[^\[\]]*\])\s*(?:<ts/>|</ts>)")
PLACEHOLDER_OR_INLINE = re.compile(INLINE_PATTERN.pattern + "|" + PLACEHOLDER_PATTERN.pattern)


@dataclass
class SeriesConversation:
    """The conversation's messages (with bare placeholders) and all its series, in order."""

    messages: list[dict[str, str]] = field(default_factory=list)
    series: list[list[float]] = field(default_factory=list)
    pending: list[tuple[str, list[float]]] = field(default_factory=list)  # loaded by /csv, not yet sent

    def clear(self) -> None:
        self.messages, self.series, self.pending = [], [], []

    def load_csv(self, argument: str) -> str:
        """`/csv PATH [COLUMN]`: read one series; returns what to tell the user."""

        parts = shlex.split(argument)
        if not 1 <= len(parts) <= 2:
            raise ValueError("usage: /csv PATH [COLUMN]")
        path, column = parts[0], (parts[1] if len(parts) > 1 else "value")
        (values,) = read_csv_series([path], value_col=column)
        self.pending.append((path, values))
        return f"Loaded {len(values)} points from {path} (column {column}); it goes into your next message."

    def user_turn(self, text: str) -> tuple[list[dict[str, str]], list[list[float]]]:
        """Messages and series for the engine after the user typed `text` (history not yet updated)."""
        pending = [values for _, values in self.pending]
        new_series: list[list[float]] = []

        def replace(match: re.Match) -> str:
            if match.group(1) is not None:
                try:
                    values = json.loads(match.group(1))
                except ValueError:
                    raise ValueError(f"{match.group(0)[:40]!r}: write the series as numbers, e.g. <ts>[1, 2.5, 3]<ts/>") from None
                new_series.append(values)
            elif pending:
                new_series.append(pending.pop(0))
            else:
                raise ValueError("your message has more <ts><ts/> than loaded series; load one with /csv PATH, or write <ts>[1, 2, 3]<ts/>")
            return PLACEHOLDER

        content = PLACEHOLDER_OR_INLINE.sub(replace, text)
        if pending:  # CSV series the message did not place: appended at its end
            content = content.rstrip() + "\n" + "\n".join(PLACEHOLDER for _ in pending)
            new_series.extend(pending)
        return self.messages + [{"role": "user", "content": content}], self.series + new_series

    def commit(self, messages: list[dict[str, str]], series: list[list[float]], answer: str) -> None:
        self.messages = messages + [{"role": "assistant", "content": answer}]
        self.series = series
        self.pending = []


def serves_timeseries() -> bool:
    """Whether the chat command's arguments name a template with the `timeseries` plugin."""
    from llamafactory.data.template import TEMPLATES
    from llamafactory.hparams import get_infer_args

    from tsplugin.llamafactory.mm_plugin import TimeSeriesPlugin  # lazy: LLaMA-Factory's data package (this module loads inside a hook)

    _, data_args, _, _ = get_infer_args()
    template = TEMPLATES.get(data_args.template)
    return isinstance(getattr(template, "mm_plugin", None), TimeSeriesPlugin)


def run_chat(stock_run_chat: Any) -> None:
    """The chat loop for time-series templates; other templates get `stock_run_chat`."""
    if not serves_timeseries():
        return stock_run_chat()
    try:
        import readline  # noqa: F401  (line editing, as LLaMA-Factory's chat)
    except ImportError:
        pass
    from llamafactory.chat import ChatModel
    from llamafactory.extras.misc import torch_gc

    chat_model = ChatModel()
    conversation = SeriesConversation()
    print(BANNER)
    while True:
        try:
            query = input("\nUser: ")
        except UnicodeDecodeError:
            print("Detected decoding error at the inputs, please set the terminal encoding to utf-8.")
            continue
        except EOFError:
            break
        command = query.strip()
        if command == "exit":
            break
        if command == "clear":
            conversation.clear()
            torch_gc()
            print("History has been removed.")
            continue
        if command in ("/help", "help"):
            print(BANNER)
            continue
        try:
            if command.startswith("/csv"):
                print(conversation.load_csv(command[len("/csv"):]))
                continue
            messages, series = conversation.user_turn(query)
            pieces = chat_model.stream_chat(messages, audios=series or None)
            first = next(pieces, "")  # the series are checked here, before anything is printed
        except ValueError as err:  # bad series, unreadable CSV: say so, keep the conversation
            print(f"Error: {err}")
            continue
        print("Assistant: " + first, end="", flush=True)
        answer = first + "".join(print(piece, end="", flush=True) or piece for piece in pieces)
        print()
        conversation.commit(messages, series, answer)
