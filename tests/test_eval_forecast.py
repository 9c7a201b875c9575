"""`tsplugin eval forecast`: number parsing edge cases, metrics against hand-computed values, baselines
on the same windows, file matching errors, and a round trip through `tsconvert forecast`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from converters.forecast import ForecastOptions, convert_forecast
from tsplugin.eval.forecast import ForecastEvalError, evaluate_forecast, main, parse_numbers


def test_parse_numbers_separators_surrounding_text_and_first_count():
    np.testing.assert_array_equal(parse_numbers("1, 2, 3", 3), [[1, 2, 3]])
    np.testing.assert_array_equal(parse_numbers("1 2\n3,4", 3), [[1, 2, 3]])                 # first 3 only
    np.testing.assert_array_equal(parse_numbers("Sure! 1.5,-2e-1 ,+3 done.", 3), [[1.5, -0.2, 3]])
    np.testing.assert_array_equal(parse_numbers("-.5, 0., 7", 3), [[-0.5, 0, 7]])
    np.testing.assert_array_equal(parse_numbers("Values: 1, 2, 3.", 3), [[1, 2, 3]])            # sentence end
    assert parse_numbers("0.0.0.0.0.0.0.0.0.0", 2) is None                                      # degenerate, not zeros
    assert parse_numbers("1.2.3, 4", 2) is None
    np.testing.assert_array_equal(parse_numbers("Forecast for OT: 4, 5", 2, ["OT"]), [[4, 5]])  # after the label
    np.testing.assert_array_equal(parse_numbers("4, 5", 2, ["OT"]), [[4, 5]])                   # no label: all numbers


def test_parse_numbers_short_or_non_finite_is_unparseable_unless_partial_pads():
    assert parse_numbers("1, 2", 3) is None
    assert parse_numbers("no numbers at all", 3) is None
    assert parse_numbers("1, nan, 2", 3) is None          # 'nan' is not a number: 2 found
    assert parse_numbers("1, 1e999, 2", 3) is None        # overflow -> inf
    np.testing.assert_array_equal(parse_numbers("1, 2", 4, partial=True), [[1, 2, 2, 2]])
    assert parse_numbers("none", 4, partial=True) is None


def test_parse_numbers_labelled_variables_in_any_order():
    text = "OT: 1, 2\nHUFL: 3, 4, 9\n"
    np.testing.assert_array_equal(parse_numbers(text, 2, ["HUFL", "OT"]), [[3, 4], [1, 2]])
    assert parse_numbers("HUFL: 3, 4", 2, ["HUFL", "OT"]) is None            # OT missing
    assert parse_numbers("OT: 1\nHUFL: 3, 4", 2, ["HUFL", "OT"]) is None      # OT short
    # A label that ends another (x1 inside xx1) is not mistaken for it.
    np.testing.assert_array_equal(parse_numbers("xx1: 5, 6\nx1: 7, 8", 2, ["x1", "xx1"]), [[7, 8], [5, 6]])


def _record(series, answer, mean=10.0, std=2.0, normalized=True):
    return {"input": "Forecast <ts><ts/>", "output": answer, "timeseries": [series], "variables": ["OT"], "targets": ["OT"],
            "normalized": normalized, "scaling": {"OT": {"mean": mean, "std": std}}, "window_start": 0}


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _splits(tmp_path: Path, stem: str = "t") -> tuple[Path, Path]:
    """Train/val files next to the hand-made test file (4 -> 2 windows), for the fitted baselines."""
    rows = [_record([i % 3, (i + 1) % 3, (i + 2) % 3, i % 2], f"{(i + 3) % 3}.000, {(i + 1) % 2}.000") for i in range(8)]
    return _write(tmp_path / f"{stem}_train.jsonl", rows[:6]), _write(tmp_path / f"{stem}_val.jsonl", rows[6:])


@pytest.fixture()
def hand_files(tmp_path):
    _splits(tmp_path)
    test = _write(tmp_path / "t_test.jsonl", [
        _record([1, 2, 3, 4], "5.000, 6.000"),
        _record([0, 2, 1, 3], "1.000, 0.000"),
        _record([0, 0, 0, 0], "2.000, 2.000"),
    ])
    preds = _write(tmp_path / "generated_predictions.jsonl", [
        {"prompt": "p", "predict": "5.5, 6.5", "label": "5.000, 6.000"},
        {"prompt": "p", "predict": "1, 1", "label": "1.000, 0.000"},
        {"prompt": "p", "predict": "I cannot tell", "label": "2.000, 2.000"},
    ])
    return preds, test


def test_metrics_equal_hand_computed_values_on_both_scales(hand_files):
    r = evaluate_forecast(*hand_files, season=2)
    assert (r["windows"], r["scored"], r["unparseable"]) == (3, 2, 1)
    assert r["unparseable_share"] == pytest.approx(1 / 3)
    n = r["normalized"]
    # model errors (.5, .5), (0, 1); naive [4,4],[3,3] -> (-1,-2), (2,3); seasonal [3,4],[1,3] -> (-2,-2), (0,3)
    assert n["model"] == {"mse": pytest.approx(0.375), "mae": pytest.approx(0.5)}
    assert n["naive"] == {"mse": pytest.approx(4.5), "mae": pytest.approx(2.0)}
    assert n["seasonal_naive"] == {"mse": pytest.approx(4.25), "mae": pytest.approx(1.75)}
    assert n["ratio_vs_naive"] == {"mse": pytest.approx(0.375 / 4.5), "mae": pytest.approx(0.25)}
    assert n["ratio_vs_seasonal_naive"]["mse"] == pytest.approx(0.375 / 4.25)
    # all windows: the third adds naive/seasonal errors (-2, -2) each
    assert n["all_windows"]["naive"]["mse"] == pytest.approx((1 + 4 + 4 + 9 + 4 + 4) / 6)
    o = r["original"]       # std 2: squared errors x4, absolute errors x2
    assert o["model"] == {"mse": pytest.approx(1.5), "mae": pytest.approx(1.0)}
    assert o["naive"] == {"mse": pytest.approx(18.0), "mae": pytest.approx(4.0)}
    assert o["ratio_vs_naive"]["mse"] == pytest.approx(n["ratio_vs_naive"]["mse"])


def test_partial_pads_and_raw_records_are_normalised_with_recorded_statistics(tmp_path):
    test = _write(tmp_path / "t.jsonl", [_record([12, 14, 16, 18], "20.0, 22.0", normalized=False)])
    preds = _write(tmp_path / "p.jsonl", [{"predict": "20", "label": "20.0, 22.0"}])
    with pytest.raises(ForecastEvalError, match=r"t.jsonl: cannot tell its train and val splits .* pass --train NAME_train.jsonl"):
        evaluate_forecast(preds, test, season=2)
    train, val = _splits(tmp_path, "other")
    assert evaluate_forecast(preds, test, season=2, train=train, val=val)["scored"] == 0
    r = evaluate_forecast(preds, test, season=2, partial=True, train=train, val=val)
    assert (r["scored"], r["padded"]) == (1, 1)
    assert r["original"]["model"] == {"mse": pytest.approx(2.0), "mae": pytest.approx(1.0)}    # errors 0, -2
    assert r["normalized"]["model"] == {"mse": pytest.approx(0.5), "mae": pytest.approx(0.5)}  # / std 2
    assert r["original"]["naive"]["mse"] == pytest.approx((4 + 16) / 2)                        # 18 vs 20, 22


def test_mismatched_files_are_errors_naming_file_and_fix(hand_files, tmp_path):
    preds, test = hand_files
    rows = [json.loads(line) for line in preds.read_text().splitlines()]
    short = _write(tmp_path / "short.jsonl", rows[:2])
    with pytest.raises(ForecastEvalError, match=r"short.jsonl: 2 predictions but .*t_test.jsonl has 3 test records"):
        evaluate_forecast(short, test, season=2)
    swapped = _write(tmp_path / "swapped.jsonl", [rows[1], rows[0], rows[2]])
    with pytest.raises(ForecastEvalError, match=r"swapped.jsonl: line 1: label does not match .* record 0's answer"):
        evaluate_forecast(swapped, test, season=2)
    with pytest.raises(ForecastEvalError, match=r"--season 24 is longer than the input window \(4 points\)"):
        evaluate_forecast(preds, test, season=24)
    (tmp_path / "t_val.jsonl").unlink()
    with pytest.raises(ForecastEvalError, match=r"t_val.jsonl: no such file"):
        evaluate_forecast(preds, test, season=2)


def test_round_trip_with_converter_perfect_answers_and_baselines_match_numpy(tmp_path):
    n = 200
    t = np.arange(n)
    values = 50 + 10 * np.sin(2 * np.pi * t / 12) + 0.1 * t
    csv = tmp_path / "s.csv"
    csv.write_text("date,OT\n" + "".join(f"{i},{float(v)!r}\n" for i, v in enumerate(values)))
    convert_forecast(ForecastOptions(csv=csv, seq_len=24, pred_len=6, out_dir=tmp_path, name="s", precision=6))
    test = tmp_path / "s_test.jsonl"
    records = [json.loads(line) for line in test.read_text().splitlines()]
    preds = _write(tmp_path / "p.jsonl", [{"predict": r["output"], "label": r["output"]} for r in records])
    out = tmp_path / "report.json"
    assert main([str(preds), "--test", str(test), "--season", "12", "--json", "--report", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["original"]["model"]["mse"] < 1e-9
    starts = [rec["window_start"] for rec in records]
    truth = np.stack([values[s + 24:s + 30] for s in starts])
    naive = np.stack([np.repeat(values[s + 23], 6) for s in starts])
    seasonal = np.stack([values[s + 12:s + 18] for s in starts])
    assert r["original"]["naive"]["mse"] == pytest.approx(np.mean((naive - truth) ** 2), rel=1e-6)
    assert r["original"]["seasonal_naive"]["mae"] == pytest.approx(np.mean(np.abs(seasonal - truth)), rel=1e-6)


def test_cli_text_report(hand_files, capsys):
    preds, test = hand_files
    assert main([str(preds), "--test", str(test), "--season", "2"]) == 0
    text = capsys.readouterr().out
    assert "3 windows x 1 target(s) x 2 steps; scored 2, unparseable 1 (33.3%)" in text
    assert re.search(r"^normalized model / naive +0\.08333 +0\.25$", text, re.M)
    assert re.search(r"^original   naive \(last value\) +18 +4$", text, re.M)
    assert main([str(preds), "--test", str(tmp := test.with_name("missing.jsonl"))]) == 2
    assert f"{tmp}: no such file" in capsys.readouterr().err


def test_tsplugin_eval_forecast_subcommand(hand_files, capsys):
    from tsplugin.cli import main as tsplugin_main

    preds, test = hand_files
    assert tsplugin_main(["eval", "forecast", str(preds), "--test", str(test), "--season", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["normalized"]["model"]["mse"] == pytest.approx(0.375)


def test_junk_answers_are_unparseable_and_bad_files_exit_2_naming_the_line(hand_files, capsys):
    preds, test = hand_files
    rows = [json.loads(line) for line in preds.read_text().splitlines()]
    rows[2]["predict"] = "-Infinity, 1e999 " + "[" * 3000
    _write(preds, rows)
    assert main([str(preds), "--test", str(test), "--season", "2"]) == 0
    assert "scored 2, unparseable 1 (33.3%)" in capsys.readouterr().out

    good = preds.read_bytes().splitlines()
    for body, where, expected in [
        (good[0] + b"\n" + good[1].replace(b"prompt", b"pr\xe9mpt") + b"\n" + good[2] + b"\n", preds, "line 2: column 5: byte 0xe9 is not UTF-8"),
        (good[0] + b"\n" + b"[" * 3000 + b"\n" + good[2] + b"\n", preds, "line 2: nested deeper than JSON readers allow"),
    ]:
        where.write_bytes(body)
        assert main([str(preds), "--test", str(test), "--season", "2"]) == 2
        err = capsys.readouterr().err
        assert f"{where}: {expected}" in err and "Traceback" not in err
    preds.write_bytes(b"\n".join(good) + b"\n")
    records = [json.loads(line) for line in test.read_text().splitlines()]
    for change, expected in [
        (lambda r: r["scaling"]["OT"].update(mean="ten"), "record 1: its input series or scaling (mean/std per target) are not numbers"),
        (lambda r: r.update(targets="OT"), "record 1: output/targets/variables/timeseries/scaling do not have the shapes"),
        (lambda r: r["timeseries"][0].__setitem__(0, 10**400), "record 1: its input series or scaling"),
    ]:
        bad = json.loads(json.dumps(records))
        change(bad[1])
        _write(test, bad)
        assert main([str(preds), "--test", str(test), "--season", "2"]) == 2
        err = capsys.readouterr().err
        assert f"{test}: {expected}" in err and "Traceback" not in err


def _converted(tmp_path: Path, values: np.ndarray, seq: int, pred: int) -> tuple[Path, Path]:
    """`tsconvert forecast` of a one-column series and perfect predictions of its test split: (predictions, test)."""
    csv = tmp_path / "s.csv"
    csv.write_text("date,OT\n" + "".join(f"{i},{float(v)!r}\n" for i, v in enumerate(values)))
    convert_forecast(ForecastOptions(csv=csv, seq_len=seq, pred_len=pred, out_dir=tmp_path, name="s", precision=6))
    test = tmp_path / "s_test.jsonl"
    records = [json.loads(line) for line in test.read_text().splitlines()]
    return _write(tmp_path / "p.jsonl", [{"predict": r["output"], "label": r["output"]} for r in records]), test


def test_season_is_chosen_from_the_train_split_and_reported(tmp_path, capsys):
    rng = np.random.default_rng(0)
    t = np.arange(600)
    period = 17      # no divisor of the window lengths, not a round number
    values = 5 * np.sin(2 * np.pi * t / period) + 2 * np.cos(4 * np.pi * t / period) + 0.01 * t + rng.normal(0, 0.3, t.size)
    preds, test = _converted(tmp_path, values, seq=48, pred=12)
    r = evaluate_forecast(preds, test)
    assert (r["season"], r["season_source"]) == (period, "train+val")
    assert str(period) in r["season_scores"] and r["season_scores"][str(period)] == min(r["season_scores"].values())
    n = r["normalized"]
    assert n["all_windows"]["seasonal_naive"]["mse"] < 0.5 * n["all_windows"]["naive"]["mse"]
    assert main([str(preds), "--test", str(test)]) == 0
    out = capsys.readouterr().out
    assert f"season {period} (chosen from the train split's autocorrelation peaks" in out
    assert re.search(rf"^normalized seasonal naive \({period}\) ", out, re.M)


def test_season_flag_overrides_the_choice(tmp_path):
    t = np.arange(400)
    values = 10 * np.sin(2 * np.pi * t / 12) + 0.05 * t
    preds, test = _converted(tmp_path, values, seq=36, pred=6)
    assert evaluate_forecast(preds, test)["season"] == 12
    out = tmp_path / "r.json"
    assert main([str(preds), "--test", str(test), "--season", "5", "--json", "--report", str(out)]) == 0
    r = json.loads(out.read_text())
    assert (r["season"], r["season_source"], r["season_scores"]) == (5, "given", {})
    records = [json.loads(line) for line in test.read_text().splitlines()]
    starts = [rec["window_start"] for rec in records]
    truth = np.stack([values[s + 36:s + 42] for s in starts])
    seasonal = np.stack([values[s + 31 + np.arange(6) % 5] for s in starts])   # one 5-point season back, repeated
    assert r["original"]["seasonal_naive"]["mse"] == pytest.approx(np.mean((seasonal - truth) ** 2), rel=1e-6)


def test_drift_is_exact_on_a_line(tmp_path):
    from tsplugin.eval.baselines import drift

    line = 3.0 + 0.25 * np.arange(20, dtype=np.float64)
    np.testing.assert_array_equal(drift(line[None, :12], 8), line[None, 12:])   # exact in binary: quarter steps
    preds, test = _converted(tmp_path, 100 - 0.5 * np.arange(300), seq=24, pred=6)
    r = evaluate_forecast(preds, test, season=12)
    # The converter writes z-scored values rounded to 6 decimals: each input and answer is off by <= 5e-7, and the
    # slope (from two inputs 23 steps apart) by <= 1e-6 / 23 per step; so each drift error is under 1e-6 + 6e-6 / 23.
    bound = (1e-6 + 6e-6 / 23) ** 2
    assert r["normalized"]["all_windows"]["drift"]["mse"] <= bound
    assert r["normalized"]["all_windows"]["naive"]["mse"] > 1e-3      # a line is no constant
    assert r["normalized"]["best_baseline"] == "drift"


def test_ridge_beats_naive_on_an_ar_process(tmp_path):
    rng = np.random.default_rng(1)
    x = np.zeros(1500)
    for i in range(2, x.size):          # AR(2), stationary, oscillating: the last value alone is a poor forecast
        x[i] = 1.2 * x[i - 1] - 0.6 * x[i - 2] + rng.normal()
    preds, test = _converted(tmp_path, x, seq=32, pred=4)
    r = evaluate_forecast(preds, test, season=8)
    n = r["normalized"]["all_windows"]
    assert n["ridge"]["mse"] < 0.8 * n["naive"]["mse"]
    assert n["ridge"]["mse"] < n["drift"]["mse"] and n["ridge"]["mse"] < n["seasonal_naive"]["mse"]
    assert r["normalized"]["best_baseline"] == "ridge"
    assert r["ridge_alpha"] > 0 and r["train_rows"] > r["val_rows"] > 0
