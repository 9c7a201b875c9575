"""Series ablation (slow): the answer lives only in the series; a trained tiny model gets it right,
and loses it when the series are shuffled between records, swapped within a record, or when the
encoder gets another record's series under the record's own prefix text. A model trained on the
prefix text alone scores chance, so the prefixes leak nothing. Runs bench/series_ablation.py smaller.
"""

from __future__ import annotations

import sys

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))

import series_ablation as ab  # noqa: E402


def test_prefixes_carry_no_label_information_by_construction():
    # Mirror symmetry: a falling ramp is a rising one reversed in time (same mean, same max|x-mean|),
    # so the label cannot be read from the prefix statistics. Check the data generator keeps it.
    records = ab.make_records(200, 64, seed=3)
    assert sum(r["output"] == "first" for r in records) == 100
    for r in records[:20]:
        a, b = r["timeseries"]
        assert (a[-1] > a[0]) == (r["output"] == "first") and (b[-1] > b[0]) == (r["output"] == "second")
    perm = ab.derangement(50, seed=1)
    assert sorted(perm) == list(range(50)) and all(i != j for i, j in enumerate(perm))
    assert "<ts>" not in ab.prefix_text(records[0])["input"]
    assert ab.prefix_text(records[0])["input"].count("[Value Offset: ") == 2
    lo, hi = ab.wilson(50, 100)
    assert lo < 0.5 < hi and round(lo, 3) == 0.404 and round(hi, 3) == 0.596


@pytest.mark.slow
def test_trained_model_reads_the_series_aligned_with_their_placeholders(tmp_path):
    import torch

    torch.set_num_threads(1)
    results = ab.run(records=960, eval_records=80, steps=60, minutes=20, seed=0, length=64, work=tmp_path,
                     controls=("text_only",), log=lambda *_: None)

    aligned = results["aligned"]
    assert ab.wilson(aligned.correct, aligned.n)[0] > 0.75, results
    for name in ("shuffled", "prefix_kept", "text_only"):
        assert 0.3 < results[name].accuracy < 0.7, (name, results)  # chance: P(outside) ~ 4e-4 at N=80
    for name in ("shuffled", "prefix_kept"):  # the answer follows the record the series came from
        assert results[name].donor / results[name].n > 0.85, (name, results)
    assert results["swapped"].accuracy < 0.25, results  # series order follows placeholder order
    assert not results["timings"]["aligned"].capped
