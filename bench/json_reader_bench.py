"""Benchmark: tsconvert's streaming record reader vs ijson (yajl2_c) vs json.load of the whole file.

Usage: python bench/json_reader_bench.py [--records 20000] [--big-mib 64] [--repeat 3] [--old PATH]

Two inputs, generated here: a GDSH-like JSON array (many small records, Chinese text, indent=1)
and an array of a few large records (one string of --big-mib MiB each, the case the earlier reader
refused as "Unterminated string" above 8 MiB). Each reader runs --repeat times in this process;
the best time is printed with its ratio to json.load (the baseline: not streaming, same parser).
--old PATH times another copy of converters/jsonstream.py (e.g. the previous version) too. ijson
is only timed when installed (the `bench` extra). CPU time of one process; not a test.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from converters import jsonstream  # noqa: E402


def generate(root: Path, records: int, big_mib: int) -> tuple[Path, Path]:
    small = root / "small.json"
    recs = [{"messages": [{"role": "user", "content": f"请分析下图中 TAG-{i % 97:04d}.PV 的运行数据：<image>\n输出 JSON"},
                          {"role": "assistant", "content": json.dumps({"is_anomaly": False, "start": -1, "end": -1, "reason": "平稳"},
                                                                      ensure_ascii=False)}],
             "images": [f"/home/user/images/gdsh/gdsh_second_{i:06d}.PV.jpg"]} for i in range(records)]
    small.write_text(json.dumps(recs, ensure_ascii=False, indent=1), encoding="utf-8")
    big = root / "big.json"
    text = "长" * ((big_mib << 20) // 3)
    big.write_text(json.dumps([{"messages": [{"role": "user", "content": "<image>"}, {"role": "assistant", "content": text}],
                                "images": ["/x/a.jpg"]} for _ in range(3)], ensure_ascii=False), encoding="utf-8")
    return small, big


def best(fn: Callable[[Path], Any], path: Path, repeat: int) -> tuple[float, int]:
    times, n = [], 0
    for _ in range(repeat):
        t0 = time.process_time()
        n = sum(1 for _ in fn(path))
        times.append(time.process_time() - t0)
    return min(times), n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=20000)
    ap.add_argument("--big-mib", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--old", type=Path, help="another jsonstream.py to time (e.g. the previous version)")
    args = ap.parse_args()
    readers: dict[str, Callable[[Path], Any]] = {
        "json.load (whole file, baseline)": lambda p: json.loads(p.read_text(encoding="utf-8")),
        "tsconvert jsonstream.iter_raw_records": jsonstream.iter_raw_records,
    }
    if args.old:
        spec = importlib.util.spec_from_file_location("converters._old_jsonstream", args.old)
        old = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(old)  # type: ignore[union-attr]
        readers["previous jsonstream.iter_records"] = old.iter_records
    try:
        import ijson

        readers[f"ijson.items ({ijson.backend})"] = lambda p: ijson.items(open(p, "rb"), "item")
    except ImportError:
        print("ijson not installed: pip install ijson (the bench extra) to time it")
    with tempfile.TemporaryDirectory() as tmp:
        small, big = generate(Path(tmp), args.records, args.big_mib)
        for path, label in ((small, f"{args.records} small records, {small.stat().st_size / 2**20:.1f} MiB"),
                            (big, f"3 records of ~{args.big_mib} MiB each, {big.stat().st_size / 2**20:.1f} MiB")):
            print(label)
            base = None
            for name, fn in readers.items():
                try:
                    t, n = best(fn, path, args.repeat)
                except Exception as exc:  # a reader that fails on this input is reported, not timed
                    print(f"  {name:42s} FAILED: {type(exc).__name__}: {str(exc)[:100]}")
                    continue
                base = base or t
                print(f"  {name:42s} {t:7.3f} s CPU  {t / base:5.2f}x baseline  ({n} records)")


if __name__ == "__main__":
    main()
