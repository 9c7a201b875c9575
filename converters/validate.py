"""`tsconvert validate`: check an existing ChatTS JSONL the way training will read it:
one ``<ts><ts/>`` per series, series are non-empty lists of finite numbers, lengths reported."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

from .errors import InputError
from .report import Report
from .writer import write_bytes_atomic

TS_PLACEHOLDER = "<ts><ts/>"


def check_record(rec: Any, min_length: int = 1) -> tuple[str, str] | list[int]:
    """Series lengths of a valid record, or (reason_code, message)."""
    if not isinstance(rec, dict):
        return "invalid_record", f"expected an object, got {type(rec).__name__}"
    if "timeseries" not in rec:
        return "invalid_record", "no 'timeseries' field. Each line needs input/output/timeseries (or messages/timeseries)"
    if "messages" in rec:
        msgs = rec["messages"]
        if not isinstance(msgs, list) or not all(isinstance(m, dict) and isinstance(m.get("content"), str) for m in msgs):
            return "invalid_record", "'messages' must be a list of {role, content} objects"
        texts = [m["content"] for m in msgs]
    else:
        if not isinstance(rec.get("input"), str) or not isinstance(rec.get("output"), str):
            return "invalid_record", "'input' and 'output' must be strings"
        texts = [rec["input"], rec["output"], rec.get("system") or ""]
    series = rec["timeseries"]
    if not isinstance(series, list):
        return "invalid_record", "'timeseries' must be a list of series"
    n_ph = sum(t.count(TS_PLACEHOLDER) for t in texts)
    if n_ph != len(series):
        return "placeholder_mismatch", f"{n_ph} <ts><ts/> placeholders but {len(series)} series. Make them equal"
    lengths = []
    for k, s in enumerate(series):
        if not isinstance(s, list) or not s:
            return "empty_series", f"series {k} is {'empty' if s == [] else 'not a list'}. Give a non-empty list of numbers"
        for j, v in enumerate(s):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                return "non_numeric", f"series {k} point {j} is {v!r}, not a finite number. Repair or drop the point"
        if len(s) < min_length:
            return "series_too_short", f"series {k} has {len(s)} points, fewer than --min-length {min_length}"
        lengths.append(len(s))
    return lengths


def run_validate(path: Path, min_length: int = 1, report_path: Path | None = None, quiet: bool = False) -> int:
    """Validate ``path``; prints problems and a summary, returns 0 when every record is valid."""
    report = Report(source=path.name, options={"min_length": min_length})
    try:
        fh = open(path, encoding="utf-8-sig")
    except OSError as exc:
        raise InputError(f"{path}: cannot open: {exc.strerror}. Check the path") from None
    with fh:
        index = -1
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            index += 1
            report.input += 1
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                result: tuple[str, str] | list[int] = ("invalid_json", f"column {exc.colno}: {exc.msg}")
            else:
                result = check_record(rec, min_length)
            if isinstance(result, tuple):
                code, msg = result
                report.rejected[code] += 1
                print(f"{path.name}: record {index} (line {lineno}): {msg}.", file=sys.stderr)
            else:
                report.converted += 1
                for n in result:
                    report.lengths.add(n)
    if not quiet:
        print(report.summary(ok_label="valid"))
    if report_path is not None:
        data = json.dumps(report.to_dict(ok_label="valid"), ensure_ascii=False, indent=2) + "\n"
        write_bytes_atomic(report_path, data.encode("utf-8"))
    return 1 if report.n_rejected else 0
