"""`tsconvert validate`: check an existing ChatTS JSONL (or Parquet, `--file-type parquet`'s output) the way training will read it, with the same
definitions training uses (tsplugin.processing.placeholders, tsplugin.processing.series_values, tsplugin.jsonl; all torch-free):
placeholders only in user turns and one per series, series non-empty lists of finite numbers whose
value encoding survives every training dtype, lengths reported. A bad line is one invalid record
(not UTF-8, not JSON, nested too deep, a 5000-digit number): never a traceback."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tsplugin.jsonl import DEFAULT_MAX_RECORD_BYTES, FileEncodingError, read_records
from tsplugin.processing.placeholders import (
    PLACEHOLDER,
    SYSTEM,
    USER,
    placeholder_problem,
)
from tsplugin.processing.series_values import TRAINING_CHECK_DTYPE, series_problem

from .errors import InputError
from .paths import refuse_overwriting_inputs
from .filetypes import read_parquet_records
from .report import Report
from .safeio import open_named_input
from .writer import write_bytes_atomic

TS_PLACEHOLDER = PLACEHOLDER
# The dtype training checks with (tsplugin.processing.series_values): validate answers as training will.
VALIDATE_DTYPE = TRAINING_CHECK_DTYPE
_ROLES = {"user": USER, "human": USER, "assistant": "assistant", "gpt": "assistant", "system": SYSTEM}


def _turns(rec: dict) -> list[tuple[str, str]] | tuple[str, str]:
    """(role, text) in conversation order, the system prompt first; or (reason_code, message)."""
    if "messages" in rec:
        both = [k for k in ("input", "output") if k in rec]
        if both:
            return "two_conversations", (f"both 'messages' and {' and '.join(repr(k) for k in both)}: two conversations in one "
                                         "record, and training would read only one. Keep one form")
        msgs = rec["messages"]
        if not isinstance(msgs, list) or not all(isinstance(m, dict) and isinstance(m.get("content"), str) for m in msgs):
            return "invalid_record", "'messages' must be a list of {role, content} objects"
        return [(_ROLES.get(m.get("role"), str(m.get("role"))), m["content"]) for m in msgs]
    if not isinstance(rec.get("input"), str) or not isinstance(rec.get("output"), str):
        return "invalid_record", "'input' and 'output' must be strings"
    system = rec.get("system")
    if system is not None and not isinstance(system, str):
        return "invalid_record", f"'system' must be a string, got {type(system).__name__}"
    return ([(SYSTEM, system)] if system else []) + [(USER, rec["input"]), ("assistant", rec["output"])]


def check_record(rec: Any, min_length: int = 1, dtype: str = VALIDATE_DTYPE) -> tuple[str, str] | list[int]:
    """Series lengths of a valid record, or (reason_code, message)."""
    if not isinstance(rec, dict):
        return "invalid_record", f"expected an object, got {type(rec).__name__}"
    if "timeseries" not in rec:
        return "invalid_record", "no 'timeseries' field. Each line needs input/output/timeseries (or messages/timeseries)"
    turns = _turns(rec)
    if isinstance(turns, tuple):
        return turns
    series = rec["timeseries"]
    if not isinstance(series, list):
        return "invalid_record", "'timeseries' must be a list of series"
    problem = placeholder_problem(turns, len(series))
    if problem is not None:
        return problem.code, problem.message
    lengths = []
    for k, s in enumerate(series):
        bad = series_problem(s, dtype)
        if bad is not None:
            return bad.code, f"series {k}: {bad.message}"
        if len(s) < min_length:
            return "series_too_short", f"series {k} has {len(s)} points, fewer than --min-length {min_length}"
        lengths.append(len(s))
    return lengths


def run_validate(path: Path, min_length: int = 1, report_path: Path | None = None, quiet: bool = False,
                 max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> int:
    """Validate ``path`` (JSONL, or Parquet by its `.parquet` suffix); prints problems and a summary, returns 0
    when every record is valid, 1 when some is not (InputError, exit 2, when the file cannot be read at all or
    --report would replace it)."""
    if report_path is not None:
        refuse_overwriting_inputs([report_path], [path])
    shown = _printable(path.name)
    report = Report(source=shown, options={"min_length": min_length})
    try:
        with open_named_input(path) as raw:
            records = read_parquet_records(raw, name=path) if path.suffix.lower() == ".parquet" else read_records(path, raw, max_record_bytes)
            for line in records:
                report.input += 1
                result = check_record(line.record, min_length) if line.ok else (line.code, line.message)
                if isinstance(result, tuple):
                    code, msg = result
                    report.rejected[code] += 1
                    where = f"record {line.index}" + (f" (line {line.lineno})" if line.lineno else "")
                    print(f"{shown}: {where}: {msg}.", file=sys.stderr)
                else:
                    report.converted += 1
                    for n in result:
                        report.lengths.add(n)
    except FileEncodingError as exc:
        raise InputError(str(exc)) from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}. Check the path") from None
    if not quiet:
        print(report.summary(ok_label="valid"))
    if report_path is not None:
        data = json.dumps(report.to_dict(ok_label="valid"), ensure_ascii=False, indent=2) + "\n"
        write_bytes_atomic(report_path, data.encode("utf-8", "backslashreplace"))
    return 1 if report.n_rejected else 0


def _printable(name: str) -> str:
    """A file name as text any terminal takes (undecodable bytes of the name shown as escapes)."""
    return name.encode("utf-8", "backslashreplace").decode("utf-8")
