"""series_text: the series of JSON Lines records read by simdjson give the table pyarrow's reader gives for the whole
text, bit for bit, or the chunk is left to pyarrow."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tsplugin.llamafactory import file_cache
from tsplugin.llamafactory.series_text import split_series

COLUMN = "timeseries"


def _both(text: bytes):
    """(parse_raw's table or its refusal, pyarrow's own table of the whole text or its refusal)."""
    def run(read):
        try:
            return read()
        except file_cache.NotHandled as why:
            return f"refused: {why}"

    got = run(lambda: file_cache.parse_raw(text, COLUMN, use_threads=False))
    want = run(lambda: file_cache._read_json(text, COLUMN, use_threads=False))
    return got, want


def _same(got, want) -> bool:
    if isinstance(got, str) or isinstance(want, str):
        return got == want
    return got.schema.equals(want.schema, check_metadata=True) and got.equals(want)


def test_tsconvert_records_are_split_and_read_bit_for_bit(tmp_path):
    rng = np.random.default_rng(0)
    lines = []
    for k in range(50):
        series = [[float(x) for x in rng.standard_normal(int(rng.integers(1, 300))) * 10 ** int(rng.integers(-3, 6))]]
        record = {"input": f"Sensor {k}: <ts><ts/> Is there an anomaly?", "output": '{"is_anomaly": false}',
                  "timeseries": series}
        lines.append(json.dumps(record, separators=(",", ":")))
    text = ("\n".join(lines) + "\n").encode()
    split = split_series(text, COLUMN)
    assert split is not None and split[2] == 50  # the fast path is taken for what tsconvert writes
    got, want = _both(text)
    assert _same(got, want)
    values = got.column(COLUMN).combine_chunks().flatten().flatten().to_numpy()
    assert values.tobytes() == np.asarray([x for line in lines for s in json.loads(line)[COLUMN] for x in s]).tobytes()


@pytest.mark.parametrize("series_text, taken", [
    ("[[-0,1,2]]", False),  # simdjson reads the integer -0 as +0.0, pyarrow as -0.0
    ("[[-0.0,0,0.5]]", True),
    ("[[1e-400,-1e-400,5e-324,1.7976931348623157e308]]", True),
    ("[[9007199254740993,18446744073709551615]]", True),  # whole numbers rounded to float64 the same way
    ("[[123456789012345678901234]]", False),  # beyond 64 bits: simdjson refuses, pyarrow reads it
    ("[[1e400]]", False),  # beyond float64: both refuse
    ("[[1,null]]", False),
    ('[["1.5"]]', False),
    ("[1,2]", False),
    ("[[[1]]]", False),
    ("[[], [1.5]]", True),
    ("[[1.5] , [2]]", True),
    ("null", None),
])
def test_number_text_edge_cases(series_text, taken):
    text = (f'{{"input":"x <ts><ts/>","{COLUMN}":{series_text}}}\n' * 3).encode()
    split = split_series(text, COLUMN)
    if taken is not None:
        assert (split is not None) == taken
    got, want = _both(text)
    assert _same(got, want), (got, want)


def test_only_the_top_level_key_is_taken():
    nested = '{"meta":{"timeseries":[[9.5]]},"input":"a \\"timeseries\\": [[8.5]] \\\\","timeseries":[[1.5,2.5]]}\n'
    only_nested = '{"meta":{"timeseries":[[9.5]]},"input":"x"}\n'
    value_named_so = '{"kind":"timeseries","timeseries":[[3.5]]}\n'
    for text in (nested * 2, nested + only_nested, value_named_so * 2, only_nested * 2):
        got, want = _both(text.encode())
        assert _same(got, want), text
    got, _ = _both((nested + only_nested).encode())
    assert got.column(COLUMN).to_pylist() == [[[1.5, 2.5]], None]


def test_a_series_before_another_list_of_lists_is_still_split():
    line = '{"input":"x","timeseries":[[1.5,2.5],[3]],"grid":[[1,2],[3,4]]}\n'
    assert split_series((line * 2).encode(), COLUMN) is not None  # the last `]]` is grid's: the first one is tried
    got, want = _both((line * 2).encode())
    assert _same(got, want) and got.column("grid").to_pylist() == [[[1, 2], [3, 4]]] * 2


_FLOATS = st.floats(allow_nan=False, allow_infinity=False, width=64)
_NUMBER_TEXT = st.one_of(_FLOATS.map(repr), st.integers(-(2**70), 2**70).map(str),
                         st.sampled_from(["-0", "0", "-0.0", "1E5", "1e-400", "2.5e+3", "-1.0E-7"]))
_SERIES = st.one_of(
    st.lists(st.lists(_NUMBER_TEXT, max_size=6), max_size=3).map(lambda s: "[" + ",".join("[" + ",".join(x) + "]" for x in s) + "]"),
    st.sampled_from(["null", "[1,2]", '[["a"]]', "[[1,null]]", "[ [1] ]", "[[true]]"]),
)
_TEXT = st.lists(st.sampled_from(list('ab "\\[]{},:') + ["timeseries", '"timeseries":[[1]]', "\u00e9", "\n"]),
                 max_size=12).map("".join)


@st.composite
def _records(draw):
    lines = []
    for _ in range(draw(st.integers(1, 4))):
        fields = [f'"input":{json.dumps(draw(_TEXT))}']
        if draw(st.booleans()):
            fields.append(f'"meta":{{"timeseries":{draw(_SERIES)},"n":{draw(st.integers(0, 9))}}}')
        if draw(st.booleans()):
            fields.append(f'"tags":[{json.dumps(draw(_TEXT))},[1,[2]]]')
        if draw(st.integers(0, 5)):
            fields.insert(draw(st.integers(0, len(fields))), f'"timeseries"{draw(st.sampled_from([":", " : ", ":  "]))}{draw(_SERIES)}')
        line = "{" + ",".join(fields) + "}"
        if draw(st.integers(0, 9)) == 0:  # broken JSON around the series: pyarrow's refusal either way
            line = draw(st.sampled_from([line[:-1], line + "]", line.replace("]]", "]]]", 1), line.replace(":", "", 1)]))
        lines.append(line)
        if draw(st.integers(0, 6)) == 0:
            lines.append("")
    return ("\n".join(lines) + "\n").encode()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_records())
def test_any_chunk_gives_pyarrows_table_or_pyarrows_refusal(text):
    got, want = _both(text)
    assert _same(got, want), (text, got, want)


def test_values_are_pythons_floats():
    values = [0.1, -2.5e-300, 1 / 3, math.pi * 1e200, 5e-324, -0.0]
    text = (json.dumps({"input": "x", COLUMN: [values]}) + "\n").encode()
    got, _ = _both(text)
    read = got.column(COLUMN).to_pylist()[0][0]
    assert [math.copysign(1, v) for v in read] == [math.copysign(1, v) for v in values] and read == values
