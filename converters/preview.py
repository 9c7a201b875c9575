"""`tsconvert preview`: plot chosen records of a ChatTS JSONL to PNG, one panel per series, with the
anomaly span shaded when the answer is GDSH-style JSON (is_anomaly, anomaly_type, start, end)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from .errors import InputError


def parse_indices(spec: str) -> set[int]:
    """``"0,3,7-9"`` -> {0, 3, 7, 8, 9}."""
    out: set[int] = set()
    for part in spec.split(","):
        part = part.strip()
        try:
            if "-" in part:
                lo, hi = part.split("-", 1)
                out.update(range(int(lo), int(hi) + 1))
            elif part:
                out.add(int(part))
        except ValueError:
            raise InputError(f"--records {spec!r}: {part!r} is not an index or a range like 7-9") from None
    return out


def anomaly_span(answer: str) -> tuple[int, int, str] | None:
    """(start, end, label) when the answer is JSON reporting an anomaly with integer start/end."""
    try:
        obj = json.loads(answer)
    except (json.JSONDecodeError, TypeError):
        return None
    if not isinstance(obj, dict) or not obj.get("is_anomaly"):
        return None
    start, end = obj.get("start"), obj.get("end")
    if not isinstance(start, int) or not isinstance(end, int):
        return None
    return start, end, str(obj.get("anomaly_type", "anomaly"))


def _answer(rec: dict[str, Any]) -> str:
    if "output" in rec:
        return str(rec["output"])
    msgs = [m for m in rec.get("messages", []) if m.get("role") == "assistant"]
    return str(msgs[-1]["content"]) if msgs else ""


def render(rec: dict[str, Any], index: int, path: Path) -> None:
    """Write one PNG for record ``rec``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = rec.get("timeseries") or []
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
    fig.savefig(path, dpi=90)
    plt.close(fig)


def run_preview(path: Path, records: str, out_dir: Path) -> int:
    """Render the chosen records; returns 1 when an index is not in the file."""
    wanted = parse_indices(records)
    out_dir.mkdir(parents=True, exist_ok=True)
    found: set[int] = set()
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
            if index not in wanted:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path.name}: line {lineno} column {exc.colno}: invalid JSON: {exc.msg}") from None
            png = out_dir / f"{path.stem}.rec{index}.png"
            render(rec, index, png)
            print(png)
            found.add(index)
            if found == wanted:
                break
    missing = sorted(wanted - found)
    if missing:
        print(f"tsconvert: {path.name} has no record {missing} ({index + 1} records, numbered from 0)", file=sys.stderr)
        return 1
    return 0
