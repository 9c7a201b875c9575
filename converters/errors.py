"""Error types: a fatal input error (stops the run, exit 2), an output error (exit 3) and a per-record rejection (the record
goes to NAME.rejects.jsonl with a reason code and a message that names the file, record and fix)."""

from __future__ import annotations

from dataclasses import dataclass


class InputError(Exception):
    """The whole input cannot be processed (malformed JSON, missing --csv-dir, bad option): exit 2."""


class OutputError(Exception):
    """The outputs cannot be written (read-only folder, full disk); nothing was changed: exit 3."""


@dataclass(frozen=True)
class Reject:
    """Why one record (or one of its CSVs) cannot be converted.

    ``code`` is a stable machine-readable reason (counted in the report); ``message`` is the
    problem and the fix, without the ``file: record N:`` prefix, which the caller adds.
    """

    code: str
    message: str


class RejectError(Exception):
    """Raised inside per-record code; carries a :class:`Reject`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.reject = Reject(code, message)
