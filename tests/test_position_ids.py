"""The plugin's templates encode runs of `<ts>` positions at the id level (tsplugin.llamafactory.position_ids): the
ids must be those the tokenizer gives for the whole expanded text, token for token, for every released layout and
template (records with 0-3 series, partial last patches, text glued to the placeholders, a system prompt, several
turns)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from conftest import PATCHTST, make_qwen_base

from tsplugin.processing import TimeSeriesProcessor


def _series(rng, *lengths: int) -> list[list[float]]:
    return [np.round(rng.normal(size=n) * 30 + 7, 4).tolist() for n in lengths]


def _records() -> list[tuple[str | None, list[dict], list[list[float]]]]:
    """(system, messages, series): 0..3 series, lengths that end in a partial patch for every patch size used."""
    rng = np.random.default_rng(0)
    user, assistant = "user", "assistant"
    return [
        (None, [{"role": user, "content": "No series here, just text."}, {"role": assistant, "content": "Fine."}], []),
        (None, [{"role": user, "content": "<ts><ts/>"}, {"role": assistant, "content": "One."}], _series(rng, 1)),
        ("You read sensors.", [{"role": user, "content": "Sensor A:<ts><ts/>and B: <ts></ts>\nCompare them."},
                               {"role": assistant, "content": '{"same": false}'}], _series(rng, 17, 40)),
        (None, [{"role": user, "content": "First <ts><ts/>."}, {"role": assistant, "content": "A spike."},
                {"role": user, "content": "Now these:\n<ts><ts/><ts><ts/> x<ts><ts/>y"},
                {"role": assistant, "content": "Flat, flat, rising."}], _series(rng, 33, 8, 129, 250)),
    ]


@pytest.fixture(scope="module")
def models(tiny_chatts, tiny_qwen3ts, layout_twins, tiny_timellm, tmp_path_factory):
    from tsplugin.build.build_model import build_qwen_ts

    base = make_qwen_base(tmp_path_factory.mktemp("base") / "qwen3")
    qwen_ts = build_qwen_ts(base, tmp_path_factory.mktemp("qts") / "patchtst", encoder="patchtst", flags=PATCHTST)
    return {"chatts": tiny_chatts, "qwen3ts": tiny_qwen3ts, "qwen_ts": qwen_ts, "timellm": tiny_timellm, **layout_twins}


@pytest.mark.parametrize("model,template_name", [
    ("chatts", "chatts"), ("qwen3ts", "chatts8b"), ("qwen3ts", "chatts8b_think"), ("qwen3ts", "chatts8b_nothink"),
    ("chatts-14b", "chatts"), ("chatts-14b-first", "chatts"), ("chatts-8b", "chatts8b_nothink"),
    ("qwen_ts", "qwen3_ts"), ("qwen_ts", "qwen_ts"), ("timellm", "qwen_ts"),
])
def test_position_ids_equal_the_tokenizers_ids(models, model, template_name):
    from llamafactory.data import get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments
    from transformers import AutoTokenizer

    from tsplugin.llamafactory.position_ids import PositionIds

    path = models[model]
    tokenizer = AutoTokenizer.from_pretrained(path)
    processor = TimeSeriesProcessor.from_pretrained(path)
    template = get_template_and_fix_tokenizer(tokenizer, DataArguments(template=template_name))
    assert isinstance(template, PositionIds)
    stock = copy.copy(template)
    stock.__class__ = type(template).__bases__[1]  # LLaMA-Factory's own class: the whole text to the tokenizer
    ts_id = tokenizer.convert_tokens_to_ids("<ts>")
    spliced = 0
    for system, messages, series in _records():
        expanded = template.mm_plugin.process_messages(messages, [], [], series, processor)
        got = template.encode_multiturn(tokenizer, expanded, system)
        want = stock.encode_multiturn(tokenizer, expanded, system)
        assert got == want, f"{model}/{template_name}: {messages}"
        spliced += sum(ids.count(ts_id) for pair in got for ids in pair)
    positions = sum(processor.num_patches(len(s)) for _, _, series in _records() for s in series)
    if ts_id != tokenizer.unk_token_id and ts_id is not None:
        assert spliced == positions  # every series' positions are there as `<ts>` ids


def test_a_token_that_strips_its_neighbours_is_not_spliced(tiny_chatts):
    from tokenizers import AddedToken
    from transformers import AutoTokenizer

    from tsplugin.llamafactory.position_ids import encode_text, splice_id

    tokenizer = AutoTokenizer.from_pretrained(tiny_chatts)
    assert splice_id(tokenizer, "<ts>") == tokenizer.convert_tokens_to_ids("<ts>")
    stripping = copy.deepcopy(tokenizer)
    stripping.add_tokens([AddedToken("<ts>", lstrip=True, rstrip=True, special=True)], special_tokens=True)
    assert splice_id(stripping, "<ts>") is None
    text = "a value <ts><ts> then text"
    assert encode_text(stripping, text, "<ts>", None) == stripping.encode(text, add_special_tokens=False)


def test_a_template_unpickles_in_a_fresh_process(tiny_chatts):
    """`preprocessing_num_workers` pickles the dataset processor, template included, into worker processes."""
    import pickle
    import subprocess
    import sys

    from llamafactory.data import get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_chatts)
    template = get_template_and_fix_tokenizer(tokenizer, DataArguments(template="chatts8b_think"))
    code = ("import pickle, sys; t = pickle.loads(sys.stdin.buffer.read()); "
            "print(type(t).__name__, [c.__name__ for c in type(t).__mro__])")
    out = subprocess.run([sys.executable, "-c", code], input=pickle.dumps(template), capture_output=True, check=True)
    assert out.stdout.decode().split()[0] == "PositionIdsReasoningTemplate"
    assert "ReasoningTemplate" in out.stdout.decode()
