"""`tsconvert describe`: attributes of series with known components, the outputs (labels schema checked by
synth's validator, Q&A left out when uncertain), rejects with reasons and nothing lost, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from converters.cli import EXIT_OK, EXIT_REJECTED, EXIT_USAGE, main
from converters.describe.extract import describe_series
from converters.describe.qa_policy import KIND_ATTRIBUTES, MIN_CONFIDENCE
from tsplugin.synth.attributes import AttributeMix, compose_record, local_component, season
from tsplugin.synth.labels import read_labels, validate_labels

ROOT = Path(__file__).resolve().parents[1]
N = 300


def _noise(seed: int, sd: float, n: int = N) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, sd, n)


def _ramp(n: int, per_point: float) -> np.ndarray:
    return per_point * np.arange(n, dtype=float)


# (name, series, expected attributes); every amount is a multiple of the noise's 0.1 so the cases are
# clear for a reader, and positions within 2% of the length count as found (the bench's rule).
CASES = [
    ("rising", 5.0 + _ramp(N, 0.02) + _noise(0, 0.1), {"trend": "increase", "seasonal": False, "local": []}),
    ("falling", -_ramp(N, 0.02) + _noise(1, 0.1), {"trend": "decrease", "seasonal": False, "local": []}),
    ("flat sine 24", season("sine", N, 24.0, 2.0, 0.3) + _noise(2, 0.1),
     {"trend": "steady", "seasonal": True, "period": 24.0, "shape": "sine", "local": []}),
    ("square 40 on a rise", _ramp(N, 0.01) + season("square", N, 40.0, 1.5, 1.0) + _noise(3, 0.1),
     {"trend": "increase", "seasonal": True, "period": 40.0, "shape": "square", "local": []}),
    ("upward spike", _noise(4, 0.1) + local_component("upward_spike", N, 150, 2.0),
     {"trend": "steady", "seasonal": False, "local": [("upward_spike", 150)]}),
    ("step down", _noise(5, 0.1) + local_component("step_down", N, 100, 1.5),
     {"seasonal": False, "local": [("step_down", 100)]}),
    ("sudden increase", _noise(6, 0.1) + local_component("sudden_increase", N, 200, 1.5),
     {"seasonal": False, "local": [("sudden_increase", 200)]}),
]


@pytest.mark.parametrize("name,values,expect", CASES, ids=[c[0] for c in CASES])
def test_known_attributes_are_found(name, values, expect):
    lab = describe_series(values).labels
    assert not validate_labels_obj(lab), validate_labels_obj(lab)
    if "trend" in expect:
        assert lab.trend == expect["trend"], lab
    assert lab.seasonal == expect["seasonal"], lab
    if expect["seasonal"]:
        assert abs(lab.period - expect["period"]) <= 0.1 * expect["period"], lab
        assert lab.season_shape == expect["shape"], lab
    found = [(c.type, c.position) for c in lab.local]
    assert len(found) == len(expect["local"]), lab
    for (t, p), (et, ep) in zip(found, expect["local"]):
        assert t == et and abs(p - ep) <= 0.02 * N, lab
    assert all(0.0 <= v <= 1.0 for v in lab.confidence.values())


def validate_labels_obj(lab) -> list[str]:
    from tsplugin.synth.labels import validate_label

    return validate_label(lab.to_json())


def test_pure_noise_is_high_noise_with_low_confidence():
    """No component to measure the scale by: everything seen is noise, and describe says it is unsure."""
    lab = describe_series(_noise(7, 1.0)).labels
    assert lab.noise == "high" and lab.confidence["noise"] < 0.5
    assert not lab.seasonal and lab.local == []


def _csv(path: Path, values, col: str = "value", other: dict | None = None) -> None:
    cols = {col: list(values), **(other or {})}
    names = list(cols)
    rows = ["timestamp," + ",".join(names)]
    for i in range(len(values)):
        rows.append(f"{i}," + ",".join("" if (isinstance(cols[c][i], float) and np.isnan(cols[c][i])) else f"{cols[c][i]:.6g}"
                                       for c in names))
    path.write_text("\n".join(rows) + "\n")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "csv"
    d.mkdir()
    _csv(d / "a_good.csv", CASES[2][1], other={"load": CASES[0][1]})
    _csv(d / "b_constant.csv", np.full(50, 5.0))
    _csv(d / "c_three.csv", [1.0, 2.0, 3.0])
    gap = CASES[0][1].copy()
    gap[100:130] = np.nan
    _csv(d / "d_gap.csv", gap)
    few = CASES[4][1].copy()
    few[[10, 50]] = np.nan  # isolated missing cells: interpolated and counted, not rejected
    _csv(d / "e_spike.csv", few)
    return d


def test_csv_folder_outputs_rejects_and_report(folder: Path, tmp_path: Path):
    out = tmp_path / "out"
    assert main(["describe", "--csv-dir", str(folder), "-o", str(out), "--name", "mine", "-q"]) == EXIT_OK
    report = json.loads((out / "mine.report.json").read_text())
    assert report["input"] == 5 and report["described"] == 2 and report["rejected"] == 3
    assert report["rejected_by_reason"] == {"constant_series": 1, "missing_run": 1, "series_too_short": 1}
    assert report["repairs"]["cells_interpolated"] == 2
    rejects = [json.loads(x) for x in (out / "mine.rejects.jsonl").read_text().splitlines()]
    assert {r["record"]["csv"]: r["reason"] for r in rejects} == {
        "b_constant.csv": "constant_series", "c_three.csv": "series_too_short", "d_gap.csv": "missing_run"}
    for r in rejects:  # one line naming the file, the record and the fix
        assert "\n" not in r["message"] and r["record"]["csv"] in r["message"] and f"record {r['index']}" in r["message"]
    assert "30 missing values in a row" in next(r["message"] for r in rejects if r["reason"] == "missing_run")
    # labels: synth's validator accepts them; each names its CSV and column
    assert validate_labels(out / "mine.labels.jsonl") == []
    labels = list(read_labels(out / "mine.labels.jsonl"))
    data = [json.loads(x) for x in (out / "mine.jsonl").read_text().splitlines()]
    assert len(data) == report["questions"]["written"] == len({lab.record for lab in labels})
    assert {(lab.extra["csv"], lab.extra["column"]) for lab in labels} == {
        ("a_good.csv", "value"), ("a_good.csv", "load"), ("e_spike.csv", "value")}
    for k, rec in enumerate(data):  # every record's series are labelled, in order, with the record's index
        mine = [lab for lab in labels if lab.record == k]
        assert [lab.series for lab in mine] == list(range(len(rec["timeseries"])))
        assert [lab.length for lab in mine] == [len(s) for s in rec["timeseries"]]
        assert rec["input"].count("<ts><ts/>") == len(rec["timeseries"]) and rec["qa"]["kind"] in KIND_ATTRIBUTES
    info = json.loads((out / "dataset_info.json").read_text())
    assert info["mine"]["file_name"] == "mine.jsonl" and info["mine"]["columns"]["timeseries"] == "timeseries"


def test_uncertain_questions_are_left_out_and_counted(folder: Path, tmp_path: Path):
    out = tmp_path / "out"
    assert main(["describe", "--csv-dir", str(folder), "-o", str(out), "--name", "sure", "-q", "--min-confidence", "1"]) == EXIT_OK
    report = json.loads((out / "sure.report.json").read_text())
    labels = {}
    for lab in read_labels(out / "sure.labels.jsonl"):
        labels.setdefault(lab.record, []).append(lab)
    for k, line in enumerate((out / "sure.jsonl").read_text().splitlines()):
        qa = json.loads(line)["qa"]
        for s in qa["series"]:
            assert all(labels[k][s].confidence[a] >= 1.0 for a in KIND_ATTRIBUTES[qa["kind"]]), (qa, labels[k][s])
    left = report["questions"]["left_out_uncertain"]
    assert sum(left.values()) > 0 and "value" not in left  # values are read off the data: never uncertain
    asked = report["questions"]["by_kind"]
    applicable = 3 * len(KIND_ATTRIBUTES)  # an upper bound: 2 records x every kind, minus the ones that do not apply
    assert sum(asked.values()) + sum(left.values()) <= applicable


def test_same_input_same_bytes(folder: Path, tmp_path: Path):
    outs = []
    for k in range(2):
        out = tmp_path / f"o{k}"
        assert main(["describe", "--csv-dir", str(folder), "-o", str(out), "--name", "d", "-q", "--seed", "3"]) == EXIT_OK
        outs.append([(out / f"d{s}").read_bytes() for s in (".jsonl", ".labels.jsonl", ".rejects.jsonl")])
    assert outs[0] == outs[1]


def test_records_json_mode_reads_images_as_convert_does(tmp_path: Path):
    d = tmp_path / "csv"
    d.mkdir()
    _csv(d / "s1.csv", CASES[5][1])
    recs = [{"instruction": "<image> what is this?", "output": "a step", "images": ["plots/s1.jpg"]},
            {"instruction": "<image>", "output": "?", "images": ["C:\\plots\\missing.png"]},
            {"instruction": "no image", "output": "?"}]
    (tmp_path / "gdsh.json").write_text(json.dumps(recs))
    out = tmp_path / "out"
    assert main(["describe", str(tmp_path / "gdsh.json"), "--csv-dir", str(d), "-o", str(out), "--name", "g", "-q"]) == EXIT_OK
    report = json.loads((out / "g.report.json").read_text())
    assert (report["input"], report["described"]) == (3, 1)
    assert report["rejected_by_reason"] == {"missing_csv": 1, "no_series": 1}
    rejects = [json.loads(x) for x in (out / "g.rejects.jsonl").read_text().splitlines()]
    assert [r["record"] for r in rejects] == recs[1:]  # the records as written, nothing lost
    labels = list(read_labels(out / "g.labels.jsonl"))
    assert {lab.extra["csv"] for lab in labels} == {"s1.csv"}
    assert labels[0].local and labels[0].local[0].type == "step_down"


def test_exit_codes(folder: Path, tmp_path: Path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["describe", "--csv-dir", str(empty), "-o", str(tmp_path / "o1"), "--name", "e"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "no *.csv file" in err and str(empty) in err
    assert not (tmp_path / "o1" / "e.jsonl").exists()
    assert main(["describe", "--csv-dir", str(tmp_path / "nope"), "--name", "e"]) == EXIT_USAGE
    assert main(["describe", "--csv-dir", str(folder), "--name", "e", "--min-confidence", "2"]) == EXIT_USAGE
    assert main(["describe", "--csv-dir", str(folder), "-o", str(tmp_path / "o2"), "--name", "s", "-q", "--strict"]) == EXIT_REJECTED
    assert "3 record(s) rejected" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:  # --name is required
        main(["describe", "--csv-dir", str(folder)])
    assert exc.value.code == EXIT_USAGE


@pytest.mark.parametrize("extra, says", [
    (["--name", "../escape"], "path separator"),
    (["--name", "a\\b"], "path separator"),
    (["--name", "x" * 201], "over 200"),
    (["--name", ".hidden"], "hidden file"),
    (["--name", "ok", "--value-col", "value", "--value-col", "VALUE"], "same column"),
])
def test_usage_errors_exit_2_before_anything_is_written(folder: Path, tmp_path: Path, capsys, extra, says):
    """convert's rules for --name and --value-col (converters.paths / converters.csvread), applied to describe."""
    out = tmp_path / "o"
    assert main(["describe", "--csv-dir", str(folder), "-o", str(out), *extra]) == EXIT_USAGE
    assert says in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "escape.jsonl").exists()


def test_console_script_runs_describe(folder: Path, tmp_path: Path):
    proc = subprocess.run([sys.executable, "-m", "converters.cli", "describe", "--csv-dir", str(folder), "-o",
                           str(tmp_path / "o"), "--name", "cli"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == EXIT_OK, proc.stderr
    assert "5 records: 2 described + 3 rejected" in proc.stdout and "left out" in proc.stdout


# Local changes' shape and position (issue 17).
def _one_change(values, n: int = N):
    lab = describe_series(values).labels
    return [(c.type, c.position) for c in lab.local], lab


def test_high_noise_sudden_increase_is_a_ramp_at_its_start():
    """Noise 0.5 against a 3.0 rise over 12 points: the least-squares ramp fit finds a ramp and where it
    starts, not a step somewhere inside it."""
    values = _noise(11, 0.5) + local_component("sudden_increase", N, 120, 3.0)
    found, lab = _one_change(values)
    assert len(found) == 1 and found[0][0] == "sudden_increase" and abs(found[0][1] - 120) <= 0.02 * N, lab


def test_step_down_on_a_trend_and_season_is_a_step_down_where_it_is():
    values = _ramp(N, 0.01) + season("sine", N, 30.0, 1.0, 0.5) + _noise(12, 0.1) + local_component("step_down", N, 170, 2.0)
    found, lab = _one_change(values)
    assert found and found[0][0] == "step_down" and abs(found[0][1] - 170) <= 0.02 * N, lab
    assert len(found) == 1, lab


def test_spike_at_a_trend_kink_is_a_spike_not_a_shift():
    """A spike where the trend turns: the lines on either side extrapolate to different levels (a shift
    by their reading); the spike candidate fits the window better than any step or ramp."""
    t = np.arange(N, dtype=float)
    values = np.where(t < 150, 0.02 * t, 3.0 - 0.02 * (t - 150)) + _noise(13, 0.1) + local_component("upward_spike", N, 150, 3.0)
    found, lab = _one_change(values)
    assert found == [("upward_spike", found[0][1])] and abs(found[0][1] - 150) <= 0.02 * N, lab


def test_prune_drops_a_change_the_joint_fit_does_not_support():
    """A 'step' that only one pass's misfit made (here: none in the data) shrinks to nothing when fitted
    together with the trend, the season and the real step."""
    from converters.describe import local
    from converters.describe.season import spline_basis

    s = season("square", N, 50.0, 1.0, 0.2)
    y = s + local_component("step_up", N, 100, 2.0) + _noise(14, 0.05)
    real = local.Change("step_up", 100, 2.0, 1.0)
    fake = local.Change("step_down", 200, 0.5, 0.7)
    kept = local.prune(y, np.hstack([spline_basis(N, knots=[]), s[:, None]]), [real, fake], 0.3, 0.4, 0.05)
    assert [c.position for c in kept] == [100] and abs(kept[0].amplitude - 2.0) < 0.1


# synth records (seed, record) describe used to get wrong, each for the reason named; the bench's rule:
# every true change found with its type within 2% of the length, nothing else
SYNTH_FIXED = [
    (0, 57, "high noise: sudden increases read as steps 3% late (which noisy points lay between the levels)"),
    (1, 33, "an upward spike at a trend kink read as a step up (the lines either side extrapolate apart)"),
    (0, 236, ("backfitting: the second pass's season was absorbed by half-cycle trend knots and replaced the "
              "first pass's better model (season and sudden decrease lost)")),
    (2, 66, ("a square season's period 1% off (113.8 for 112.7): the sampled square's residual is flat between "
             "whole-sample edge moves, so the simplex stopped at its start; the last cycles' edges read as spikes")),
    (2, 55, "the same, period 61.7 for 61.3: two spurious spikes at the square's edges"),
]


def _synth_and_described(seed: int, record: int):
    """(synth's labels, describe's labels) of one synth record of the bench's mix (bench/describe_accuracy.py)."""
    _, (comp,) = compose_record(seed, record, 1, AttributeMix(min_length=64, max_length=512))
    return comp.labels, describe_series(comp.values).labels


@pytest.mark.parametrize("seed,record,why", SYNTH_FIXED, ids=[f"seed{s}-record{r}" for s, r, _ in SYNTH_FIXED])
def test_synth_records_once_wrong(seed, record, why):
    truth, lab = _synth_and_described(seed, record)
    assert len(lab.local) == len(truth.local), (why, lab.local, truth.local)
    for t, p in zip(truth.local, lab.local):
        assert p.type == t.type and abs(p.position - t.position) <= 0.02 * truth.length, (why, lab.local, truth.local)
    assert lab.seasonal == truth.seasonal, (why, lab)


# synth records whose season describe used to get wrong (presence, and the period within 10%)
SYNTH_SEASONS = [
    (2, 10, "no season: an inc/dec/inc trend read as a square of period length/3 (the fit wanted a longer one)"),
    (2, 104, "no season: a rise with a spike and a step read as a sine of period length/3"),
    (0, 18, "a sine of period 18.8 read at 3 x 18.8 (its 3rd harmonic, the largest, was the cycle)"),
]


@pytest.mark.parametrize("seed,record,why", SYNTH_SEASONS, ids=[f"seed{s}-record{r}" for s, r, _ in SYNTH_SEASONS])
def test_synth_seasons_once_wrong(seed, record, why):
    truth, lab = _synth_and_described(seed, record)
    assert lab.seasonal == truth.seasonal, (why, lab)
    if truth.seasonal:
        assert abs(lab.period - truth.period) <= 0.1 * truth.period, (why, lab)


# synth records whose overall trend describe used to get wrong with the right segments: the schema's rule
# (net change against the summed changes) read on per-segment line fits, whose rises drift where a
# breakpoint is a few points off; the continuous segmented fit reads them as synth composed them
TREND_FIXED = [
    (1, 4, "decrease -31.1 then increase +15.9 (net 0.32 of the total): the lines read 0.27, steady"),
    (3, 135, "decrease -18.6, steady, increase +27.2 (0.19: steady): the lines read 0.33, increase"),
    (1, 42, "decrease, increase, decrease at S = 1.0: the lines called the first segment steady"),
]


@pytest.mark.parametrize("seed,record,why", TREND_FIXED, ids=[f"seed{s}-record{r}" for s, r, _ in TREND_FIXED])
def test_synth_overall_trend_once_wrong(seed, record, why):
    truth, lab = _synth_and_described(seed, record)
    assert [s.trend for s in lab.segments] == [s.trend for s in truth.segments], (why, lab.segments, truth.segments)
    assert lab.trend == truth.trend, (why, lab.trend, truth.trend)


def test_quasi_periodic_cycle_is_a_season_of_its_mean_period():
    """A sunspot-like cycle: 9.5 to 12.5 points per cycle and an amplitude between 0.5 and 1.5, so no fixed
    phase fits all of it; it is reported as a season of about 11 points, with nothing else."""
    n = 300
    t = np.arange(n)
    phase = np.cumsum(2 * np.pi / (11.0 + 1.5 * np.sin(2 * np.pi * t / 150)))
    values = 5.0 + (1.0 + 0.5 * np.sin(2 * np.pi * t / 110 + 1)) * np.sin(phase) + _noise(16, 0.1, n)
    lab = describe_series(values).labels
    assert lab.seasonal and abs(lab.period - 11.0) <= 1.1 and lab.confidence["seasonal"] > 0.7, lab
    assert lab.trend == "steady" and lab.local == [], lab


def test_a_shift_of_few_noise_units_between_long_levels_is_a_step():
    """The Nile's shape: 100 points, a drop of 2.5 noise units at 28 between two flat levels. Below the
    per-point threshold (3.5 sigma) but 5.7 standard errors of the jump between the two fitted lines. Its
    confidence (the chance its size clears that threshold, given its standard error) is above the cut, so
    describe asks about it (the ratio to the threshold alone gave 0.67)."""
    n = 100
    values = 1000.0 + _noise(15, 120.0, n) + local_component("step_down", n, 28, 300.0)
    lab = describe_series(values).labels
    assert [(c.type, abs(c.position - 28) <= 2) for c in lab.local] == [("step_down", True)], lab
    assert lab.trend == "steady", lab
    assert lab.confidence["local"] >= MIN_CONFIDENCE, lab


# convert's CSV reading options, with convert's meaning (converters.cli._add_csv_size_and_links, ENCODING_HELP).
def _describe_one(tmp_path: Path, *extra: str) -> tuple[dict, list[dict]]:
    out = tmp_path / "o"
    assert main(["describe", "--csv-dir", str(tmp_path / "csv"), "-o", str(out), "--name", "d", "-q", *extra]) == EXIT_OK
    report = json.loads((out / "d.report.json").read_text())
    rejects = [json.loads(x) for x in (out / "d.rejects.jsonl").read_text().splitlines()]
    labels = list(read_labels(out / "d.labels.jsonl")) if report["described"] else []
    return report, [*rejects, *({"column": lab.extra["column"]} for lab in labels)]


def test_latin1_header_is_read_with_encoding_latin1(tmp_path: Path):
    d = tmp_path / "csv"
    d.mkdir()
    rows = ["timestamp,temp °C"] + [f"{i},{v:.6g}" for i, v in enumerate(CASES[0][1])]
    (d / "t.csv").write_bytes(("\n".join(rows) + "\n").encode("latin-1"))
    report, rows_out = _describe_one(tmp_path)  # auto: not UTF-8, not confirmably GBK -> a reject naming the option
    assert report["rejected_by_reason"] == {"unreadable_csv": 1} and "--encoding cp1252" in rows_out[0]["message"]
    report, rows_out = _describe_one(tmp_path, "--encoding", "latin-1")
    assert report["described"] == 1 and {r["column"] for r in rows_out} == {"temp °C"}
    assert report["options"]["encoding"] == "latin-1"
    assert main(["describe", "--csv-dir", str(d), "--name", "x", "--encoding", "klingon"]) == EXIT_USAGE


def test_csv_over_max_csv_bytes_is_rejected_and_the_run_goes_on(tmp_path: Path):
    d = tmp_path / "csv"
    d.mkdir()
    _csv(d / "a_big.csv", CASES[0][1])
    _csv(d / "b_small.csv", CASES[0][1][:40])
    limit = (d / "b_small.csv").stat().st_size
    report, rows_out = _describe_one(tmp_path, "--max-csv-bytes", str(limit))
    assert report["described"] == 1 and report["rejected_by_reason"] == {"csv_too_large": 1}
    assert rows_out[0]["record"]["csv"] == "a_big.csv" and f"above --max-csv-bytes {limit}" in rows_out[0]["message"]
    assert main(["describe", "--csv-dir", str(d), "--name", "x", "--max-csv-bytes", "0"]) == EXIT_USAGE


def test_hard_linked_csv_is_refused_unless_allowed(tmp_path: Path):
    outside = tmp_path / "secret.csv"
    _csv(outside, CASES[0][1])
    (tmp_path / "csv").mkdir()
    os.link(outside, tmp_path / "csv" / "a.csv")  # a hard link may be a file from outside --csv-dir
    report, rows_out = _describe_one(tmp_path)
    assert report["rejected_by_reason"] == {"hard_linked_csv": 1} and "--allow-hard-links" in rows_out[0]["message"]
    report, rows_out = _describe_one(tmp_path, "--allow-hard-links")
    assert report["described"] == 1 and report["rejected"] == 0
