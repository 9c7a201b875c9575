"""Shared helpers for the tsconvert tests: build tiny inputs in tmp_path and run the CLI in-process."""

from __future__ import annotations

import json
from pathlib import Path

from converters.cli import main

FIXTURES = Path(__file__).parent / "fixtures"
GDSH = FIXTURES / "gdsh_sample" / "gdsh.json"
GDSH_CSV = FIXTURES / "gdsh_sample" / "timeseries" / "gdsh"
CHATTS_DEV = FIXTURES / "chatts_dev"


def write_csv(path: Path, n: int = 40, *, header: str = "timestamp,value", start: float = 1.0, rows: list[str] | None = None,
              encoding: str = "utf-8", sep: str = ",") -> Path:
    """A small regular CSV (timestamps one second apart, values start + i*0.5) or the given rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if rows is None:
        rows = [f"2025-06-01 00:{i // 60:02d}:{i % 60:02d}{sep}{start + i * 0.5}" for i in range(n)]
    path.write_bytes((header + "\n" + "\n".join(rows) + "\n").encode(encoding))
    return path


def gdsh_record(*images: str, text: str | None = None, answer: str = '{"is_anomaly": false}') -> dict:
    """A GDSH-style ShareGPT record with one <image> per image."""
    if text is None:
        text = "分析：" + "".join("<image>" for _ in images)
    return {"messages": [{"role": "user", "content": text}, {"role": "assistant", "content": answer}], "images": list(images)}


def write_json(path: Path, records: list, jsonl: bool = False) -> Path:
    if jsonl:
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    else:
        path.write_text(json.dumps(records, ensure_ascii=False, indent=2), encoding="utf-8")
    return path


def run(args: list[str]) -> int:
    """The CLI in-process, single worker (fast, deterministic), quiet progress."""
    extra = [] if "--workers" in args or args[0] in ("validate", "preview") else ["--workers", "1"]
    return main([*args, *extra])


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def convert_dir(tmp_path: Path, records: list, csvs: dict[str, list[str] | None] | None = None, *extra: str,
                name: str = "ds", jsonl: bool = False) -> tuple[int, Path]:
    """Write records + CSVs (name -> rows, None = regular 40-row CSV) under tmp_path and convert."""
    csv_dir = tmp_path / "csv"
    csv_dir.mkdir(exist_ok=True)
    for fname, rows in (csvs or {}).items():
        write_csv(csv_dir / fname, rows=rows)
    src = write_json(tmp_path / ("in.jsonl" if jsonl else "in.json"), records, jsonl=jsonl)
    out = tmp_path / "out"
    code = run([str(src), "--csv-dir", str(csv_dir), "-o", str(out), "--name", name, "-q", *extra])
    return code, out
