"""sp encoding, patch counting, batching and placeholder expansion (tsplugin.processing)."""

import json

import numpy as np
import pytest
import torch

from tsplugin.processing import (
    TimeSeriesProcessor,
    batch_series,
    count_placeholders,
    expand_placeholders,
    num_patches,
    sp_encode,
)

# The sp arithmetic is the same in every release; these tests pin it with the first release's
# `[Value Offset: ..|Value Scaling: ..]` prefix (the current format: tests/test_profiles.py).
V1 = "chatts-14b-v1"


def test_sp_encode_small_range_is_only_centred():
    feats, prefix = sp_encode([1.0, 2.0, 3.0, 4.0], V1)  # mean 2.5, |y| max 1.5 < 3
    assert feats.dtype == np.float32 and feats.shape == (4, 2)
    np.testing.assert_allclose(feats[:, 0], [-1.5, -0.5, 0.5, 1.5])
    np.testing.assert_array_equal(feats[:, 1], [1.0, 1.0, 1.0, 1.0])
    assert prefix == "[Value Offset: -2.5000|Value Scaling: 1.0000]"


def test_sp_encode_large_range_is_scaled_to_three():
    feats, prefix = sp_encode([0.0, 10.0, 20.0, 30.0], V1)  # mean 15, y = -15..15, s = 15 / 3 = 5
    np.testing.assert_allclose(feats[:, 0], [-3.0, -1.0, 1.0, 3.0])
    assert prefix == "[Value Offset: -15.0000|Value Scaling: 5.0000]"


def test_sp_encode_threshold_is_inclusive_and_negative_mean():
    # mean -100, y = [-3, 3]: |y| >= 3 so s = 3 / 3 = 1 exactly (scaling applied, value unchanged)
    feats, prefix = sp_encode([-103.0, -97.0], V1)
    np.testing.assert_allclose(feats[:, 0], [-3.0, 3.0])
    assert prefix == "[Value Offset: 100.0000|Value Scaling: 1.0000]"
    feats, prefix = sp_encode([0.0, 0.0, 0.0, 8.0], V1)  # mean 2, y = [-2, -2, -2, 6], s = 2
    np.testing.assert_allclose(feats[:, 0], [-1.0, -1.0, -1.0, 3.0])
    assert prefix == "[Value Offset: -2.0000|Value Scaling: 2.0000]"


def test_sp_encode_constant_and_single_point():
    feats, prefix = sp_encode([7.25] * 5, V1)
    np.testing.assert_array_equal(feats[:, 0], np.zeros(5, dtype=np.float32))
    assert prefix == "[Value Offset: -7.2500|Value Scaling: 1.0000]"
    feats, prefix = sp_encode([42], V1)
    assert feats.tolist() == [[0.0, 1.0]] and prefix == "[Value Offset: -42.0000|Value Scaling: 1.0000]"


@pytest.mark.parametrize("bad", [[1.0, float("nan")], [float("inf"), 2.0], [1.0, -float("inf"), 3.0]])
def test_sp_encode_rejects_non_finite(bad):
    with pytest.raises(ValueError, match="non-finite"):
        sp_encode(bad, V1)


def test_sp_encode_rejects_empty_and_2d():
    with pytest.raises(ValueError, match="length 0"):
        sp_encode([], V1)
    with pytest.raises(ValueError, match="1-D"):
        sp_encode([[1.0, 2.0]], V1)


@pytest.mark.parametrize(
    "length,patch,expected", [(1, 16, 1), (16, 16, 1), (17, 16, 2), (256, 16, 16), (5000, 16, 313), (5000, 8, 625)]
)
def test_num_patches(length, patch, expected):
    assert num_patches(length, patch) == expected


def test_num_patches_rejects_bad_input():
    with pytest.raises(ValueError):
        num_patches(0, 16)
    with pytest.raises(ValueError):
        num_patches(10, 0)


def test_batch_series_pads_with_zero_mask():
    a, _ = sp_encode([1.0, 2.0, 3.0], V1)
    b, _ = sp_encode([5.0], V1)
    out = batch_series([a, b])
    assert out.dtype == torch.float32 and out.shape == (2, 3, 2)
    assert out[:, :, 1].tolist() == [[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]]
    assert out[1, 1:, 0].tolist() == [0.0, 0.0]
    assert batch_series([]).shape == (0, 0, 2)
    with pytest.raises(ValueError, match="series 1"):
        batch_series([a, np.zeros((3, 3))])


def test_expand_placeholders_counts_and_order():
    series = [list(range(20)), [1.0, 2.0, 3.0]]
    text = "first <ts><ts/> then <ts></ts> end"
    new_text, feats = expand_placeholders(text, series, patch_size=8, profile=V1)
    prefix0 = sp_encode(series[0], V1)[1]
    prefix1 = sp_encode(series[1], V1)[1]
    assert new_text == f"first {prefix0}{'<ts>' * 3} then {prefix1}<ts> end"
    assert [f.shape for f in feats] == [(20, 2), (3, 2)]
    assert new_text.count("<ts>") == 4 and "<ts/>" not in new_text and "</ts>" not in new_text


def test_expand_placeholders_mismatch_names_both_counts():
    with pytest.raises(ValueError, match=r"2 <ts><ts/> placeholder\(s\) in the text but 1 time series"):
        expand_placeholders("<ts><ts/> and <ts><ts/>", [[1.0, 2.0]], patch_size=4, profile=V1)
    with pytest.raises(ValueError, match=r"0 <ts><ts/> placeholder\(s\) in the text but 1 time series"):
        expand_placeholders("no placeholder", [[1.0]], patch_size=4, profile=V1)


def test_expand_placeholders_reports_bad_series_index():
    with pytest.raises(ValueError, match="time series 1: .*non-finite"):
        expand_placeholders("<ts><ts/><ts><ts/>", [[1.0], [float("nan")]], patch_size=4, profile=V1)
    with pytest.raises(ValueError, match="time series 0: .*length 0"):
        expand_placeholders("<ts><ts/>", [[]], patch_size=4, profile=V1)


def test_count_placeholders_both_spellings():
    assert count_placeholders("<ts><ts/> x <ts></ts> <ts> <ts/>") == 2


def test_processor_from_config_and_dir(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "chatts", "ts": {"patch_size": 8}, "ts_profile": V1}))
    proc = TimeSeriesProcessor.from_pretrained(tmp_path)
    assert proc.patch_size == 8 and proc.ts_token == "<ts>" and proc.ts_end_token == "<ts/>"
    assert proc.num_patches(17) == 3

    class Cfg:
        ts = {"patch_size": 16}
        ts_profile = "chatts-14b-0801"

    assert TimeSeriesProcessor.from_config(Cfg()).patch_size == 16
    text, ts = proc("a <ts><ts/> b <ts><ts/>", [[1.0] * 9, [2.0] * 3])
    assert text.count("<ts>") == 3 and ts.shape == (2, 9, 2)
    assert ts[1, :, 1].tolist() == [1.0] * 3 + [0.0] * 6
    with pytest.raises(ValueError, match="no `ts` block"):
        TimeSeriesProcessor.from_config({"model_type": "qwen2"})
    with pytest.raises(FileNotFoundError, match="config.json"):
        TimeSeriesProcessor.from_pretrained(tmp_path / "missing")


def test_processor_custom_tokens():
    proc = TimeSeriesProcessor(4, ts_token="<series>", ts_end_token="<series/>", profile=V1)
    text, _ = proc.expand("x <series><series/> y <series></series>", [[1.0] * 5, [2.0]])
    assert text.count("<series>") == 3
