"""`tsplugin eval anomaly`: scores checked against values computed by hand."""

from __future__ import annotations

import json

import pytest

from tsplugin.eval import cli as evaluate
from tsplugin.cli import main
from tsplugin.eval.anomaly import extract_json, parse_answer, score, span_iou


def _a(is_anomaly, kind="none", start=None, end=None) -> str:
    obj = {"is_anomaly": is_anomaly, "anomaly_type": kind}
    if start is not None:
        obj.update(start=start, end=end)
    return json.dumps(obj)


# (prediction, label): the comment says what each pair counts as.
PAIRS = [
    ("```json\n" + _a(True, "spike", 15, 25) + "\n```", _a(True, "spike", 10, 20)),  # TP, type ok, IoU 6/16
    ("Answer: " + _a(True, "level shift", 100, 199) + " done", _a(True, "drift", 100, 199)),  # TP, type wrong, IoU 1
    ("I think there is a dip", _a(True, "dip", 0, 9)),  # invalid -> FN
    (_a(False), _a(False)),  # TN
    (_a(True, "spike", 1, 2), _a(False)),  # FP
    (_a(False), _a(True, "flatline", 50, 59)),  # FN
    (json.dumps({"is_anomaly": True, "anomaly_type": "wobble"}), _a(True, "oscillation", 0, 99)),  # TP, other, IoU 0
    (json.dumps({"is_anomaly": "yes"}), _a(False)),  # invalid (not a boolean), not a TN
]


def test_scores_equal_the_hand_computed_values():
    s = score(PAIRS)
    assert (s.n, s.valid, s.tp, s.fp, s.fn, s.tn) == (8, 6, 3, 1, 2, 1)
    assert s.valid_share == 0.75
    assert s.precision == 0.75 and s.recall == 0.6
    assert s.f1 == pytest.approx(2 * 0.75 * 0.6 / 1.35)
    assert s.accuracy == 0.5
    assert (s.type_correct, s.true_anomalies, s.type_accuracy) == (1, 5, 0.2)
    assert s.spans_scored == 3 and s.mean_span_iou == pytest.approx((6 / 16 + 1.0 + 0.0) / 3)
    nonzero = {(t, p): n for t, row in s.confusion.items() for p, n in row.items() if n}
    assert nonzero == {
        ("spike", "spike"): 1, ("drift", "level_shift"): 1, ("dip", "invalid"): 1, ("none", "none"): 1,
        ("none", "spike"): 1, ("none", "invalid"): 1, ("flatline", "none"): 1, ("oscillation", "other"): 1,
    }


def test_span_iou_is_over_inclusive_integer_spans():
    assert span_iou((10, 20), (15, 25)) == 6 / 16
    assert span_iou((5, 5), (5, 5)) == 1.0
    assert span_iou((0, 4), (5, 9)) == 0.0
    assert span_iou(None, (1, 2)) == 0.0


def test_json_is_found_in_fences_and_surrounding_text():
    assert extract_json('prefix {"a": 1} {"b": 2}') == {"a": 1}
    assert extract_json('text {not json} then ```json\n{"c": 3}\n```') == {"c": 3}
    assert extract_json("[1, 2] no object") is None
    assert parse_answer('{"is_anomaly": true, "anomaly_type": "Level-Shift", "start": 3, "end": 1}').span is None
    assert parse_answer('{"is_anomaly": true, "anomaly_type": "Level-Shift"}').anomaly_type == "level_shift"


def _write(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_cli_on_generated_predictions_prints_the_table_and_writes_json(tmp_path, capsys):
    preds = _write(tmp_path / "generated_predictions.jsonl", [{"prompt": "q", "predict": p, "label": l} for p, l in PAIRS])
    assert main(["eval", "anomaly", str(preds), "--json", str(tmp_path / "scores.json")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:6] == [
        "records          8",
        "valid JSON       6/8 (75.0%)",
        "is_anomaly       precision 0.750  recall 0.600  F1 0.667  accuracy 0.500",
        "                 tp 3  fp 1  fn 2  tn 1",
        "type accuracy    0.200 (1/5 true anomalies)",
        "mean span IoU    0.458 (3 true positives)",
    ]
    assert out[8].split() == ["spike", "dip", "level_shift", "drift", "oscillation", "flatline", "none", "other", "invalid"]
    assert out[9].split() == ["spike", "1", "0", "0", "0", "0", "0", "0", "0", "0"]
    assert out[15].split() == ["none", "1", "0", "0", "0", "0", "0", "1", "0", "1"]
    data = json.loads((tmp_path / "scores.json").read_text())
    assert data["f1"] == round(2 * 0.75 * 0.6 / 1.35, 6) and data["confusion"]["drift"]["level_shift"] == 1


def test_cli_custom_keys(tmp_path, capsys):
    preds = _write(tmp_path / "p.jsonl", [{"answer": p, "gold": l} for p, l in PAIRS[:2]])
    assert main(["eval", "anomaly", str(preds), "--pred-key", "answer", "--label-key", "gold"]) == 0
    assert "records          2" in capsys.readouterr().out


def test_cli_errors_name_the_file_the_line_and_the_fix(tmp_path, capsys):
    preds = _write(tmp_path / "p.jsonl", [{"predict": "x", "label": _a(False)}, {"output": "x", "label": _a(False)}])
    assert main(["eval", "anomaly", str(preds)]) == 1
    assert capsys.readouterr().err.strip() == (
        f"{preds}: line 2: no key 'predict' (keys: ['label', 'output']); pass --pred-key / --label-key to name the "
        "prediction and label fields."
    )
    bad = _write(tmp_path / "b.jsonl", [{"predict": "x", "label": _a(False)}, {"predict": "x", "label": "normal"}])
    assert main(["eval", "anomaly", str(bad)]) == 1
    assert capsys.readouterr().err.strip() == (
        f"{bad}: line 2: the label holds no JSON object with a boolean is_anomaly: 'normal'; fix the label or pass --label-key."
    )
    assert main(["eval", "anomaly", str(tmp_path / "missing.jsonl")]) == 1


def test_eval_registry_refuses_duplicates_and_lists_kinds():
    with pytest.raises(ValueError, match="already registered"):
        evaluate.register_eval("anomaly", "somewhere.else")
    with pytest.raises(KeyError, match="unknown eval kind 'nope'; valid: alignment, anomaly, forecast"):
        evaluate.get_eval("nope")


@pytest.mark.parametrize(
    "junk",
    [
        '{"is_anomaly": true, "anomaly_type": "spike", "start": -Infinity, "end": 40}',
        '{"is_anomaly": true, "anomaly_type": "spike", "start": NaN, "end": 40}',
        '{"is_anomaly": true, "anomaly_type": "spike", "start": 10, "end": Infinity}',
        '{"x": ' * 3000 + "1" + "}" * 3000,
        "{" * 3000,
        None,
        12,
        ["is_anomaly", True],
    ],
    ids=["-Infinity", "NaN", "Infinity", "deep", "braces", "null", "number", "list"],
)
def test_junk_in_one_answer_counts_that_answer_invalid_and_scores_the_rest(junk, tmp_path, capsys):
    rows = [{"predict": p, "label": l} for p, l in PAIRS] + [{"predict": junk, "label": _a(True, "spike", 10, 40)}]
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps(r, allow_nan=True) + "\n" for r in rows))
    assert main(["eval", "anomaly", str(path), "--json", str(tmp_path / "s.json")]) == 0
    scores = json.loads((tmp_path / "s.json").read_text())
    clean = score(PAIRS)
    assert scores["n"] == clean.n + 1 and scores["valid"] == clean.valid
    assert scores["fn"] == clean.fn + 1 and scores["confusion"]["spike"]["invalid"] == clean.confusion["spike"]["invalid"] + 1


def test_unreadable_lines_are_errors_naming_the_line(tmp_path, capsys):
    path = tmp_path / "p.jsonl"
    good = json.dumps({"predict": _a(False), "label": _a(False)}).encode()
    for body, expected in [
        (good + b"\n" + good.replace(b"predict", b"pr\xe9dict") + b"\n", "line 2: column 5: byte 0xe9 is not UTF-8"),
        (good + b"\n" + good[:20] + b"\n", "line 2: column 13: Unterminated string"),
        (good + b"\n" + b"[" * 3000 + b"\n", "line 2: nested deeper than JSON readers allow"),
        ("\n".join([good.decode()] * 2).encode("utf-16"), "the file is UTF-16 text, not UTF-8"),
    ]:
        path.write_bytes(body)
        assert main(["eval", "anomaly", str(path)]) == 1
        err = capsys.readouterr().err
        assert expected in err and "Traceback" not in err
    path.write_bytes(good + b"\n")
    assert main(["eval", "anomaly", str(path), "--json", str(path / "x.json")]) == 1
    assert "cannot write" in capsys.readouterr().err
