"""`tsplugin monitor OUTPUT_DIR`: follow a LLaMA-Factory run, draw its curves, say whether it diverged.

Reads what stock LLaMA-Factory writes, nothing of ours: `trainer_log.jsonl` (LogCallback: progress,
loss, lr, ETA; written as training runs) and `trainer_state.json` `log_history` (the only place with
`grad_norm`; in OUTPUT_DIR at the end, in each `checkpoint-N/` while training). Rows are merged by
step, later lines winning, so a resumed run (which logs the steps after its checkpoint again) reads
right. One pass by default; `--follow` polls until the run ends (100 %, `all_results.json`) or
`--timeout`. Exit codes: 0 healthy, 2 divergence seen, 1 usage error (nothing to read).

Divergence, so scripts can act on it: any non-finite loss, or for `--patience` consecutive logged
steps a non-finite grad norm, grad norm > `--max-grad-norm`, or a loss spike (loss >
`--spike-factor` x running median of the losses before it). Single occurrences are warnings.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

TRAINER_LOG = "trainer_log.jsonl"
TRAINER_STATE = "trainer_state.json"
DONE_FILES = ("all_results.json", "train_results.json")
PLOT_NAME = "training_curves.png"


@dataclass
class Row:
    step: int
    total: int | None = None
    loss: float | None = None
    grad_norm: float | None = None
    lr: float | None = None
    epoch: float | None = None
    percentage: float | None = None
    elapsed: str | None = None
    remaining: str | None = None


@dataclass
class Thresholds:
    max_grad_norm: float = 10.0
    spike_factor: float = 3.0
    patience: int = 3
    window: int = 20


@dataclass
class Health:
    warnings: list[str] = field(default_factory=list)
    divergence: list[str] = field(default_factory=list)

    @property
    def diverged(self) -> bool:
        return bool(self.divergence)


def _float(value: Any) -> float | None:
    try:
        return None if value is None or isinstance(value, bool) else float(value)
    except (TypeError, ValueError, OverflowError):
        return None


def _latest_state(output_dir: Path) -> Path | None:
    final = output_dir / TRAINER_STATE
    if final.is_file():
        return final
    checkpoints = [p for p in output_dir.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()]
    for ckpt in sorted(checkpoints, key=lambda p: int(p.name.split("-")[-1]), reverse=True):
        if (ckpt / TRAINER_STATE).is_file():
            return ckpt / TRAINER_STATE
    return None


def _step(value: Any) -> int | None:
    """A logged step number: an int, a float or digit string holding one; None for anything else (NaN, null, 'abc')."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def read_rows(output_dir: Path, problems: list[str] | None = None) -> list[Row]:
    """Training rows (those with a loss or grad norm) merged from trainer_state.json and trainer_log.jsonl.

    Malformed entries (a step that is not a number, a list where an object belongs, a line that is not
    JSON other than the last one, which may be half written) are skipped; each is described in `problems`.
    """
    problems = problems if problems is not None else []
    rows: dict[int, Row] = {}
    state = _latest_state(output_dir)
    if state is not None:
        try:
            data = json.loads(state.read_bytes().decode("utf-8", errors="replace"))
        except (ValueError, RecursionError, OSError):
            data = {}  # being rewritten right now; the next poll reads it
        history = data.get("log_history", []) if isinstance(data, dict) else None
        if not isinstance(history, list):
            problems.append(f"{state}: no log_history list (got {type(data).__name__}); its grad norms are not shown")
            history = []
        for number, entry in enumerate(history):
            if not isinstance(entry, dict):
                problems.append(f"{state}: log_history[{number}] is a {type(entry).__name__}, not an object; skipped")
                continue
            if "step" in entry and ("loss" in entry or "grad_norm" in entry):
                step = _step(entry["step"])
                if step is None:
                    problems.append(f"{state}: log_history[{number}]: step {entry['step']!r:.40} is not a step number; skipped")
                    continue
                row = rows.setdefault(step, Row(step))
                row.loss = _float(entry.get("loss", row.loss))
                row.grad_norm = _float(entry.get("grad_norm", row.grad_norm))
                row.lr = _float(entry.get("learning_rate", row.lr))
                row.epoch = _float(entry.get("epoch", row.epoch))
    log = output_dir / TRAINER_LOG
    if log.is_file():
        try:
            lines = log.read_bytes().decode("utf-8", errors="replace").splitlines()
        except OSError as err:
            problems.append(f"{log}: cannot read ({err.strerror or err})")
            lines = []
        for number, line in enumerate(lines, start=1):
            try:
                entry = json.loads(line)
            except (ValueError, RecursionError):
                if number < len(lines) and line.strip():  # the last line may be half written
                    problems.append(f"{log}: line {number} is not JSON; skipped")
                continue
            if not isinstance(entry, dict):
                problems.append(f"{log}: line {number} is a {type(entry).__name__}, not an object; skipped")
                continue
            if "current_steps" not in entry or "loss" not in entry:
                continue  # eval / predict lines
            step = _step(entry["current_steps"])
            if step is None:
                problems.append(f"{log}: line {number}: current_steps {entry['current_steps']!r:.40} is not a step number; skipped")
                continue
            row = rows.setdefault(step, Row(step))
            total = _step(entry.get("total_steps"))
            row.total = total if total is not None else row.total
            row.loss = _float(entry["loss"])
            row.lr = _float(entry.get("lr", row.lr))
            row.epoch = _float(entry.get("epoch", row.epoch))
            row.percentage = _float(entry.get("percentage", row.percentage))
            row.elapsed = _text(entry.get("elapsed_time", row.elapsed))
            row.remaining = _text(entry.get("remaining_time", row.remaining))
            if "grad_norm" in entry:
                row.grad_norm = _float(entry["grad_norm"])
    return [rows[step] for step in sorted(rows)]


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


def analyze(rows: Iterable[Row], limits: Thresholds | None = None) -> Health:
    """Warnings and divergence reasons for a sequence of logged rows (pure: tests call it directly)."""
    limits = limits or Thresholds()
    health = Health()
    losses: list[float] = []
    runs = {"grad_norm non-finite": [], f"grad_norm > {limits.max_grad_norm:g}": [], "loss spike": []}
    for row in rows:
        flags = set()
        if row.loss is not None and not math.isfinite(row.loss):
            health.warnings.append(f"step {row.step}: loss is {row.loss}")
            health.divergence.append(f"non-finite loss at step {row.step}")
        if row.grad_norm is not None and not math.isfinite(row.grad_norm):
            health.warnings.append(f"step {row.step}: grad_norm is {row.grad_norm}")
            flags.add("grad_norm non-finite")
        elif _finite(row.grad_norm) and row.grad_norm > limits.max_grad_norm:
            health.warnings.append(f"step {row.step}: grad_norm {row.grad_norm:.4g} > {limits.max_grad_norm:g}")
            flags.add(f"grad_norm > {limits.max_grad_norm:g}")
        if _finite(row.loss):
            recent = losses[-limits.window:]
            if len(recent) >= 3:
                median = statistics.median(recent)
                if median > 0 and row.loss > limits.spike_factor * median:
                    health.warnings.append(
                        f"step {row.step}: loss spike {row.loss:.4g} > {limits.spike_factor:g} x running median {median:.4g}"
                    )
                    flags.add("loss spike")
            if "loss spike" not in flags:
                losses.append(row.loss)  # a spike does not move the baseline it is judged against
        for name, run in runs.items():
            if name in flags:
                run.append(row.step)
                if len(run) == limits.patience:
                    health.divergence.append(f"{name} for {limits.patience} consecutive logged steps (steps {run[0]}-{run[-1]})")
            else:
                run.clear()
    return health


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


HEADER = f"{'step':>11} {'%':>6} {'epoch':>6} {'loss':>9} {'grad_norm':>10} {'lr':>10} {'elapsed':>9} {'ETA':>9}"


def format_row(row: Row) -> str:
    step = f"{row.step}/{row.total}" if row.total else str(row.step)
    return (
        f"{step:>11} {_fmt(row.percentage, '.1f'):>6} {_fmt(row.epoch, '.2f'):>6} {_fmt(row.loss, '.4f'):>9} "
        f"{_fmt(row.grad_norm, '.4g'):>10} {_fmt(row.lr, '.3e'):>10} {row.elapsed or '-':>9} {row.remaining or '-':>9}"
    )


def summary(rows: list[Row], health: Health) -> str:
    last = rows[-1]
    where = f"{last.step}/{last.total}" if last.total else str(last.step)
    head = f"step {where}, last loss {_fmt(last.loss, '.4f')}, {len(health.warnings)} warning(s)"
    if health.diverged:
        return f"DIVERGED: {head}; " + "; ".join(health.divergence)
    return f"healthy: {head}"


def plot_curves(rows: list[Row], health: Health, path: Path) -> Path:
    """Loss, grad norm and learning rate against step; steps with warnings marked in red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    warned = {int(w.split(":")[0].split()[1]) for w in health.warnings}
    fig, axes = plt.subplots(3, 1, figsize=(8, 8), sharex=True)
    for ax, key, label in zip(axes, ("loss", "grad_norm", "lr"), ("loss", "grad norm", "learning rate")):
        points = [(r.step, getattr(r, key)) for r in rows if _finite(getattr(r, key))]
        if points:
            ax.plot(*zip(*points), marker=".", linewidth=1)
        bad = [(r.step, getattr(r, key)) for r in rows if r.step in warned and _finite(getattr(r, key))]
        if bad:
            ax.scatter(*zip(*bad), color="red", zorder=3, label="warning")
            ax.legend(loc="upper right")
        if key == "grad_norm" and points and min(v for _, v in points) > 0:
            ax.set_yscale("log")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("step")
    axes[0].set_title(("DIVERGED: " if health.diverged else "") + str(path.parent.name))
    fig.tight_layout()
    fig.savefig(path, dpi=100, format=path.suffix.lower().lstrip(".").replace("jpg", "jpeg"))
    plt.close(fig)
    return path


PLOT_FORMATS = (".png", ".svg", ".pdf", ".jpg", ".jpeg", ".webp")


def plot_path(plot: Path | None, output_dir: Path) -> Path:
    """The file `--plot` names (None: OUTPUT_DIR/PLOT_NAME, written once the run has logged steps): a folder
    gets PLOT_NAME inside it; else an image file in an existing folder that is not one of the run's own
    files. ValueError (one line) otherwise; nothing is created."""
    # lazy: converters' writer, for its one definition of "an output that is an input"
    from converters.paths import refuse_overwriting_inputs

    if plot is None:
        return output_dir / PLOT_NAME
    path = plot / PLOT_NAME if plot.is_dir() else plot
    if path.suffix.lower() not in PLOT_FORMATS:
        raise ValueError(f"--plot {plot}: name an image file ({', '.join(PLOT_FORMATS)}) or a folder to write {PLOT_NAME} into")
    if not path.parent.is_dir():
        raise ValueError(f"--plot {plot}: folder {path.parent} does not exist; create it first or name another folder")
    try:
        refuse_overwriting_inputs([path], [output_dir / name for name in (TRAINER_LOG, TRAINER_STATE, *DONE_FILES)])
    except Exception as err:  # converters' InputError: the message names both paths
        raise ValueError(f"--plot {plot}: {err}") from None
    return path


def _finished(output_dir: Path, rows: list[Row]) -> bool:
    if any((output_dir / name).is_file() for name in DONE_FILES):
        return True
    return bool(rows) and rows[-1].percentage is not None and rows[-1].percentage >= 100


def monitor(output_dir: Path, follow: bool = False, interval: float = 5.0, timeout: float | None = None,
            limits: Thresholds | None = None, plot: Path | None = None, out: Any = None,
            clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> int:
    """Print the table (new rows as they come when following), warnings, summary; write the plot.

    `clock` (seconds) and `sleep` drive the --follow loop: one poll, then `sleep(interval)`, until the
    run ends or `timeout` seconds by `clock` have passed (tests pass their own to run without waiting).
    """
    limits, out = limits or Thresholds(), out or sys.stdout
    start, shown, warned = clock(), 0, 0
    rows: list[Row] = []
    reported: set[str] = set()
    while True:
        problems: list[str] = []
        rows = read_rows(output_dir, problems)
        for problem in dict.fromkeys(problems):
            if problem not in reported:
                reported.add(problem)
                print(f"tsplugin monitor: {problem}", file=sys.stderr)
        if rows and shown == 0:
            print(HEADER, file=out)
        shown_steps = {r.step for r in rows[:shown]}
        for row in rows[shown:]:
            if row.step not in shown_steps:
                print(format_row(row), file=out)
        shown = len(rows)
        health = analyze(rows, limits)
        for line in health.warnings[warned:]:
            print(f"WARNING {line}", file=out)
        warned = len(health.warnings)
        out.flush()
        if not follow or _finished(output_dir, rows):
            break
        if timeout is not None and clock() - start >= timeout:
            print(f"stopped following after --timeout {timeout:g} s; the run has not finished", file=out)
            break
        sleep(interval)
    if not rows:
        print(
            f"{output_dir}: no {TRAINER_LOG} or {TRAINER_STATE} with training steps; pass the `output_dir` of a "
            "LLaMA-Factory run (with logging_steps set), or add --follow to wait for one that is starting.",
            file=sys.stderr,
        )
        return 1
    health = analyze(rows, limits)
    if plot is not None:
        print(f"curves: {plot_curves(rows, health, plot)}", file=out)
    print(summary(rows, health), file=out)
    return 2 if health.diverged else 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "monitor",
        help="follow a LLaMA-Factory run: live table, training_curves.png, exit 2 on divergence",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("output_dir", type=Path, help="the run's output_dir (holds trainer_log.jsonl)")
    p.add_argument("--follow", "-f", action="store_true", help="keep polling until training ends")
    p.add_argument("--interval", type=float, default=5.0, help="seconds between polls with --follow (default 5)")
    p.add_argument("--timeout", type=float, default=None, help="stop following after this many seconds (default: follow until the run ends)")
    p.add_argument("--max-grad-norm", type=float, default=10.0, help="warn above this grad norm (default 10)")
    p.add_argument("--spike-factor", type=float, default=3.0, help="loss spike: loss > factor x running median of the last 20 logged losses (default 3)")
    p.add_argument("--patience", type=int, default=3, help="consecutive flagged logged steps that count as divergence (default 3)")
    p.add_argument("--plot", type=Path, default=None, help=f"where to write the curves, a PNG (default OUTPUT_DIR/{PLOT_NAME})")
    p.add_argument("--no-plot", action="store_true", help="do not write the curves")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    if not args.output_dir.is_dir() and not args.follow:
        print(f"{args.output_dir}: no such directory; pass the output_dir of a LLaMA-Factory run.", file=sys.stderr)
        return 1
    if args.patience < 1 or args.interval <= 0:
        print("--patience must be >= 1 and --interval > 0.", file=sys.stderr)
        return 1
    try:
        plot = None if args.no_plot else plot_path(args.plot, args.output_dir)
    except ValueError as err:  # a usage error: exit 1, as documented above (2 means divergence here)
        print(f"tsplugin monitor: error: {err}", file=sys.stderr)
        return 1
    limits = Thresholds(max_grad_norm=args.max_grad_norm, spike_factor=args.spike_factor, patience=args.patience)
    return monitor(args.output_dir, follow=args.follow, interval=args.interval, timeout=args.timeout, limits=limits, plot=plot)
