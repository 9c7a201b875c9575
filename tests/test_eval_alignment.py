"""`tsplugin eval alignment`: per-kind and per-attribute scores of synth Q&A, unparseable answers counted,
and files that do not line up refused with the file, the line and the fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tsplugin.cli import main as tsplugin
from tsplugin.eval.alignment import evaluate
from tsplugin.synth import qa
from tsplugin.synth.labels import labels_path

N = 120


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("align")
    assert tsplugin(["synth", "-o", str(out), "--name", "al", "--records", str(N), "--seed", "5", "--min-length", "64",
                     "--max-length", "128", "--series-per-record", "1-2", "-q"]) == 0
    return out / "al.jsonl"


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def predictions(tmp_path: Path, data: Path, answer) -> Path:
    rows = [{"prompt": r["input"], "predict": answer(r), "label": r["output"]} for r in records(data)]
    path = tmp_path / "generated_predictions.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_the_reference_answers_score_1(tmp_path, data):
    r = evaluate(predictions(tmp_path, data, lambda rec: rec["output"]), data).to_dict()
    o = r["overall"]
    assert o["questions"] == N and o["unparseable"] == 0 and o["score"] == 1.0
    assert o["categorical_accuracy"] == 1.0 and o["numeric_within_tolerance"] == 1.0 and o["numeric_mean_rel_error"] < 1e-3
    assert sum(t["n"] for k, t in r["by_kind"].items() if k != "description") + sum(
        1 for rec in records(data) if rec["qa"]["kind"] == "description") == N
    assert {"trend", "noise", "seasonality", "local"} <= set(r["by_attribute"])


def test_junk_answers_are_counted_unparseable_and_wrong(tmp_path, data):
    o = evaluate(predictions(tmp_path, data, lambda rec: "I cannot tell."), data).to_dict()["overall"]
    assert o["questions"] == N and o["unparseable"] == N and o["score"] == 0.0
    assert o["categorical_accuracy"] == 0.0 and o["numeric_within_tolerance"] == 0.0 and o["numeric_mean_rel_error"] is None


def test_each_kind_is_scored_by_its_rule(tmp_path, data):
    """Numeric answers off by half their tolerance pass, by twice fail; a synonym of the right class is right;
    naming two classes is unparseable."""
    def answer(rec):
        m = rec["qa"]
        k = rec["qa"]["series"][0]
        if m["type"] == qa.NUMERIC:
            off = (0.5 if k % 2 == 0 else 2.0) * m["tolerance"] * m["scale"]
            return f"Roughly {m['value'] + off:.6f}"
        if m["kind"] in ("trend", "noise"):
            return f"{qa.VOCABULARY[m['attribute']][m['truth']][-1]}, I think"
        if m["kind"] == "seasonality":
            return "square or sine"
        return rec["output"]
    r = evaluate(predictions(tmp_path, data, answer), data).to_dict()
    recs = records(data)
    for kind in ("period", "amplitude", "position", "value", "max", "min"):
        picked = [x["qa"]["series"][0] for x in recs if x["qa"]["kind"] == kind]
        if picked:
            assert r["by_kind"][kind]["within_tolerance"] == pytest.approx(sum(k % 2 == 0 for k in picked) / len(picked))
            assert r["by_kind"][kind]["unparseable"] == 0
    assert r["by_kind"]["trend"]["accuracy"] == 1.0 and r["by_kind"]["noise"]["accuracy"] == 1.0
    season = r["by_kind"]["seasonality"]
    assert season["accuracy"] == 0.0 and season["unparseable"] == season["n"] > 0


def test_cli_writes_json_with_overall(tmp_path, data, capsys):
    preds = predictions(tmp_path, data, lambda rec: rec["output"])
    out = tmp_path / "scores.json"
    assert tsplugin(["eval", "alignment", str(preds), "--data", str(data), "--json", str(out)]) == 0
    assert json.loads(out.read_text(encoding="utf-8"))["overall"]["score"] == 1.0
    assert "questions 120, unparseable 0" in capsys.readouterr().out


def test_json_that_would_replace_an_input_is_refused(tmp_path, data, capsys):
    preds = predictions(tmp_path, data, lambda rec: rec["output"])
    labels = labels_path(data)
    for target in (preds, data, labels):
        before = target.read_bytes()
        assert tsplugin(["eval", "alignment", str(preds), "--data", str(data), "--json", str(target)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(target) in err[0] and "Traceback" not in err[0]
        assert target.read_bytes() == before


def test_files_that_do_not_line_up_are_refused(tmp_path, data, capsys):
    preds = predictions(tmp_path, data, lambda rec: rec["output"])
    lines = preds.read_text(encoding="utf-8").splitlines()
    short = tmp_path / "short.jsonl"
    short.write_text("\n".join(lines[:-1]) + "\n", encoding="utf-8")
    assert tsplugin(["eval", "alignment", str(short), "--data", str(data)]) == 1
    assert f"{N - 1} predictions but {data} has {N} records" in capsys.readouterr().err
    swapped = tmp_path / "swapped.jsonl"
    swapped.write_text("\n".join([lines[1], lines[0], *lines[2:]]) + "\n", encoding="utf-8")
    assert tsplugin(["eval", "alignment", str(swapped), "--data", str(data)]) == 1
    assert "line 1: label" in capsys.readouterr().err


def test_data_without_qa_or_labels_is_refused(tmp_path, data, capsys):
    plain = tmp_path / "plain.jsonl"
    plain.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "qa"}) + "\n" for r in records(data)), encoding="utf-8")
    preds = predictions(tmp_path, data, lambda rec: rec["output"])
    assert tsplugin(["eval", "alignment", str(preds), "--data", str(plain)]) == 1
    assert "plain.jsonl: line 1: no `qa` entry" in capsys.readouterr().err
    copy = tmp_path / "copy.jsonl"
    copy.write_bytes(data.read_bytes())
    assert tsplugin(["eval", "alignment", str(preds), "--data", str(copy)]) == 1
    assert "copy.labels.jsonl: no labels file" in capsys.readouterr().err
