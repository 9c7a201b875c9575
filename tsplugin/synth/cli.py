"""`tsplugin synth -o DIR --records N --seed S --name NAME`: alignment data composed from known attributes.

Writes, as one set (all appear or nothing changes, the way tsconvert writes):
  DIR/NAME.jsonl          ChatTS standard: {"input", "output", "timeseries", "qa"} per record, one
                          <ts><ts/> per series; `qa` says what the question asks and the truth it is scored on
  DIR/NAME.labels.jsonl   one line per series, every attribute (schema: tsplugin.synth.labels)
  DIR/dataset_info.json   entry NAME (added under a lock; other entries kept)
Records are generated and written one at a time (memory does not grow with --records); record i depends
only on (--seed, i) and the options, so the same command writes the same bytes.
Exit codes: 0 ok, 2 bad option, 3 outputs could not be written.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from converters.errors import OutputError
from converters.formats import get_output_format
from converters.jsonenc import dumps_series, record_line
from converters.paths import check_dataset_name
from converters.writer import OutputSet
from tsplugin.synth.attributes import AttributeMix, Composed, compose_record
from tsplugin.synth.labels import LABELS_SUFFIX, LOCAL_TYPES, NOISE_LEVELS, SEASON_SHAPES, TRENDS, dumps_label, validate_label
from tsplugin.synth.qa import KINDS, ask, prompt

DEFAULT_KINDS = "trend,seasonality,noise,local,period,amplitude,position,value,max,min,compare_max,related,description"


@dataclass(frozen=True)
class SynthOptions:
    out_dir: Path
    name: str
    records: int
    seed: int = 0
    series_per_record: tuple[int, int] = (1, 1)
    kinds: tuple[tuple[str, float], ...] = field(default_factory=lambda: parse_kinds(DEFAULT_KINDS))
    mix: AttributeMix = field(default_factory=AttributeMix)


def parse_kinds(text: str) -> tuple[tuple[str, float], ...]:
    """'trend=2,local,value=0.5' -> ((trend, 2.0), (local, 1.0), (value, 0.5)); unknown kinds list the valid ones."""
    out = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, weight = item.partition("=")
        KINDS.get(name.strip(), where="--kinds")
        try:
            w = float(weight) if weight else 1.0
        except ValueError:
            raise ValueError(f"--kinds: weight {weight!r} of {name!r} is not a number (write e.g. trend=2)") from None
        if not w > 0:
            raise ValueError(f"--kinds: weight of {name!r} is {weight}; a number > 0 (leave the kind out to drop it)")
        out.append((name.strip(), w))
    if not out:
        raise ValueError(f"--kinds is empty; choose from {', '.join(KINDS)}")
    return tuple(out)


def parse_range(text: str, what: str) -> tuple[int, int]:
    """'2' -> (2, 2); '1-3' -> (1, 3)."""
    lo, _, hi = text.partition("-")
    try:
        pair = (int(lo), int(hi or lo))
    except ValueError:
        raise ValueError(f"{what} is {text!r}; a count (2) or a range (1-3)") from None
    if not 1 <= pair[0] <= pair[1] <= 8:
        raise ValueError(f"{what} is {text!r}; counts between 1 and 8, low-high")
    return pair


def records(opts: SynthOptions) -> Iterator[tuple[bytes, list[Composed]]]:
    """(data line, its series) per record, in order."""
    lo, hi = opts.series_per_record
    for i in range(opts.records):
        n_series = lo if lo == hi else lo + (i % (hi - lo + 1))
        rng, series = compose_record(opts.seed, i, n_series, opts.mix)
        qa = ask(rng, series, opts.kinds)
        fields = {"input": prompt(series, qa.question), "output": qa.answer}
        line = record_line({**fields, "qa": qa.meta()}, [dumps_series(c.values) for c in series])
        yield line, series


def write(opts: SynthOptions) -> dict[str, int]:
    """Write the three outputs as one set; returns counts."""
    counts = {"records": 0, "series": 0}
    with OutputSet(opts.out_dir) as out:
        data, labels = out.open(f"{opts.name}.jsonl"), out.open(f"{opts.name}{LABELS_SUFFIX}")
        for line, series in records(opts):
            data.write(line)
            for c in series:
                problems = validate_label(c.labels.to_json())
                if problems:  # the generator's own invariant: a label it writes is one readers accept
                    raise RuntimeError(f"record {c.labels.record} series {c.labels.series}: {'; '.join(problems)}")
                labels.write(dumps_label(c.labels))
            counts["records"] += 1
            counts["series"] += len(series)
        out.commit({opts.name: get_output_format("chatts").entry(f"{opts.name}.jsonl", False)})
    return counts


def _choices(text: str, valid: tuple[str, ...], what: str) -> tuple[str, ...]:
    values = tuple(v.strip() for v in text.split(",") if v.strip())
    bad = [v for v in values if v not in valid]
    if bad or not values:
        raise ValueError(f"{what}: {', '.join(bad) or 'nothing'} given; choose from {', '.join(valid)}")
    return values


def options(args: argparse.Namespace) -> SynthOptions:
    if args.records < 1:
        raise ValueError(f"--records is {args.records}; at least 1")
    check_dataset_name(args.name)  # tsconvert's one rule: a plain file name, no path (exit 2 before anything is written)
    if args.name.startswith("."):
        raise ValueError(f"--name {args.name!r}: a file stem (letters, digits, _ -), not a hidden file")
    mix = AttributeMix(
        trends=_choices(args.trends, TRENDS, "--trends"), shapes=_choices(args.shapes, SEASON_SHAPES, "--shapes"),
        noises=_choices(args.noises, NOISE_LEVELS, "--noises"),
        local_types=_choices(args.local_types, LOCAL_TYPES, "--local-types"),
        seasonal_prob=args.seasonal_prob, local_prob=args.local_prob, max_segments=args.max_segments,
        max_local=args.max_local, related_prob=args.related_prob, min_length=args.min_length, max_length=args.max_length)
    return SynthOptions(out_dir=args.out_dir, name=args.name, records=args.records, seed=args.seed,
                        series_per_record=parse_range(args.series_per_record, "--series-per-record"),
                        kinds=parse_kinds(args.kinds), mix=mix)


def run(args: argparse.Namespace) -> int:
    try:
        opts = options(args)
    except ValueError as exc:
        print(f"tsplugin synth: {exc}", file=sys.stderr)
        return 2
    try:
        counts = write(opts)
    except ValueError as exc:  # a kind mix no record can use, found on the first record
        print(f"tsplugin synth: {exc}; nothing was written", file=sys.stderr)
        return 2
    except OutputError as exc:
        print(f"tsplugin synth: {exc}", file=sys.stderr)
        return 3
    if not args.quiet:
        print(f"tsplugin synth: {counts['records']} records, {counts['series']} series -> "
              f"{opts.out_dir / (opts.name + '.jsonl')}, {opts.name}{LABELS_SUFFIX}, entry {opts.name!r} in "
              f"{opts.out_dir / 'dataset_info.json'}")
    return 0


def add_parser(subparsers) -> None:
    d = AttributeMix()
    p = subparsers.add_parser("synth", help="alignment data: series composed from known attributes + Q&A, with labels",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-o", "--out-dir", type=Path, required=True, help="output folder (created; dataset_info.json there is updated)")
    p.add_argument("--name", required=True, help="dataset name: NAME.jsonl, NAME.labels.jsonl, entry NAME")
    p.add_argument("--records", type=int, required=True, help="number of records")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0): same seed and options, same bytes")
    p.add_argument("--min-length", type=int, default=d.min_length, help=f"shortest series (default {d.min_length}, >= 32)")
    p.add_argument("--max-length", type=int, default=d.max_length, help=f"longest series (default {d.max_length})")
    p.add_argument("--series-per-record", default="1",
                   help="series per record: a count or a range LOW-HIGH, cycled over records (default 1; comparison "
                        "questions need 2 or more)")
    p.add_argument("--kinds", default=DEFAULT_KINDS,
                   help=f"question kinds with optional weights, e.g. trend=2,local (default: all: {DEFAULT_KINDS}); a kind "
                        "that does not apply to a record (period without seasonality) is skipped for it")
    p.add_argument("--trends", default=",".join(TRENDS), help="trend directions drawn per segment (default: all)")
    p.add_argument("--max-segments", type=int, default=d.max_segments, help=f"trend segments per series, 1..N (default {d.max_segments})")
    p.add_argument("--seasonal-prob", type=float, default=d.seasonal_prob, help=f"share of seasonal series (default {d.seasonal_prob})")
    p.add_argument("--shapes", default=",".join(SEASON_SHAPES), help="season shapes (default: all)")
    p.add_argument("--noises", default=",".join(NOISE_LEVELS), help="noise levels (default: all)")
    p.add_argument("--local-prob", type=float, default=d.local_prob, help=f"share of series with local changes (default {d.local_prob})")
    p.add_argument("--max-local", type=int, default=d.max_local, help=f"local changes per series, 1..N when any (default {d.max_local})")
    p.add_argument("--local-types", default=",".join(LOCAL_TYPES), help="local change types (default: all)")
    p.add_argument("--related-prob", type=float, default=d.related_prob,
                   help=f"share of multi-series records whose series change at the same positions (default {d.related_prob})")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    p.set_defaults(func=run)
