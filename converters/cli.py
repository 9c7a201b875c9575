"""`tsconvert` command line: convert (default), validate, preview, forecast, describe.

``tsconvert gdsh.json --csv-dir DIR`` is short for ``tsconvert convert gdsh.json --csv-dir DIR``.
Heavy imports (pyarrow, matplotlib) happen inside the sub-commands so --help stays fast.
Exit codes (listed in --help, one definition in EXIT_CODES): see below. No traceback for any of them.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Sequence

# lazy imports: each sub-command's modules load when it runs (`tsconvert --help` imports no pyarrow).
from . import __version__
from .errors import InputError, OutputError

EXIT_OK, EXIT_REJECTED, EXIT_USAGE, EXIT_OUTPUT, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 3, 130, 143
EXIT_CODES = (
    (EXIT_OK, "success"),
    (EXIT_REJECTED, "--strict and some records were rejected (validate: the file has invalid records)"),
    (EXIT_USAGE, "usage error or unusable input: bad option, missing --csv-dir, unreadable top-level JSON, "
                 "an output that would overwrite an input; nothing was written"),
    (EXIT_OUTPUT, "the outputs could not be written (read-only folder, full disk, permissions); nothing was changed"),
    (EXIT_INTERRUPTED, "interrupted (Ctrl-C); nothing was changed"),
    (EXIT_TERMINATED, "terminated (SIGTERM); nothing was changed"),
)
EXIT_HELP = "exit codes:\n" + "\n".join(f"  {code:<4} {text}" for code, text in EXIT_CODES)

COMMANDS = ("convert", "validate", "preview", "forecast", "describe")

# Choices are listed here rather than read from the registries so --help imports nothing heavy;
# tests check both lists agree.
MISSING_CHOICES = ("drop", "interpolate", "reject")
DOWNSAMPLE_CHOICES = ("lttb", "minmax", "window")
UNSORTED_CHOICES = ("reject", "sort")
DUPLICATE_CHOICES = ("first", "last", "reject")
FORMAT_CHOICES = ("chatts", "sharegpt")
INPUT_FORMAT_CHOICES = ("alpaca", "auto", "openai", "sharegpt")
FEATURE_CHOICES = ("M", "MS", "S")
MISPLACED_CHOICES = ("reject", "move")
NUMBER_FORMAT_CHOICES = ("auto", "decimal-comma", "plain", "thousands-comma")
DTYPE_CHOICES = ("bf16", "fp16", "fp32")
FILE_TYPE_CHOICES = ("jsonl", "parquet")  # filetypes.FILE_TYPES
SERIES_DTYPE_CHOICES = ("float32", "float64")  # filetypes.SERIES_DTYPES
DEFAULT_MAX_CSV_MB = 256  # safeio.DEFAULT_MAX_CSV_BYTES, in MiB (a test checks they agree)
DEFAULT_MAX_RECORD_MB = 64  # tsplugin.jsonl.DEFAULT_MAX_RECORD_BYTES, in MiB (a test checks they agree)
ENCODING_HELP = ("text encoding of the CSVs, e.g. cp1252, latin-1, gbk; auto reads UTF-8, and GBK only when every non-ASCII "
                 "character confirms it, and names the option to pass otherwise (default: auto)")
MAX_RECORD_HELP = (f"a record (JSONL line) longer than this many bytes is rejected unread, with its line number, and the run "
                   f"goes on; memory stays bounded by it (default: {DEFAULT_MAX_RECORD_MB} MiB)")


class _Terminated(BaseException):
    """SIGTERM, raised in the main thread so every staged output is discarded on the way out."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise _Terminated()


def build_parser() -> argparse.ArgumentParser:
    """The full parser (used by main and by the test that checks every option has help)."""
    parser = argparse.ArgumentParser(
        prog="tsconvert",
        description=(
            "Turn image-referencing multimodal JSON (LLaMA-Factory/LLaVA style) plus one CSV series per image "
            "into ChatTS JSONL for LLaMA-Factory, losing nothing: every record is converted or listed in "
            "NAME.rejects.jsonl with the reason. 'tsconvert FILE ...' is short for 'tsconvert convert FILE ...'."
        ),
        epilog=EXIT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"tsconvert {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{convert,validate,preview,forecast,describe}")
    _add_convert(sub.add_parser("convert", help="JSON/JSONL + CSV folder -> NAME.jsonl, rejects, report, dataset_info.json entry",
                                description="Convert multimodal records whose images are time-series plots into ChatTS JSONL.",
                                epilog=EXIT_HELP, formatter_class=argparse.RawDescriptionHelpFormatter))
    _add_validate(sub.add_parser("validate", help="check an existing ChatTS JSONL or Parquet file (placeholders vs series, numbers, lengths)",
                                 description="Check an existing ChatTS JSONL file; exit 1 if any record is invalid."))
    _add_preview(sub.add_parser("preview", help="render chosen records' series to PNG (with the answer's anomaly span)",
                                description="Plot the series of chosen records of a ChatTS JSONL so a person can eyeball them."))
    _add_forecast(sub.add_parser("forecast", help="ETT-style CSV (date + variables) -> sliding-window train/val/test JSONL for forecasting",
                                 description="Cut a date + variables CSV into forecasting windows (chronological 70/10/20 split, "
                                             "train-only z-scoring) as ChatTS JSONL: the answer is the future values as text.",
                                 epilog=EXIT_HELP, formatter_class=argparse.RawDescriptionHelpFormatter))
    _add_describe(sub.add_parser("describe", help="your own CSV series -> extracted attributes (labels) + Q&A for alignment training",
                                 description="Extract trend segments, seasonality and period, local changes and noise level from "
                                             "each series (CSV folder, or records JSON + CSV folder), each with a confidence; write "
                                             "Q&A about the attributes it is sure of, the labels, rejects and a report.",
                                 epilog=EXIT_HELP, formatter_class=argparse.RawDescriptionHelpFormatter))
    return parser


def _add_describe(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", type=Path, nargs="?", help="optional records JSON/JSONL (as convert reads); without it every "
                                                       "*.csv under --csv-dir is one record")
    p.add_argument("--csv-dir", type=Path, required=True, help="folder with the CSVs; nothing outside it is read")
    p.add_argument("-o", "--out-dir", type=Path, default=Path("."), help="output folder (default: current folder)")
    p.add_argument("--name", required=True, help="writes NAME.jsonl, NAME.labels.jsonl, NAME.rejects.jsonl, NAME.report.json, entry NAME")
    p.add_argument("--value-col", action="append", dest="value_cols", metavar="COL",
                   help="value column, repeat for several (default: every column but --time-col for a CSV folder, value with INPUT)")
    p.add_argument("--time-col", default="timestamp", help="timestamp column, never a series; '' for none (default: timestamp)")
    p.add_argument("--csv-pattern", default="{stem}.csv", help="CSV path for an image, with INPUT (default: {stem}.csv)")
    p.add_argument("--missing", choices=MISSING_CHOICES, default="interpolate",
                   help="non-numeric/empty/NaN cells: interpolate, drop the rows, or reject the record (default: interpolate)")
    p.add_argument("--max-missing", type=float, default=0.5, help="reject a series when more than this fraction of rows is missing (default: 0.5)")
    p.add_argument("--max-gap", type=float, default=0.05,
                   help="reject a series with a run of missing values longer than this fraction of its rows (default: 0.05)")
    p.add_argument("--min-length", type=int, default=16, help="reject series shorter than this (default: 16)")
    p.add_argument("--min-confidence", type=float, default=0.7,
                   help="leave out questions whose attribute's confidence is below this, counted in the report (default: 0.7)")
    p.add_argument("--seed", type=int, default=0, help="seed of the question and phrasing draw (default: 0)")
    p.add_argument("--number-format", choices=NUMBER_FORMAT_CHOICES, default="auto", help="number format of the CSVs (default: auto)")
    p.add_argument("--encoding", default="auto", help=ENCODING_HELP)
    _add_csv_size_and_links(p)
    p.add_argument("--strict", action="store_true", help="exit 1 if any record is rejected")
    p.add_argument("-q", "--quiet", action="store_true", help="no summary")


def _add_csv_size_and_links(p: argparse.ArgumentParser) -> None:
    """convert's and describe's CSV read limits (safeio.ReadLimits): one definition, the same meaning in both."""
    p.add_argument("--max-csv-bytes", type=int, default=DEFAULT_MAX_CSV_MB << 20,
                   help=f"reject a CSV larger than this many bytes (default: {DEFAULT_MAX_CSV_MB} MiB)")
    p.add_argument("--allow-hard-links", action="store_true",
                   help="read CSVs that have several hard links (refused by default: a hard link may be a file outside --csv-dir)")


def _check_max_csv_bytes(value: int) -> None:
    if value < 1:
        raise InputError(f"--max-csv-bytes {value}: must be at least 1")


def _run_describe(args: argparse.Namespace) -> int:
    from .csvread import check_encoding
    from .describe.pipeline import DescribeOptions, describe

    if args.min_length < 4 or not 0 <= args.min_confidence <= 1 or not 0 <= args.max_gap <= 1:
        raise InputError("--min-length is at least 4, --min-confidence and --max-gap are fractions in [0, 1]")
    _check_max_csv_bytes(args.max_csv_bytes)
    opts = DescribeOptions(
        csv_dir=args.csv_dir, out_dir=args.out_dir, name=args.name, input=args.input,
        value_cols=tuple(args.value_cols) if args.value_cols else None, time_col=args.time_col or None,
        csv_pattern=args.csv_pattern, missing=args.missing, max_missing=args.max_missing, max_gap=args.max_gap,
        min_length=args.min_length, min_confidence=args.min_confidence, seed=args.seed, number_format=args.number_format,
        encoding=check_encoding(args.encoding), max_csv_bytes=args.max_csv_bytes, allow_hard_links=args.allow_hard_links,
    )
    report = describe(opts)
    q = report["questions"]
    if not args.quiet:
        print(f"{report['source']}: {report['input']} records: {report['described']} described + {report['rejected']} rejected")
        for code, n in report["rejected_by_reason"].items():
            print(f"  rejected {code}: {n}")
        left = sum(q["left_out_uncertain"].values())
        print(f"  questions: {q['written']} written, {left} left out (attribute below confidence {q['min_confidence']:g})")
        print(f"wrote {args.out_dir / (args.name + '.jsonl')} (+ .labels.jsonl, .rejects.jsonl, .report.json) and entry "
              f"{args.name!r} in {args.out_dir / 'dataset_info.json'}")
    if args.strict and report["rejected"]:
        print(f"tsconvert: --strict: {report['rejected']} record(s) rejected, see {args.out_dir / (args.name + '.rejects.jsonl')}",
              file=sys.stderr)
        return EXIT_REJECTED
    return EXIT_OK


def _add_convert(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", type=Path, help="records: a JSON array or JSONL file (ShareGPT, Alpaca or OpenAI form)")
    p.add_argument("--csv-dir", type=Path, required=True, help="folder with one CSV per image; nothing outside it is read")
    p.add_argument("-o", "--out-dir", type=Path, default=Path("."), help="output folder (default: current folder)")
    p.add_argument("--name", help="dataset name: writes NAME.jsonl and the NAME entry of dataset_info.json (default: input file stem)")
    p.add_argument("--format", dest="output_format", choices=FORMAT_CHOICES, default="chatts",
                   help="chatts: input/output/timeseries (one round); sharegpt: messages/timeseries, keeps multi-turn and system "
                        "prompts (the file type is --file-type)")
    _add_file_type(p)
    p.add_argument("--input-format", choices=INPUT_FORMAT_CHOICES, default="auto", help="input record form (default: detected per record)")
    p.add_argument("--csv-pattern", default="{stem}.csv",
                   help="CSV path under --csv-dir for an image; fields {stem} {name} {parent} {relstem} (default: {stem}.csv)")
    p.add_argument("--value-col", action="append", dest="value_cols", metavar="COL",
                   help="value column (case/space/BOM-insensitive; default: value); repeat for several series per image, in order")
    p.add_argument("--time-col", default="timestamp", help="timestamp column used to check order and duplicates; '' to skip (default: timestamp)")
    p.add_argument("--missing", choices=MISSING_CHOICES, default="interpolate",
                   help="non-numeric/empty/NaN cells: interpolate linearly, drop the rows, or reject the record (default: interpolate)")
    p.add_argument("--max-missing", type=float, default=0.5, help="reject a series when more than this fraction of rows is missing (default: 0.5)")
    p.add_argument("--unsorted", choices=UNSORTED_CHOICES, default="sort", help="timestamps out of order: sort rows or reject (default: sort)")
    p.add_argument("--duplicates", choices=DUPLICATE_CHOICES, default="first", help="duplicated timestamps: keep first, keep last or reject (default: first)")
    p.add_argument("--min-length", type=int, default=16, help="reject series shorter than this after cleaning (default: 16)")
    p.add_argument("--max-length", type=int, default=None, help="cap series length (default: keep whole)")
    p.add_argument("--downsample", choices=DOWNSAMPLE_CHOICES, default="lttb",
                   help="how --max-length caps: lttb or minmax keep spikes (point indices change), window keeps the first N (default: lttb)")
    p.add_argument("--misplaced-placeholders", dest="misplaced", choices=MISPLACED_CHOICES, default="reject",
                   help="<image> in a system prompt or an answer: reject the record, or move it to the user turn (system: start "
                        "of the first one; answer: end of the one before it; order kept) (default: reject)")
    p.add_argument("--number-format", choices=NUMBER_FORMAT_CHOICES, default="auto",
                   help="how numbers are written in the CSVs: plain 1234.5, thousands-comma 1,234.5, decimal-comma 1.234,5; "
                        "auto detects it per file and rejects a file mixing them (default: auto)")
    p.add_argument("--encoding", default="auto", help=ENCODING_HELP)
    p.add_argument("--dtype", choices=DTYPE_CHOICES, default="fp32",
                   help="dtype the model encodes series in: reject series whose centred values (value - mean) exceed its range "
                        "(fp16 65504, fp32/bf16 ~3.4e38) or overflow; fp16 for encoders that normalise in half precision (default: fp32)")
    _add_csv_size_and_links(p)
    p.add_argument("--max-record-bytes", type=int, default=DEFAULT_MAX_RECORD_MB << 20, help=MAX_RECORD_HELP)
    p.add_argument("--workers", type=int, default=None, help="processes reading CSVs (default: the machine's cores)")
    p.add_argument("--strict", action="store_true", help="exit 1 if any record is rejected")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no summary")


def _add_validate(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", type=Path, help="ChatTS JSONL (input/output/timeseries, or messages/timeseries), or the same "
                                            "records as NAME.parquet (--file-type parquet)")
    p.add_argument("--min-length", type=int, default=1, help="flag series shorter than this (default: 1)")
    p.add_argument("--report", type=Path, help="also write the report as JSON to this path (never the file validated)")
    p.add_argument("--max-record-bytes", type=int, default=DEFAULT_MAX_RECORD_MB << 20, help=MAX_RECORD_HELP)
    p.add_argument("-q", "--quiet", action="store_true", help="print only problems")


def _add_preview(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", type=Path, help="ChatTS JSONL to plot from")
    p.add_argument("-r", "--records", default="0", help="record indices, e.g. 0,3,7-9 (default: 0)")
    p.add_argument("-o", "--out-dir", type=Path, default=Path("preview"), help="folder for NAME.recN.png (default: preview)")


def _add_forecast(p: argparse.ArgumentParser) -> None:
    p.add_argument("csv", type=Path, help="CSV with a date column and one column per variable (ETT layout)")
    p.add_argument("--seq-len", type=int, required=True, help="input points per window (e.g. 512)")
    p.add_argument("--pred-len", type=int, required=True, help="future points to forecast (e.g. 96)")
    p.add_argument("--features", choices=FEATURE_CHOICES, default="S",
                   help="S: the target alone; M: every variable in and out; MS: every variable in, the target out (default: S)")
    p.add_argument("--target", help="target variable for S/MS (default: the last column, OT in ETT files)")
    p.add_argument("--date-col", default="date", help="the time column (default: date)")
    p.add_argument("--stride", type=int, default=1, help="points between consecutive window starts (default: 1)")
    p.add_argument("--max-windows-per-split", type=int, help="keep at most N windows per split, evenly spaced (CPU demos)")
    p.add_argument("--precision", type=int, default=3, help="decimals of the answer's numbers (default: 3)")
    p.add_argument("--no-normalize", dest="normalize", action="store_false",
                   help="keep raw values (default: z-score each variable with train-split statistics)")
    p.add_argument("--missing", choices=MISSING_CHOICES, default="interpolate",
                   help="non-numeric/empty/NaN cells: interpolate linearly, drop the rows, or stop with an error (default: interpolate)")
    p.add_argument("--max-missing", type=float, default=0.5, help="stop when more than this fraction of rows is missing (default: 0.5)")
    p.add_argument("--number-format", choices=NUMBER_FORMAT_CHOICES, default="auto",
                   help="plain 1234.5, thousands-comma 1,234.5 or decimal-comma 1.234,5; auto detects it (default: auto)")
    p.add_argument("--encoding", default="auto", help=ENCODING_HELP)
    p.add_argument("-o", "--out-dir", type=Path, default=Path("."), help="output folder (default: current folder)")
    p.add_argument("--name", help="writes NAME_train/_val/_test.jsonl and their dataset_info.json entries (default: CSV stem)")
    _add_file_type(p)
    p.add_argument("-q", "--quiet", action="store_true", help="no summary")


def _add_file_type(p: argparse.ArgumentParser) -> None:
    p.add_argument("--file-type", choices=FILE_TYPE_CHOICES, default="jsonl",
                   help="data file: jsonl (one JSON record a line), or parquet (same fields as columns, series as "
                        "list<float32>, written in row groups; LLaMA-Factory reads NAME.parquet, streaming too) (default: jsonl)")
    p.add_argument("--series-dtype", choices=SERIES_DTYPE_CHOICES, default=None,
                   help="Parquet only: how series values are stored; float32 keeps ~7 significant digits and rejects values "
                        "beyond its range, float64 keeps every bit (default: float32)")


def _storage(args: argparse.Namespace) -> str:
    """The series storage of the run (filetypes.storage_for); --series-dtype without Parquet is a usage error."""
    from .filetypes import storage_for

    if args.series_dtype is not None and args.file_type != "parquet":
        raise InputError(f"--series-dtype {args.series_dtype} applies to --file-type parquet; JSONL writes each value "
                         "as the shortest text that reads back as the same float64. Add --file-type parquet or drop it")
    return storage_for(args.file_type, args.series_dtype)


def _run_forecast(args: argparse.Namespace) -> int:
    from .csvread import check_encoding
    from .forecast import ForecastOptions, convert_forecast, summary

    opts = ForecastOptions(
        csv=args.csv, seq_len=args.seq_len, pred_len=args.pred_len, out_dir=args.out_dir, name=args.name,
        features=args.features, target=args.target, date_col=args.date_col, stride=args.stride,
        max_windows_per_split=args.max_windows_per_split, precision=args.precision, normalize=args.normalize,
        missing=args.missing, max_missing=args.max_missing, number_format=args.number_format,
        encoding=check_encoding(args.encoding),
        file_type=args.file_type, storage=_storage(args),
    )
    report = convert_forecast(opts)
    if not args.quiet:
        name = args.name or args.csv.stem
        print(summary(report))
        print(f"wrote {args.out_dir / (name + '_{train,val,test}.' + args.file_type)} (+ .scaling.json, .report.json) and entries "
              f"{name}_train/_val/_test in {args.out_dir / 'dataset_info.json'}")
    return 0


def _check_max_record_bytes(value: int) -> None:
    if value < 1:
        raise InputError(f"--max-record-bytes {value}: must be at least 1")


def _normalise_argv(argv: list[str]) -> list[str]:
    if argv and argv[0] not in COMMANDS and not argv[0].startswith("-"):
        return ["convert", *argv]
    return argv


def _file_type_as_format(argv: list[str]) -> str | None:
    """`--format jsonl|parquet`: the record layout option given a file type; the one-line fix, else None."""
    for k, arg in enumerate(argv):
        value = argv[k + 1] if arg == "--format" and k + 1 < len(argv) else arg.partition("=")[2] if arg.startswith("--format=") else None
        if value in FILE_TYPE_CHOICES:
            return (f"--format sets the record layout ({', '.join(FORMAT_CHOICES)}); the file type is --file-type: "
                    f"pass --file-type {value}")
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    args_list = _normalise_argv(list(sys.argv[1:] if argv is None else argv))
    parser = build_parser()
    mixed_up = _file_type_as_format(args_list)
    if mixed_up is not None:
        parser.error(mixed_up)
    args = parser.parse_args(args_list)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    previous = _install_sigterm()
    try:
        if args.command == "convert":
            return _run_convert(args)
        if args.command == "validate":
            from .validate import run_validate

            _check_max_record_bytes(args.max_record_bytes)
            return run_validate(args.file, min_length=args.min_length, report_path=args.report, quiet=args.quiet,
                                max_record_bytes=args.max_record_bytes)
        if args.command == "forecast":
            return _run_forecast(args)
        if args.command == "describe":
            return _run_describe(args)
        from .preview import run_preview

        return run_preview(args.file, args.records, args.out_dir)
    except InputError as exc:
        print(f"tsconvert: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OutputError as exc:
        print(f"tsconvert: error: {exc}", file=sys.stderr)
        return EXIT_OUTPUT
    except KeyboardInterrupt:
        print("tsconvert: interrupted; no output was changed", file=sys.stderr)
        return EXIT_INTERRUPTED
    except _Terminated:
        print("tsconvert: terminated; no output was changed", file=sys.stderr)
        return EXIT_TERMINATED
    finally:
        _restore_sigterm(previous)


def _install_sigterm() -> object:
    try:
        return signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread (an embedding application): leave signals alone
        return None


def _restore_sigterm(previous: object) -> None:
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)  # type: ignore[arg-type]


def _run_convert(args: argparse.Namespace) -> int:
    from .convert import ConvertOptions, convert, default_workers
    from .csvread import check_encoding
    from .series import SeriesOptions

    if args.min_length < 1 or (args.max_length is not None and args.max_length < args.min_length):
        raise InputError(f"--max-length {args.max_length} must be >= --min-length {args.min_length} >= 1")
    if not 0 <= args.max_missing <= 1:
        raise InputError(f"--max-missing {args.max_missing}: must be a fraction between 0 and 1")
    _check_max_csv_bytes(args.max_csv_bytes)
    _check_max_record_bytes(args.max_record_bytes)
    workers = args.workers if args.workers is not None else default_workers()
    if workers < 1:
        raise InputError(f"--workers {workers}: must be at least 1")
    series = SeriesOptions(
        value_cols=tuple(args.value_cols or ["value"]),
        time_col=args.time_col or None,
        missing=args.missing,
        max_missing=args.max_missing,
        unsorted=args.unsorted,
        duplicates=args.duplicates,
        min_length=args.min_length,
        max_length=args.max_length,
        downsample=args.downsample,
        number_format=args.number_format,
        dtype=args.dtype,
        max_csv_bytes=args.max_csv_bytes,
        allow_hard_links=args.allow_hard_links,
        encoding=check_encoding(args.encoding),
        storage=_storage(args),
    )
    opts = ConvertOptions(
        input=args.input, csv_dir=args.csv_dir, out_dir=args.out_dir, name=args.name,
        output_format=args.output_format, input_format=args.input_format, csv_pattern=args.csv_pattern,
        series=series, workers=workers, progress=not args.quiet, misplaced=args.misplaced,
        max_record_bytes=args.max_record_bytes, file_type=args.file_type,
    )
    report = convert(opts)
    name = args.name or args.input.stem
    if not args.quiet:
        print(report.summary())
        print(f"wrote {args.out_dir / (name + '.' + args.file_type)} (+ .rejects.jsonl, .report.json) and entry {name!r} in "
              f"{args.out_dir / 'dataset_info.json'}")
    if any(k in report.notes for k in ("downsampled_lttb", "downsampled_minmax")):
        print("tsconvert: note: downsampling changed point indices; answers citing indices (e.g. anomaly start/end) "
              "no longer line up. Use --downsample window or no --max-length to keep them.", file=sys.stderr)
    if args.strict and report.n_rejected:
        print(f"tsconvert: --strict: {report.n_rejected} record(s) rejected, see {args.out_dir / (name + '.rejects.jsonl')}",
              file=sys.stderr)
        return EXIT_REJECTED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
