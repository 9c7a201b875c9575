"""Accuracy of `tsconvert describe`'s extractors on synth series whose attributes are known.

    python bench/describe_accuracy.py                  # 300 series, seed 0, lengths 64..512
    python bench/describe_accuracy.py --series 1000 --seed 3 --min-length 256

Series come from `tsplugin synth`'s generator (tsplugin.synth.attributes.compose_record, default
attribute mix, one series per record); describe sees only the values. Per attribute:
- trend: overall direction equal to the label's;
- seasonal: presence equal; period: among truly seasonal series, predicted period within 10%
  (a missed season counts as wrong);
- local: per true change, a predicted change of the same type within 2% of the length (recall); per
  predicted change, a true one so (precision); per series, both sets match exactly (exact);
- noise: class equal.
"Kept" rows count only attributes whose confidence reaches --min-confidence (what describe's Q&A keeps)
and give the share kept. Ratios, not timings: the numbers do not depend on the machine.

Measured on main with both the seasonality and the trend/local-change changes below (300 series each, default
mix, lengths 64..512), accuracy / kept accuracy (kept share: the share of series whose attribute is sure enough to
be asked about; the rest is left out of the Q&A). Seeds 5-7 were held out while either set of changes was tuned:
    seed 0: trend 0.950/0.955 (97%), seasonal 0.977/0.979 (97%), period 0.945/0.949 (94%),
            local exact 0.917/0.923 (99%), noise 0.900/0.957 (54%); local recall 0.925, precision 0.883
    seed 1: trend 0.970/0.976 (98%), seasonal 0.990/1.000 (95%), period 0.974/0.986 (95%),
            local exact 0.940/0.949 (99%), noise 0.907/0.970 (55%); local recall 0.935, precision 0.895
    seed 2: trend 0.963/0.966 (98%), seasonal 0.967/0.972 (97%), period 0.959/0.965 (98%),
            local exact 0.920/0.939 (98%), noise 0.900/0.952 (56%); local recall 0.908, precision 0.901
    seed 3: trend 0.973/0.973 (99%), seasonal 0.980/0.979 (96%), period 0.958/0.964 (97%),
            local exact 0.937/0.952 (98%), noise 0.903/0.971 (57%); local recall 0.930, precision 0.900
    seed 4: trend 0.953/0.956 (98%), seasonal 0.973/0.975 (95%), period 0.950/0.955 (94%),
            local exact 0.940/0.953 (99%), noise 0.910/0.971 (58%); local recall 0.932, precision 0.901
    seed 5: trend 0.953/0.956 (98%), seasonal 0.967/0.972 (95%), period 0.974/0.980 (94%),
            local exact 0.930/0.933 (99%), noise 0.877/0.968 (51%); local recall 0.918, precision 0.935
    seed 6: trend 0.960/0.963 (98%), seasonal 0.987/0.986 (97%), period 0.974/0.972 (96%),
            local exact 0.923/0.926 (99%), noise 0.913/1.000 (57%); local recall 0.923, precision 0.891
    seed 7: trend 0.960/0.959 (97%), seasonal 0.977/0.986 (93%), period 0.934/0.965 (95%),
            local exact 0.900/0.915 (98%), noise 0.877/0.964 (56%); local recall 0.870, precision 0.805
    seed 8: trend 0.947/0.949 (99%), seasonal 0.973/0.973 (97%), period 0.969/0.967 (94%),
            local exact 0.920/0.929 (99%), noise 0.913/0.961 (60%); local recall 0.913, precision 0.913
    seed 9: trend 0.953/0.955 (96%), seasonal 0.977/0.979 (95%), period 0.969/0.967 (95%),
            local exact 0.950/0.950 (100%), noise 0.877/0.967 (51%); local recall 0.971, precision 0.898
(seeds 8 and 9 first run after the merge, by no one before.) Every goal (trend >= 0.95, seasonality >= 0.95,
period and local change >= 0.9) is met on seeds 0-7 and 9, two at the edge (trend 0.950 on seed 0, local
exact 0.900 on seed 7); seed 8's trend is 0.947 (one series short). Over all 3,000 series of seeds 0-9: trend
0.958, seasonal 0.977, period 0.961, local exact 0.928, noise 0.898. One seed's accuracy over 300 series has
a standard error of about 0.012, so single seeds scatter around these by a point or two. Each set of changes alone missed a goal:

The seasonality changes alone (300 series each, default mix, lengths 64..512, commit 3bdabc7, without the trend
and local-change changes below), accuracy / kept accuracy (kept
share: the share of series whose attribute is sure enough to be asked about; the rest is left out of the Q&A):
    seed 0: trend 0.947/0.955 (97%), seasonal 0.977/0.983 (97%), period 0.938/0.955 (91%),
            local exact 0.920/0.926 (99%), noise 0.893/0.969 (54%); local recall 0.929, precision 0.903
    seed 1: trend 0.960/0.959 (99%), seasonal 0.990/0.993 (96%), period 0.974/0.986 (95%),
            local exact 0.933/0.946 (98%), noise 0.920/0.988 (56%); local recall 0.940, precision 0.926
    seed 2: trend 0.963/0.969 (97%), seasonal 0.967/0.969 (97%), period 0.946/0.957 (95%),
            local exact 0.900/0.928 (97%), noise 0.887/0.958 (55%); local recall 0.892, precision 0.871
    seed 3: trend 0.943/0.946 (99%), seasonal 0.980/0.979 (95%), period 0.972/0.978 (95%),
            local exact 0.927/0.942 (98%), noise 0.900/0.965 (57%); local recall 0.906, precision 0.928
    seed 4: trend 0.957/0.962 (97%), seasonal 0.973/0.979 (95%), period 0.950/0.956 (96%),
            local exact 0.947/0.959 (99%), noise 0.903/0.977 (57%); local recall 0.932, precision 0.906
    seed 5: trend 0.930/0.942 (97%), seasonal 0.973/0.979 (95%), period 0.981/0.986 (94%),
            local exact 0.920/0.929 (99%), noise 0.867/0.960 (50%); local recall 0.886, precision 0.942
    seed 6: trend 0.940/0.942 (97%), seasonal 0.983/0.983 (96%), period 0.974/0.972 (95%),
            local exact 0.923/0.938 (97%), noise 0.890/0.989 (58%); local recall 0.900, precision 0.892
    seed 7: trend 0.957/0.969 (96%), seasonal 0.980/0.986 (93%), period 0.947/0.959 (97%),
            local exact 0.893/0.911 (98%), noise 0.877/0.958 (56%); local recall 0.879, precision 0.817
The seasonality changes of 3bdabc7 (quasi-periodic cycles, shape by the waves' fit, no season whose fit
wants a period past length/3, the dominant harmonic's sub-multiple) were tuned on seeds 0-3; seeds 5-7 were
first looked at, before and after, once they were final. Before them (commit 42b8da8; seeds 0-3 as this
docstring had them, 4-7 measured alongside), seed 0..7: trend
0.947/0.967/0.960/0.943/0.947/0.927/0.937/0.947, seasonal 0.970/0.977/0.953/0.967/0.970/0.960/0.980/0.970,
period 0.932/0.974/0.946/0.958/0.950/0.962/0.960/0.947, local exact 0.910/0.910/0.870/0.903/0.943/0.907/
0.913/0.883, noise 0.883/0.893/0.867/0.883/0.900/0.857/0.870/0.863. Speed: 333-355 ms CPU/series after,
286-298 before (records 0-59 of seed 0, process time, two runs each, interleaved, on a loaded 2-core box).

The trend and local-change changes alone (without the seasonality changes above), accuracy / kept accuracy, with
the continuous segmented trend, the kink candidate and the standard-error confidence (commits b9bc6c9,
db54724), on a 2-core box shared with four other jobs:
    seed 0: trend 0.947/0.949 (98%), seasonal 0.970/0.969 (97%), period 0.938/0.941 (93%),
            local exact 0.907/0.919 (98%), noise 0.887/0.981 (51%); local recall 0.913, precision 0.906
    seed 1: trend 0.960/0.976 (97%), seasonal 0.973/0.979 (96%), period 0.980/0.986 (97%),
            local exact 0.920/0.926 (99%), noise 0.883/0.969 (54%); local recall 0.905, precision 0.824
    seed 2: trend 0.970/0.973 (97%), seasonal 0.950/0.951 (95%), period 0.946/0.958 (97%),
            local exact 0.887/0.905 (98%), noise 0.880/0.951 (54%); local recall 0.880, precision 0.853
    seed 3: trend 0.970/0.973 (99%), seasonal 0.973/0.976 (96%), period 0.951/0.964 (97%),
            local exact 0.903/0.918 (97%), noise 0.887/0.940 (56%); local recall 0.887, precision 0.867
    seed 4: trend 0.950/0.956 (98%), seasonal 0.967/0.969 (95%), period 0.957/0.963 (95%),
            local exact 0.933/0.943 (99%), noise 0.900/0.965 (57%); local recall 0.937, precision 0.889
    seed 5: trend 0.950/0.949 (98%), seasonal 0.963/0.969 (97%), period 0.962/0.973 (95%),
            local exact 0.903/0.912 (99%), noise 0.860/0.949 (53%); local recall 0.886, precision 0.859
    seed 6: trend 0.953/0.959 (98%), seasonal 0.977/0.976 (97%), period 0.947/0.958 (95%),
            local exact 0.913/0.916 (99%), noise 0.887/0.970 (56%); local recall 0.905, precision 0.862
    seed 7: trend 0.950/0.952 (97%), seasonal 0.970/0.975 (94%), period 0.934/0.959 (97%),
            local exact 0.900/0.912 (98%), noise 0.867/0.971 (58%); local recall 0.865, precision 0.839
Goals missed: trend on seed 0 (0.947: a borderline net/total near the 0.3 of the rule, and series whose
local change or season was misread), local exact on seed 2 (0.887). Speed: 303 ms CPU per series against
294 before (same 40 seed-9 series, both runs side by side, process time).
These were tuned looking at seeds 0-3 only; seeds 5-7 were run (before and after) only once the code was
committed, and no one looked at them before.
Before them (commit 42b8da8), seeds 0-7, accuracy only:
    trend    0.947 0.967 0.960 0.943 | 0.947 0.927 0.937 0.947
    seasonal 0.970 0.977 0.953 0.967 | 0.970 0.960 0.980 0.970
    period   0.932 0.974 0.946 0.958 | 0.950 0.962 0.960 0.947
    local    0.910 0.910 0.870 0.903 | 0.943 0.907 0.913 0.883
    noise    0.883 0.893 0.867 0.883 | 0.900 0.857 0.870 0.863
Earlier still, methods were tuned looking at seeds 0 and 1; the square season's search was found on seed 2's
errors and checked on seeds 0 and 1, then on seed 3, which no one had looked at.
Before the square season's search on the sample-averaged square (commit 049a73f), seed 0 / 1 / 2 / 3: trend
0.950/0.963/0.960/0.940, seasonal 0.973/0.977/0.953/0.967, period 0.938/0.974/0.946/0.958, local exact
0.897/0.903/0.853/0.880, noise 0.880/0.883/0.860/0.870 (local precision 0.876/0.827/0.823/0.817).
Seed 0's trend, seasonal and period loss is one series (record 83): its first season fit is now closer
(period 23.17 for 23.2, was 23.05), and backfitting then keeps a no-season model of nine level shifts by
BIC, which the old fit's next pass had happened to beat (right again since 3bdabc7).
Before the local-change shape fit (commit 3b68b2b), seed 0 / 1: trend 0.950/0.940, seasonal 0.963/0.987,
period 0.904/0.961, local exact 0.860/0.880, noise 0.860/0.867 (kept shares within 3 points of the above).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from converters.describe.extract import describe_series  # noqa: E402
from converters.describe.qa_policy import MIN_CONFIDENCE  # noqa: E402
from tsplugin.synth.attributes import AttributeMix, compose_record  # noqa: E402


def _local_match(true: list, pred: list, n: int) -> tuple[int, int]:
    """(true changes found, predicted changes that are true), greedy one-to-one by position."""
    tol = 0.02 * n
    used: set[int] = set()
    found = 0
    for c in true:
        for k, p in enumerate(pred):
            if k not in used and p.type == c.type and abs(p.position - c.position) <= tol:
                used.add(k)
                found += 1
                break
    return found, len(used)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--series", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--min-length", type=int, default=64)
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--min-confidence", type=float, default=MIN_CONFIDENCE)
    ap.add_argument("--show-errors", type=int, default=0, help="print this many wrong series per attribute")
    args = ap.parse_args(argv)
    mix = AttributeMix(min_length=args.min_length, max_length=args.max_length)
    hits = {k: [] for k in ("trend", "seasonal", "period", "local_exact", "noise")}
    kept = {k: [] for k in ("trend", "seasonal", "period", "local_exact", "noise")}
    conf_key = {"trend": "trend", "seasonal": "seasonal", "period": "period", "local_exact": "local", "noise": "noise"}
    recall = [0, 0]
    precision = [0, 0]
    errors: dict[str, int] = {k: 0 for k in hits}
    t0 = time.perf_counter()
    for rec in range(args.series):
        _, (comp,) = compose_record(args.seed, rec, 1, mix)
        truth, n = comp.labels, comp.labels.length
        pred = describe_series(comp.values, rec, 0).labels
        ok = {
            "trend": pred.trend == truth.trend,
            "seasonal": pred.seasonal == truth.seasonal,
            "noise": pred.noise == truth.noise,
        }
        if truth.seasonal:
            ok["period"] = bool(pred.seasonal and abs(pred.period - truth.period) <= 0.1 * truth.period)
        found, right = _local_match(truth.local, pred.local, n)
        recall[0] += found
        recall[1] += len(truth.local)
        precision[0] += right
        precision[1] += len(pred.local)
        ok["local_exact"] = found == len(truth.local) and right == len(pred.local)
        for k, v in ok.items():
            hits[k].append(v)
            if pred.confidence[conf_key[k]] >= args.min_confidence:
                kept[k].append(v)
            if not v and errors[k] < args.show_errors:
                errors[k] += 1
                print(f"[{k}] record {rec} n={n}: truth {_short(truth)} | describe {_short(pred)}")
    elapsed = time.perf_counter() - t0
    print(f"describe accuracy on {args.series} synth series (seed {args.seed}, lengths {args.min_length}..{args.max_length}); "
          f"{elapsed / args.series * 1000:.0f} ms/series")
    print(f"{'attribute':<14}{'accuracy':>10}{'n':>6}{'kept acc':>10}{'kept share':>12}")
    for k in hits:
        a = np.mean(hits[k]) if hits[k] else float("nan")
        ka = np.mean(kept[k]) if kept[k] else float("nan")
        share = len(kept[k]) / len(hits[k]) if hits[k] else float("nan")
        print(f"{k:<14}{a:>10.3f}{len(hits[k]):>6}{ka:>10.3f}{share:>12.2f}")
    print(f"local recall {recall[0] / max(recall[1], 1):.3f} ({recall[0]}/{recall[1]}), "
          f"precision {precision[0] / max(precision[1], 1):.3f} ({precision[0]}/{precision[1]})")
    return 0


def _short(lab) -> str:
    loc = ",".join(f"{c.type}@{c.position}" for c in lab.local)
    per = f"{lab.period:g}" if lab.period else "-"
    segs = "/".join(s.trend[:3] for s in lab.segments)
    return f"{lab.trend}({segs}) season={lab.season_shape or '-'}:{per} noise={lab.noise} local=[{loc}]"


if __name__ == "__main__":
    sys.exit(main())
