"""`tsplugin synth`: the labels schema, series composed to their labels, answers that read back to their
truth, same seed -> same bytes, streamed output, and clear errors on bad options."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import ROOT, recipe_synth_command
from tsplugin.cli import main as tsplugin
from tsplugin.processing.placeholders import count_placeholders
from tsplugin.synth import attributes, labels as schema, qa
from tsplugin.synth.cli import SynthOptions, parse_kinds, write

ISSUE_EXAMPLE = {"record": 0, "series": 0, "length": 512, "trend": "increase",
                 "segments": [{"start": 0, "end": 300, "trend": "increase"}, {"start": 300, "end": 512, "trend": "steady"}],
                 "seasonal": True, "season_shape": "sine", "period": 48.0, "amplitude": 3.2, "noise": "low",
                 "local": [{"type": "upward_spike", "position": 211, "amplitude": 12.5}], "confidence": {"trend": 0.98}}


def synth(tmp_path: Path, *extra: str, name: str = "al", records: int = 60, seed: int = 3) -> int:
    return tsplugin(["synth", "-o", str(tmp_path), "--name", name, "--records", str(records), "--seed", str(seed),
                     "--min-length", "64", "--max-length", "160", "-q", *extra])


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    for d, seed in (("a", 3), ("b", 3), ("c", 4)):
        assert synth(tmp_path / d, "--series-per-record", "1-3", seed=seed) == 0
    for f in ("al.jsonl", "al.labels.jsonl", "dataset_info.json"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    assert (tmp_path / "a" / "al.jsonl").read_bytes() != (tmp_path / "c" / "al.jsonl").read_bytes()


def test_outputs_line_up_and_labels_are_valid(tmp_path):
    (tmp_path / "dataset_info.json").write_text(json.dumps({"mine": {"file_name": "mine.jsonl"}}), encoding="utf-8")
    assert synth(tmp_path, "--series-per-record", "1-3") == 0
    data, labels = read(tmp_path / "al.jsonl"), list(schema.read_labels(tmp_path / "al.labels.jsonl"))
    assert schema.validate_labels(tmp_path / "al.labels.jsonl") == []
    assert len(data) == 60 and len(labels) == sum(len(r["timeseries"]) for r in data)
    grouped = schema.by_record(labels)
    for i, r in enumerate(data):
        assert set(r) == {"input", "output", "timeseries", "qa"}
        assert count_placeholders(r["input"]) == len(r["timeseries"]) == len(grouped[i])
        assert [s.length for s in grouped[i]] == [len(ts) for ts in r["timeseries"]]
        assert set(r["qa"]) == {"kind", "type", "attribute", "series", "truth", "value", "scale", "tolerance"}
    info = json.loads((tmp_path / "dataset_info.json").read_text(encoding="utf-8"))
    assert info["mine"] == {"file_name": "mine.jsonl"}  # kept
    assert info["al"] == {"file_name": "al.jsonl", "columns": {"prompt": "input", "response": "output", "timeseries": "timeseries"}}
    assert schema.labels_path(tmp_path / "al.jsonl") == tmp_path / "al.labels.jsonl"


def test_every_answer_reads_back_to_its_truth(tmp_path):
    """The answer text of every kind parses (with the scorer's vocabulary) to the truth in `qa` and the labels."""
    assert synth(tmp_path, "--series-per-record", "1-3", records=300) == 0
    data = read(tmp_path / "al.jsonl")
    grouped = schema.by_record(schema.read_labels(tmp_path / "al.labels.jsonl"))
    seen = set()
    for i, r in enumerate(data):
        meta, answer, labs = r["qa"], r["output"], grouped[i]
        seen.add(meta["kind"])
        if meta["type"] == qa.NUMERIC:
            assert abs(qa.parse_number(answer) - meta["value"]) <= 1e-3 * max(1.0, abs(meta["value"])), (i, answer, meta)
        elif meta["kind"] == "compare_max":
            assert qa.parse_series_ref(answer) == meta["truth"]
            tops = [max(ts) for ts in r["timeseries"]]
            assert meta["truth"] == f"series {int(np.argmax(tops)) + 1}"
        elif meta["type"] == qa.DESCRIPTION:
            blocks = qa.split_description(answer, len(labs))
            for lab, block in zip(labs, blocks):
                for attr in qa.DESCRIPTION_MARKERS:
                    assert qa.read_description(attr, block) == qa.description_truth(attr, lab), (i, attr, block)
        else:
            attr = meta["attribute"]
            assert qa.parse_class(attr, answer) == meta["truth"], (i, answer, meta)
            lab = labs[meta["series"][0]]
            if attr in ("trend", "seasonality", "noise"):
                assert meta["truth"] == qa.description_truth(attr, lab)
            elif attr == "local":
                assert meta["truth"] == (lab.local[0].type if lab.local else qa.NONE)
            elif attr == "related":
                assert meta["truth"] == ("yes" if lab.extra["related"] else "no")
        if meta["kind"] == "value":
            idx = int(qa.parse_number(r["input"].split("index")[-1].split("point")[-1]))
            assert r["timeseries"][meta["series"][0]][idx] == meta["value"]
    assert seen == set(qa.KINDS), set(qa.KINDS) - seen


def test_series_follow_their_labels():
    """Rebuild each series' noise-free part from its labels; what is left is noise of the labelled level."""
    mix = attributes.AttributeMix(min_length=400, max_length=400, max_local=2)
    for record in range(40):
        _, series = attributes.compose_record(11, record, 2, mix)
        for c in series:
            lab = c.labels
            assert schema.validate_label(lab.to_json()) == []
            local = sum((attributes.local_component(ch.type, lab.length, ch.position, ch.amplitude) for ch in lab.local),
                        np.zeros(lab.length))
            rest = c.values - local
            if lab.seasonal:  # the season's half peak-to-peak is the amplitude label (the component alone)
                comp = attributes.season(lab.season_shape, lab.length, lab.period, lab.amplitude, 0.3)
                assert comp.max() == pytest.approx(lab.amplitude, rel=0.05)
            # trend direction of each segment: the mean over its last third minus its first third, seasonality
            # and noise averaged out over >= 60 points, sign matches (steady: small against the level change)
            for s in lab.segments:
                seg = rest[s.start:s.end]
                third = max(1, len(seg) // 3)
                if lab.seasonal or lab.noise == "high":
                    continue
                delta = seg[-third:].mean() - seg[:third].mean()
                if s.trend == "increase":
                    assert delta > 0, (record, s, delta)
                elif s.trend == "decrease":
                    assert delta < 0, (record, s, delta)
            for ch in lab.local:
                assert int(0.1 * lab.length) <= ch.position < int(0.9 * lab.length)
            positions = [ch.position for ch in lab.local]
            assert positions == sorted(positions) and all(b - a >= 40 for a, b in zip(positions, positions[1:]))
        if series[0].labels.extra["related"]:
            kinds = [[(ch.type, ch.position) for ch in c.labels.local] for c in series]
            assert kinds[0] and kinds[0] == kinds[1]


def test_local_components_have_their_shape():
    n = 200
    spike = attributes.local_component("upward_spike", n, 100, 5.0)
    assert spike.max() == 5.0 and spike.argmax() == 100 and spike[:95].max() == 0 and spike[106:].max() == 0
    dip = attributes.local_component("downward_spike", n, 100, 5.0)
    assert dip.min() == -5.0 and dip[-1] == 0
    step = attributes.local_component("step_down", n, 50, 2.0)
    assert (step[:50] == 0).all() and (step[50:] == -2.0).all()
    ramp = attributes.local_component("sudden_increase", n, 50, 2.0)
    width = max(3, round(attributes.SUDDEN_WIDTH * n))
    assert ramp[50] == 0 and 0 < ramp[51] < 2.0 and (ramp[50 + width:] == 2.0).all()


@pytest.mark.parametrize("segments, overall", [
    ([("increase", 3.0)], "increase"), ([("steady", 0.0)], "steady"),
    ([("increase", 3.0), ("decrease", 2.9)], "steady"), ([("decrease", 4.0), ("increase", 1.0)], "decrease"),
])
def test_overall_trend_rule(segments, overall):
    assert schema.overall_trend(segments) == overall


def test_the_issue_example_is_valid_and_round_trips():
    assert schema.validate_label(ISSUE_EXAMPLE) == []
    assert schema.SeriesLabels.from_json(ISSUE_EXAMPLE).to_json() == ISSUE_EXAMPLE
    assert schema.validate_label({**ISSUE_EXAMPLE, "csv": "a.csv", "column": "value"}) == []


@pytest.mark.parametrize("change, says", [
    ({"trend": "up"}, "trend is 'up'"),
    ({"segments": [{"start": 0, "end": 300, "trend": "increase"}]}, "ends at 300"),
    ({"segments": [{"start": 5, "end": 512, "trend": "increase"}]}, "tile [0, length=512)"),
    ({"seasonal": False}, "season_shape is 'sine' but seasonal is false"),
    ({"period": -1}, "period is -1"),
    ({"local": [{"type": "spike", "position": 3, "amplitude": 1.0}]}, "local[0].type is 'spike'"),
    ({"local": [{"type": "step_up", "position": 600, "amplitude": 1.0}]}, "local[0].position is 600"),
    ({"local": [{"type": "step_up", "position": 6, "amplitude": -1.0}]}, "a number > 0"),
    ({"confidence": {"trend": 1.5}}, "numbers in [0, 1]"),
    ({"colour": "red"}, "unknown key 'colour'"),
    ({"record": True}, "record is True"),
])
def test_validator_names_the_problem(change, says):
    problems = schema.validate_label({**ISSUE_EXAMPLE, **change})
    assert any(says in p for p in problems), problems


def test_reader_names_file_and_line(tmp_path):
    path = tmp_path / "x.labels.jsonl"
    path.write_text(json.dumps(ISSUE_EXAMPLE) + "\n" + json.dumps({**ISSUE_EXAMPLE, "noise": "loud"}) + "\n", encoding="utf-8")
    with pytest.raises(schema.LabelsError, match=r"x\.labels\.jsonl: line 2: noise is 'loud'; valid: low, medium, high"):
        list(schema.read_labels(path))
    assert len(schema.validate_labels(path)) == 1
    with pytest.raises(schema.LabelsError, match="no labels file"):
        list(schema.read_labels(tmp_path / "missing.labels.jsonl"))


@pytest.mark.parametrize("extra, says", [
    (["--kinds", "trend,colour"], "unknown question kind 'colour'; valid: amplitude, compare_max"),
    (["--kinds", "trend=0"], "a number > 0"),
    (["--trends", "steady", "--max-segments", "2"], "one trend (steady) with max_segments 2"),
    (["--noises", "loud"], "--noises: loud given; choose from low, medium, high"),
    (["--series-per-record", "0"], "--series-per-record is '0'"),
    (["--kinds", "compare_max,related"], "applies to a record of 1 series"),
    (["--min-length", "10"], "need 32 <= min_length"),
])
def test_bad_options_exit_2_and_write_nothing(tmp_path, capsys, extra, says):
    assert synth(tmp_path / "out", *extra) == 2
    assert says in capsys.readouterr().err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("name", ["../escape", str(Path("/tmp") / "abs"), "a\\b", "", "x" * 201, ".hidden"])
def test_a_name_that_is_not_a_plain_file_name_exits_2_before_writing(tmp_path, capsys, name):
    """tsconvert's one rule for --name (converters.paths.check_dataset_name), plus synth's own: no hidden file."""
    assert synth(tmp_path / "out", name=name) == 2
    assert "--name" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not (tmp_path / "escape.jsonl").exists()


def test_a_restricted_mix_draws_only_what_it_names(tmp_path):
    assert synth(tmp_path, "--kinds", "trend=2,local", "--trends", "increase,decrease", "--max-segments", "1",
                 "--local-types", "upward_spike", "--max-local", "1", "--seasonal-prob", "0") == 0
    labels = list(schema.read_labels(tmp_path / "al.labels.jsonl"))
    assert {s.trend for s in labels} <= {"increase", "decrease"} and not any(s.seasonal for s in labels)
    assert {c.type for s in labels for c in s.local} == {"upward_spike"} and max(len(s.local) for s in labels) == 1
    kinds = [r["qa"]["kind"] for r in read(tmp_path / "al.jsonl")]
    assert set(kinds) == {"trend", "local"} and kinds.count("trend") > kinds.count("local")


def test_memory_does_not_grow_with_records(tmp_path):
    """Records stream to disk: going from 20 to 400 records adds less than a tenth of the 400-record file to the
    allocation peak (a writer holding the records would add at least the file's size)."""
    mix = attributes.AttributeMix(min_length=256, max_length=256)

    def peak(n: int) -> int:
        tracemalloc.start()
        write(SynthOptions(out_dir=tmp_path / str(n), name="m", records=n, seed=0, kinds=parse_kinds("trend,value"), mix=mix))
        top = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return top

    peak(5)  # first use: lazy imports and caches, not the records
    small, large = peak(20), peak(400)
    size = (tmp_path / "400" / "m.jsonl").stat().st_size
    assert large - small < 0.1 * size, (small, large, size)


def test_the_stage1_recipe_trains_on_what_its_header_command_writes(tmp_path):
    """The header's `tsplugin synth` writes the dataset the recipe names, where its dataset_dir says."""
    argv = recipe_synth_command("qwen_ts_stage1_projector.yaml")
    args = yaml.safe_load((ROOT / "yaml_recipes" / "qwen_ts_stage1_projector.yaml").read_text(encoding="utf-8"))
    assert argv[argv.index("-o") + 1] == args["dataset_dir"] and argv[argv.index("--name") + 1] == args["dataset"]
    assert tsplugin(recipe_synth_command("qwen_ts_stage1_projector.yaml", out_dir=str(tmp_path), records="10") + ["-q"]) == 0
    info = json.loads((tmp_path / "dataset_info.json").read_text(encoding="utf-8"))
    assert (tmp_path / info[args["dataset"]]["file_name"]).is_file()
