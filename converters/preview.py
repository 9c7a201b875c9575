"""`tsconvert preview`: plot chosen records of a ChatTS JSONL to PNG, one panel per series, with the
anomaly span shaded when the answer is GDSH-style JSON (is_anomaly, anomaly_type, start, end).

A record that cannot be drawn (not UTF-8, not JSON, not an object, a series holding a string) is
named with the reason and skipped; the others are still drawn. Exit codes: 0 all drawn, 1 some
record missing or not drawable, 2 the file or the output folder cannot be used."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any, Iterator

from tsplugin.jsonl import FileEncodingError, Line, read_records
from tsplugin.processing.series_values import show_value

from .errors import InputError
from .paths import refuse_overwriting_inputs
from .safeio import open_named_input

MAX_RANGE = 100_000  # records one --records range may name
MAX_PANELS = 64  # series drawn per record (a figure is 2.6 inches per panel)


def parse_indices(spec: str) -> set[int]:
    """``"0,3,7-9"`` -> {0, 3, 7, 8, 9}."""
    out: set[int] = set()
    for part in spec.split(","):
        part = part.strip()
        try:
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                if not 0 <= lo <= hi or hi - lo >= MAX_RANGE:
                    raise InputError(f"--records {spec!r}: {part!r} must be a range low-high of at most {MAX_RANGE:,} records, "
                                     "numbered from 0")
                out.update(range(lo, hi + 1))
            elif part:
                out.add(int(part))
        except ValueError:
            raise InputError(f"--records {spec!r}: {part!r} is not an index or a range like 7-9") from None
    return out


def anomaly_span(answer: str) -> tuple[int, int, str] | None:
    """(start, end, label) when the answer is JSON reporting an anomaly with integer start/end."""
    try:
        obj = json.loads(answer)
    except (ValueError, TypeError, RecursionError):
        return None
    if not isinstance(obj, dict) or not obj.get("is_anomaly"):
        return None
    start, end = obj.get("start"), obj.get("end")
    if not isinstance(start, int) or not isinstance(end, int) or isinstance(start, bool) or isinstance(end, bool):
        return None
    if max(abs(start), abs(end)) > 2**53:  # beyond any series; a float axis cannot place it
        return None
    return start, end, str(obj.get("anomaly_type", "anomaly"))


def _answer(rec: dict[str, Any]) -> str:
    if "output" in rec:
        return rec["output"] if isinstance(rec["output"], str) else ""
    messages = rec.get("messages")
    msgs = [m for m in (messages if isinstance(messages, list) else []) if isinstance(m, dict) and m.get("role") == "assistant"]
    return msgs[-1].get("content") if msgs and isinstance(msgs[-1].get("content"), str) else ""


def drawable(rec: Any) -> tuple[list[list[float]], str] | str:
    """(series as float lists with non-finite points as NaN, a note) or the reason the record cannot be drawn."""
    if not isinstance(rec, dict):
        return f"expected a JSON object, got {type(rec).__name__}"
    series = rec.get("timeseries") or []
    if not isinstance(series, list):
        return f"'timeseries' must be a list of series, got {type(series).__name__}"
    out, gaps = [], 0
    for k, values in enumerate(series[:MAX_PANELS]):
        if not isinstance(values, list):
            return f"series {k} is {show_value(values)}, not a list of numbers"
        row = []
        for j, v in enumerate(values):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                return f"series {k} value {j} is {show_value(v)}, not a number"
            try:
                x = float(v)
            except OverflowError:
                x = math.nan
            gaps += not math.isfinite(x)
            row.append(x if math.isfinite(x) else math.nan)
        out.append(row)
    notes = []
    if len(series) > MAX_PANELS:
        notes.append(f"first {MAX_PANELS} of {len(series)} series drawn")
    if gaps:
        notes.append(f"{gaps} non-finite point(s) left as gaps")
    return out, "; ".join(notes)


def render(rec: dict[str, Any], index: int, path: Path, series: list[list[float]] | None = None) -> None:
    """Write one PNG for record ``rec`` (``series``: its values as `drawable` returned them)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = rec.get("timeseries") or [] if series is None else series
    span = anomaly_span(_answer(rec))
    n = max(len(series), 1)
    fig, axes = plt.subplots(n, 1, figsize=(12, 2.6 * n), squeeze=False)
    for k, ax in enumerate(axes[:, 0]):
        if k >= len(series):
            ax.text(0.5, 0.5, "no series", ha="center", va="center")
            continue
        ax.plot(range(len(series[k])), series[k], lw=0.7, color="tab:blue")
        ax.set_title(f"record {index} - series {k} ({len(series[k])} points)", fontsize=10)
        ax.set_xlabel("point index")
        ax.grid(alpha=0.3)
        if span is not None:
            start, end, label = span
            ax.axvspan(start, end, color="tab:red", alpha=0.18, label=f"{label} [{start}, {end}]")
            ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=90)
    finally:
        plt.close(fig)


def run_preview(path: Path, records: str, out_dir: Path) -> int:
    """Render the chosen records; returns 1 when an index is not in the file or a record cannot be drawn."""
    wanted = parse_indices(records)
    name = path.name.encode("utf-8", "backslashreplace").decode("utf-8")
    try:
        with open_named_input(path) as raw:  # the input is checked before -o is created
            try:
                out_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise InputError(f"-o {out_dir}: cannot create the folder: {exc.strerror or exc}. Pick a writable folder") from None
            index, found, failed = _draw(read_records(path, raw), path, name, wanted, out_dir)
    except FileEncodingError as exc:
        raise InputError(str(exc)) from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}. Check the path") from None
    missing = sorted(wanted - found)
    if missing:
        print(f"tsconvert: {name} has no record {missing} ({index + 1} records, numbered from 0)", file=sys.stderr)
    return 1 if missing or failed else 0


def _draw(lines: Iterator[Line], path: Path, name: str, wanted: set[int], out_dir: Path) -> tuple[int, set[int], int]:
    """Render the wanted records; returns (last index read, indices found, records not drawn)."""
    found: set[int] = set()
    failed = 0
    index = -1
    for line in lines:
        index = line.index
        if index not in wanted:
            continue
        found.add(index)
        result = drawable(line.record) if line.ok else line.message
        if isinstance(result, str):
            print(f"tsconvert: {name}: record {index} (line {line.lineno}): {result}; not drawn.", file=sys.stderr)
            failed += 1
        else:
            series, note = result
            png = out_dir / f"{path.stem}.rec{index}.png"
            refuse_overwriting_inputs([png], [path])
            try:
                render(line.record, index, png, series)
            except OSError as exc:
                raise InputError(f"{png}: cannot write: {exc.strerror or exc}. Pick a writable -o folder") from None
            print(png)
            if note:
                print(f"tsconvert: {name}: record {index}: {note}.", file=sys.stderr)
        if found == wanted:
            break
    return index, found, failed
