"""Series ablation: the answer lives only in the series; a trained tiny model gets it right, and loses
it when the series are shuffled between records, swapped within a record, or when the encoder gets
another record's series under the record's own prefix text. A model trained on the prefix text alone
scores chance, so the prefixes leak nothing.

The task is the package's (tsplugin.quickstart.ramps); the slow test runs bench/series_ablation.py
smaller, as a command (tests never import bench/), and reads the results it writes with --json.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT
from tsplugin.processing import sp_encode
from tsplugin.quickstart.ramps import derangement, make_records

PROFILE = "tsfactory-v0"  # the profile the quickstart and the bench build their model with


def test_prefixes_carry_no_label_information_by_construction():
    # Mirror symmetry: a falling ramp is a rising one reversed in time (same mean, same max|x-mean|),
    # so the label cannot be read from the prefix statistics. Check the data generator keeps it and
    # that the profile's prefix is a function of those statistics only.
    records = make_records(200, 64, seed=3)
    assert sum(r["output"] == "first" for r in records) == 100
    for r in records[:20]:
        a, b = r["timeseries"]
        assert (a[-1] > a[0]) == (r["output"] == "first") and (b[-1] > b[0]) == (r["output"] == "second")
        for series in (a, b):
            prefix = sp_encode(series, PROFILE)[1]
            assert prefix.startswith("[Value Offset: ") and "Value Scaling" in prefix, prefix
            assert sp_encode(series[::-1], PROFILE)[1] == prefix  # time-reversed: the other label, the same text
    perm = derangement(50, seed=1)
    assert sorted(perm) == list(range(50)) and all(i != j for i, j in enumerate(perm))


@pytest.mark.slow
def test_trained_model_reads_the_series_aligned_with_their_placeholders(tmp_path):
    out = tmp_path / "results.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "series_ablation.py"), "--records", "960", "--eval", "80", "--steps", "60",
         "--minutes", "20", "--seed", "0", "--length", "64", "--threads", "1", "--controls", "text_only", "--json", str(out)],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=3600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = json.loads(out.read_text(encoding="utf-8"))
    accuracy = {name: r["correct"] / r["n"] for name, r in results["scores"].items()}

    aligned = results["scores"]["aligned"]
    assert aligned["wilson"][0] > 0.75, results
    for name in ("shuffled", "prefix_kept", "text_only"):
        assert 0.3 < accuracy[name] < 0.7, (name, results)  # chance: P(outside) ~ 4e-4 at N=80
    for name in ("shuffled", "prefix_kept"):  # the answer follows the record the series came from
        assert results["scores"][name]["donor"] / results["scores"][name]["n"] > 0.85, (name, results)
    assert accuracy["swapped"] < 0.25, results  # series order follows placeholder order
    assert not results["training"]["aligned"]["capped"]
