"""Score alignment Q&A (`tsplugin synth` / `tsconvert describe` data) by question kind, as ChatTS scores it.

`tsplugin eval alignment PREDICTIONS --data NAME.jsonl [--json OUT]`: PREDICTIONS is LLaMA-Factory's
generated_predictions.jsonl (`predict`, `label`, one line per record of NAME.jsonl, in its order); each
record's `qa` entry says what was asked, and NAME.labels.jsonl beside the data holds the attributes.
Each prediction's `label` must be its record's `output` (else the files do not line up: an error).

Scoring (the vocabulary and number reading of tsplugin.synth.qa, deterministic, no LLM judge):
- categorical (trend, seasonality, noise, local) and comparison (compare_max, related): accuracy; an
  answer naming no class or several is unparseable, and wrong;
- numeric (period, amplitude, position, value, max, min): relative error |answer - truth| / scale (the
  scale each record's `qa` gives) and the share within its tolerance; an answer with no number is
  unparseable, never within tolerance, and left out of the error means;
- description: each series' trend, seasonality, noise and local-change set read from its sentence, each a
  categorical check under that attribute; the question's score is its share of correct checks.
Reported per kind, per attribute (a description's checks pooled with the questions on that attribute), and
`overall`: questions, unparseable, categorical accuracy (all class checks), numeric within-tolerance,
and score = mean over questions of 1/0 (categorical, numeric within tolerance) or the description share.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tsplugin.eval.anomaly import EvalInputError, read_pairs
from tsplugin.eval.output import refuse_json_over_inputs, write_scores_json
from tsplugin.jsonl import FileEncodingError, read_records
from tsplugin.synth import qa as kinds
from tsplugin.synth.labels import LabelsError, SeriesLabels, by_record, labels_path, read_labels


@dataclass
class Tally:
    """Checks of one kind or attribute: categorical (correct) or numeric (errors, within)."""

    numeric: bool
    n: int = 0
    unparseable: int = 0
    correct: int = 0  # categorical: right class; numeric: within tolerance
    errors: list[float] = field(default_factory=list)

    def add(self, ok: bool, parsed: bool, error: float | None = None) -> None:
        self.n += 1
        self.unparseable += not parsed
        self.correct += ok
        if error is not None:
            self.errors.append(error)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"n": self.n, "unparseable": self.unparseable}
        share = round(self.correct / self.n, 6) if self.n else None
        if self.numeric:
            out["within_tolerance"] = share
            out["mean_rel_error"] = round(statistics.fmean(self.errors), 6) if self.errors else None
            out["median_rel_error"] = round(statistics.median(self.errors), 6) if self.errors else None
        else:
            out["correct"], out["accuracy"] = self.correct, share
        return out


@dataclass
class AlignmentScores:
    by_kind: dict[str, Tally] = field(default_factory=dict)
    by_attribute: dict[str, Tally] = field(default_factory=dict)
    question_scores: list[float] = field(default_factory=list)
    unparseable_questions: int = 0

    def tally(self, table: dict[str, Tally], key: str, numeric: bool) -> Tally:
        return table.setdefault(key, Tally(numeric))

    def to_dict(self) -> dict[str, Any]:
        cat = [t for t in self.by_attribute.values() if not t.numeric]
        num = [t for t in self.by_attribute.values() if t.numeric]
        cat_n, num_n = sum(t.n for t in cat), sum(t.n for t in num)
        errors = [e for t in num for e in t.errors]
        n = len(self.question_scores)
        return {
            "overall": {
                "questions": n, "unparseable": self.unparseable_questions,
                "unparseable_share": round(self.unparseable_questions / n, 6) if n else None,
                "score": round(statistics.fmean(self.question_scores), 6) if n else None,
                "categorical_checks": cat_n,
                "categorical_accuracy": round(sum(t.correct for t in cat) / cat_n, 6) if cat_n else None,
                "numeric_questions": num_n,
                "numeric_within_tolerance": round(sum(t.correct for t in num) / num_n, 6) if num_n else None,
                "numeric_mean_rel_error": round(statistics.fmean(errors), 6) if errors else None,
            },
            "by_kind": {k: t.to_dict() for k, t in sorted(self.by_kind.items())},
            "by_attribute": {k: t.to_dict() for k, t in sorted(self.by_attribute.items())},
        }


def score_one(s: AlignmentScores, qa: dict[str, Any], predict: Any, labels: list[SeriesLabels]) -> None:
    """Add one question's checks."""
    kind, text = qa["kind"], predict if isinstance(predict, str) else ""
    if qa["type"] == kinds.NUMERIC:
        number = kinds.parse_number(text)
        error = None if number is None else abs(number - qa["value"]) / qa["scale"]
        ok = error is not None and error <= qa["tolerance"]
        for table, key in ((s.by_kind, kind), (s.by_attribute, qa["attribute"])):
            s.tally(table, key, True).add(ok, number is not None, error)
        s.question_scores.append(float(ok))
        s.unparseable_questions += number is None
        return
    if qa["type"] == kinds.DESCRIPTION:
        blocks = kinds.split_description(text, len(qa["series"]))
        right = parsed = checks = 0
        for block, k in zip(blocks, qa["series"]):
            for attribute in kinds.DESCRIPTION_MARKERS:
                got = kinds.read_description(attribute, block)
                ok = got is not None and got == kinds.description_truth(attribute, labels[k])
                s.tally(s.by_attribute, attribute, False).add(ok, got is not None)
                s.tally(s.by_kind, kind, False).add(ok, got is not None)
                right, parsed, checks = right + ok, parsed + (got is not None), checks + 1
        s.question_scores.append(right / checks)
        s.unparseable_questions += parsed == 0
        return
    got = kinds.parse_series_ref(text) if kind == "compare_max" else kinds.parse_class(qa["attribute"], text)
    ok = got is not None and got == qa["truth"]
    for table, key in ((s.by_kind, kind), (s.by_attribute, qa["attribute"])):
        s.tally(table, key, False).add(ok, got is not None)
    s.question_scores.append(float(ok))
    s.unparseable_questions += got is None


QA_KEYS = ("kind", "type", "attribute", "series", "truth", "value", "scale", "tolerance")


def _data(path: Path) -> list[tuple[dict, str, int]]:
    """(qa, output, line) per record of the data file; errors name the file, the line and the fix."""
    rows = []
    try:
        for line in read_records(path):
            where = f"{path}: line {line.lineno}"
            if not line.ok:
                raise EvalInputError(f"{where}: {line.message}")
            rec = line.record
            qa = rec.get("qa") if isinstance(rec, dict) else None
            if not isinstance(qa, dict) or any(k not in qa for k in QA_KEYS):
                raise EvalInputError(f"{where}: no `qa` entry with {', '.join(QA_KEYS)}; pass data written by `tsplugin synth` "
                                     "or `tsconvert describe` (the qa entry says what each question asks)")
            if qa["kind"] not in kinds.KINDS:
                raise EvalInputError(f"{where}: qa kind {qa['kind']!r} is unknown; valid: {', '.join(kinds.KINDS)}")
            rows.append((qa, rec.get("output"), line.lineno))
    except FileEncodingError as err:
        raise EvalInputError(str(err)) from None
    except OSError as err:
        raise EvalInputError(f"{path}: cannot read: {err.strerror or err}") from None
    return rows


def evaluate(predictions: Path, data: Path, pred_key: str = "predict", label_key: str = "label") -> AlignmentScores:
    """Score a predictions file against the data (and its labels) it answers, record by record."""
    pairs = read_pairs(predictions, pred_key, label_key)
    records = _data(data)
    if len(pairs) != len(records):
        raise EvalInputError(f"{predictions}: {len(pairs)} predictions but {data} has {len(records)} records; predict on "
                             "exactly that file (eval_dataset: NAME, no max_samples) so line i answers record i")
    try:
        labels = by_record(read_labels(labels_path(data)))
    except LabelsError as err:
        raise EvalInputError(str(err)) from None
    s = AlignmentScores()
    for i, ((predict, label, pline), (qa, output, dline)) in enumerate(zip(pairs, records)):
        if " ".join(str(label).split()) != " ".join(str(output).split()):
            raise EvalInputError(f"{predictions}: line {pline}: label {str(label)[:80]!r} is not the output of {data} line {dline} "
                                 f"({str(output)[:80]!r}); the predictions are of another file or another order")
        series = labels.get(i, [])
        if qa["type"] == kinds.DESCRIPTION and any(k >= len(series) for k in qa["series"]):
            raise EvalInputError(f"{labels_path(data)}: record {i} has {len(series)} series labelled but its qa names "
                                 f"series {qa['series']}; rewrite the data and labels together")
        score_one(s, qa, predict, series)
    return s


def format_scores(r: dict[str, Any]) -> str:
    o = r["overall"]

    def pct(v: float | None) -> str:
        return "  -  " if v is None else f"{v:5.3f}"

    lines = [f"questions {o['questions']}, unparseable {o['unparseable']} ({pct(o['unparseable_share'])}), score {pct(o['score'])}",
             f"categorical accuracy {pct(o['categorical_accuracy'])} over {o['categorical_checks']} checks; numeric within "
             f"tolerance {pct(o['numeric_within_tolerance'])} over {o['numeric_questions']} (mean rel. error "
             f"{pct(o['numeric_mean_rel_error'])})", ""]
    for title, table in (("kind", r["by_kind"]), ("attribute", r["by_attribute"])):
        lines.append(f"{title:<14}{'n':>6}{'unparse':>9}  accuracy / within tol.  median rel. error")
        for key, t in table.items():
            value = t.get("accuracy", t.get("within_tolerance"))
            med = f"{t['median_rel_error']:.4f}" if t.get("median_rel_error") is not None else ""
            lines.append(f"{key:<14}{t['n']:>6}{t['unparseable']:>9}  {pct(value):>22}  {med:>17}")
        lines.append("")
    return "\n".join(lines).rstrip()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, required=True, help="the NAME.jsonl the predictions answer (NAME.labels.jsonl beside it)")
    parser.add_argument("--pred-key", default="predict", help="field holding the model's answer (default predict)")
    parser.add_argument("--label-key", default="label", help="field holding the reference answer (default label)")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT", help="also write the scores as JSON to OUT")


def run(args: argparse.Namespace) -> int:
    """Exit codes: 0 scored; 1 the files cannot be scored (missing, not lined up, no qa entries, bad labels) or
    --json cannot be written; 2 bad arguments (argparse)."""
    path = Path(args.predictions)
    refuse_json_over_inputs(args.json, [path, args.data, labels_path(args.data)])
    for p, what in ((path, "a JSONL of predictions (OUTPUT_DIR/generated_predictions.jsonl)"), (args.data, "the NAME.jsonl they answer")):
        if not p.is_file():
            print(f"{p}: no such file; pass {what}.", file=sys.stderr)
            return 1
    try:
        result = evaluate(path, args.data, args.pred_key, args.label_key).to_dict()
    except EvalInputError as err:
        print(str(err), file=sys.stderr)
        return 1
    print(format_scores(result))
    if args.json is not None:
        return write_scores_json(args.json, result)
    return 0
