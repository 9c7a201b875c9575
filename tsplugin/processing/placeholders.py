"""Series placeholders: what one is and where it may stand. The one definition, shared by `tsconvert`
(convert and validate), training (tsplugin.llamafactory) and every chat/API path. No torch, no numpy.

Design choices:
- A placeholder is ChatTS's `<ts><ts/>` or the XML-looking `<ts></ts>` (both seen in the wild); the
  i-th placeholder of a conversation (system prompt first, then the turns in order) stands for series i.
- A placeholder may stand only in a user turn. LLaMA-Factory's multimodal plugin never sees the system
  prompt (a placeholder there is tokenised as raw `<ts>`/`<ts/>` tokens with no series behind them), and
  one in an assistant turn would be expanded into `<ts>` positions inside the answer: the model would be
  trained to write them. Both are rejected with the fix; `move_to_user_turns` is the explicit repair.
- `<ts>` or `<ts/>` outside a placeholder is an error too: the tokenizer turns it into a series position
  that no series fills.
- The same rules apply to any source placeholder (tsconvert's `<image>`): `Placeholder` carries the
  spelling, the rules are written once.

For an API: `check_messages(messages, n_series)` raises `PlaceholderError` (a ValueError with `.code`)
for OpenAI/LLaMA-Factory-shaped messages (`{"role": ..., "content": str}`).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

TS_TOKEN = "<ts>"
TS_END_TOKEN = "<ts/>"
PLACEHOLDER = TS_TOKEN + TS_END_TOKEN
IMAGE_TOKEN = "<image>"

USER = "user"
SYSTEM = "system"
# Roles a placeholder may stand in (LLaMA-Factory's Role.USER value).
PLACEHOLDER_ROLES = (USER,)


@dataclass(frozen=True)
class Placeholder:
    """One placeholder syntax: its canonical spelling (shown in messages) and the pattern matching it."""

    name: str
    pattern: re.Pattern

    def count(self, text: str) -> int:
        return len(self.pattern.findall(text))


@functools.cache
def ts_placeholder(ts_token: str = TS_TOKEN, ts_end_token: str = TS_END_TOKEN) -> Placeholder:
    """The series placeholder for a model's tokens: `<ts><ts/>`, and `<ts></ts>` when the token looks like a tag."""
    spellings = [ts_token + ts_end_token]
    if ts_token.startswith("<"):
        spellings.append(ts_token + "</" + ts_token[1:])
    pattern = re.compile("|".join(re.escape(s) for s in dict.fromkeys(spellings)))
    return Placeholder(ts_token + ts_end_token, pattern)


TS = ts_placeholder()
IMAGE = Placeholder(IMAGE_TOKEN, re.compile(re.escape(IMAGE_TOKEN)))
PLACEHOLDER_PATTERN = TS.pattern


def count_placeholders(text: str, ts_token: str = TS_TOKEN, ts_end_token: str = TS_END_TOKEN) -> int:
    """Number of series placeholders (`<ts><ts/>` or `<ts></ts>`) in `text`."""
    return ts_placeholder(ts_token, ts_end_token).count(text)


def has_ts_tokens(text: str, ts_token: str = TS_TOKEN, ts_end_token: str = TS_END_TOKEN) -> bool:
    """Whether `text` holds a series token at all (inside a placeholder or not)."""
    return ts_token in text or ts_end_token in text


@dataclass(frozen=True)
class PlaceholderProblem:
    """Why a conversation's placeholders cannot be used; `message` is the problem and the fix, without
    the `file: record N:` prefix, which the caller adds. Codes are stable (reports count them)."""

    code: str
    message: str


class PlaceholderError(ValueError):
    """A PlaceholderProblem raised; `.code` is its reason code."""

    def __init__(self, problem: PlaceholderProblem) -> None:
        super().__init__(problem.message)
        self.code = problem.code
        self.problem = problem


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def message_position(index: int) -> str:
    """Where a message stands in a request, as every serving error names it: `messages[0]` (0-based, as in
    the request's JSON; a part of it is `messages[0].content[1]`)."""
    return f"messages[{index}]"


def _where(role: str, turn: int, names: Sequence[str] | None = None) -> str:
    if role == SYSTEM:
        return "the system prompt"
    return f"{names[turn]} ({role})" if names is not None else f"message {turn + 1} ({role})"


def misplaced(turns: Sequence[tuple[str, str]], placeholder: Placeholder = TS, fix: str = "",
              names: Sequence[str] | None = None) -> PlaceholderProblem | None:
    """The first turn outside PLACEHOLDER_ROLES holding a placeholder, as a problem; None when all stand in user turns.

    `turns` are (role, text) in conversation order, the system prompt as role "system"; `fix` names an
    extra repair (e.g. a command-line option) appended to the message; `names` (one per turn) say where
    each turn stands (default `message N (role)`, 1-based over the turns).
    """
    for turn, (role, text) in enumerate(turns):
        found = placeholder.count(text) if role not in PLACEHOLDER_ROLES else 0
        if found:
            why = (
                "the system prompt is never expanded into series positions"
                if role == SYSTEM
                else "in an answer it would be expanded too, teaching the model to write series tokens"
            )
            return PlaceholderProblem(
                "placeholder_outside_user",
                f"{_plural(found, placeholder.name + ' placeholder')} in {_where(role, turn, names)}; a series may only "
                f"stand in a user turn ({why}). Move it into the user message that asks about the series{fix}",
            )
    return None


def stray_tokens(
    turns: Sequence[tuple[str, str]], ts_token: str = TS_TOKEN, ts_end_token: str = TS_END_TOKEN,
    names: Sequence[str] | None = None,
) -> PlaceholderProblem | None:
    """A `<ts>` or `<ts/>` that is not part of a placeholder, as a problem; None when there is none."""
    pattern = ts_placeholder(ts_token, ts_end_token).pattern
    for turn, (role, text) in enumerate(turns):
        rest = pattern.sub("", text)
        for token in (ts_token, ts_end_token):
            if token in rest:
                return PlaceholderProblem(
                    "stray_ts_token",
                    f"{_where(role, turn, names)} holds {token} outside a {ts_token}{ts_end_token} placeholder; the tokenizer "
                    f"makes it a series position no series fills. Write each placeholder whole as {ts_token}{ts_end_token} "
                    f"and remove other {ts_token} / {ts_end_token} text",
                )
    return None


def count_mismatch(found: int, n_series: int, placeholder: Placeholder = TS, what: str = "series") -> PlaceholderProblem | None:
    """Placeholders vs series (or images) count, as a problem; None when they are equal."""
    if found == n_series:
        return None
    return PlaceholderProblem(
        "placeholder_mismatch",
        f"{found} {placeholder.name} placeholders but {n_series} {what}. Make them equal",
    )


def placeholder_problem(
    turns: Sequence[tuple[str, str]],
    n_series: int,
    ts_token: str = TS_TOKEN,
    ts_end_token: str = TS_END_TOKEN,
    what: str = "series",
    names: Sequence[str] | None = None,
) -> PlaceholderProblem | None:
    """Everything about a conversation's series placeholders: no stray tokens, each placeholder in a
    user turn, one per series. The first problem found, or None. `what` names the series in a count
    mismatch (e.g. "series in column 'timeseries'")."""
    placeholder = ts_placeholder(ts_token, ts_end_token)
    problem = stray_tokens(turns, ts_token, ts_end_token, names) or misplaced(turns, placeholder, names=names)
    if problem is not None:
        return problem
    return count_mismatch(sum(placeholder.count(text) for _, text in turns), n_series, placeholder, what)


def message_turns(messages: Iterable[Any], system: str | None = None) -> list[tuple[str, str]]:
    """(role, text) pairs of `{"role", "content"}` messages (string contents only), an optional system first."""
    turns = [(SYSTEM, system)] if system else []
    for m in messages:
        if isinstance(m, dict) and isinstance(m.get("content"), str):
            turns.append((str(m.get("role")), m["content"]))
    return turns


def check_messages(
    messages: Iterable[Any],
    n_series: int,
    system: str | None = None,
    ts_token: str = TS_TOKEN,
    ts_end_token: str = TS_END_TOKEN,
    by_position: bool = False,
) -> None:
    """Raise PlaceholderError unless the messages' placeholders can carry `n_series` series. A message is
    named `message N (role)` as in dataset records (tsconvert, training), or with `by_position` by its
    place in the request, as serving names it: `messages[2] (user)` (`message_position`)."""
    messages = list(messages)
    turns = message_turns(messages, system)
    names = None
    if by_position:
        names = (["the system prompt"] if system else []) + [
            message_position(i) for i, m in enumerate(messages) if isinstance(m, dict) and isinstance(m.get("content"), str)]
    problem = placeholder_problem(turns, n_series, ts_token, ts_end_token, names=names)
    if problem is not None:
        raise PlaceholderError(problem)


def move_to_user_turns(
    system: str, turns: Sequence[tuple[str, str]], placeholder: Placeholder = TS
) -> tuple[str, list[tuple[str, str]], int]:
    """Move placeholders out of the system prompt and non-user turns, keeping their order.

    The system prompt's go to the start of the first user turn, an answer's to the end of the user turn
    before it (the conversation reads system, user 1, answer 1, user 2, ...), so placeholder i still
    stands for series i. Returns (system, turns, number moved). Needs a user turn before each answer.
    """
    moved = 0
    out: list[tuple[str, str]] = []
    carry = placeholder.pattern.findall(system)
    if carry:
        moved += len(carry)
        system = placeholder.pattern.sub("", system)
    for role, text in turns:
        if role in PLACEHOLDER_ROLES:
            if carry:
                text = "".join(carry) + "\n" + text
                carry = []
            out.append((role, text))
            continue
        found = placeholder.pattern.findall(text)
        if found:
            user = max((i for i, (r, _) in enumerate(out) if r in PLACEHOLDER_ROLES), default=None)
            if user is None:
                raise PlaceholderError(PlaceholderProblem(
                    "placeholder_outside_user",
                    f"{_plural(len(found), placeholder.name + ' placeholder')} in a {role} message with no user "
                    "message before it to move them to. Fix the record",
                ))
            out[user] = (out[user][0], out[user][1] + "\n" + "".join(found))
            text = placeholder.pattern.sub("", text)
            moved += len(found)
        out.append((role, text))
    if carry:
        raise PlaceholderError(PlaceholderProblem(
            "placeholder_outside_user",
            f"{_plural(len(carry), placeholder.name + ' placeholder')} in the system prompt and no user message "
            "to move them to. Fix the record",
        ))
    return system, out, moved


__all__ = [
    "IMAGE",
    "IMAGE_TOKEN",
    "PLACEHOLDER",
    "PLACEHOLDER_PATTERN",
    "PLACEHOLDER_ROLES",
    "TS",
    "TS_END_TOKEN",
    "TS_TOKEN",
    "Placeholder",
    "PlaceholderError",
    "PlaceholderProblem",
    "check_messages",
    "count_mismatch",
    "count_placeholders",
    "has_ts_tokens",
    "message_position",
    "message_turns",
    "misplaced",
    "move_to_user_turns",
    "placeholder_problem",
    "stray_tokens",
    "ts_placeholder",
]
