"""One definition of a placeholder and of where it may stand: tsconvert, validate, training, the plugin
and the API answer every conversation the same way (tsplugin.processing.placeholders)."""

from __future__ import annotations

import json
import re

import pytest

from conftest import convert_dir, lf_args, read_jsonl, tsconvert, write_csv, write_dataset

from tsplugin.processing.placeholders import (
    IMAGE,
    PlaceholderError,
    check_messages,
    count_placeholders,
    move_to_user_turns,
    placeholder_problem,
)

U, A = "user", "assistant"
# id -> (system, turns, number of series, reason code or None); placeholders in ChatTS spelling.
CASES = {
    "user_turn": ("", [(U, "Look <ts><ts/>"), (A, "ok")], 1, None),
    "xml_spelling": ("", [(U, "Look <ts></ts>"), (A, "ok")], 1, None),
    "both_spellings": ("", [(U, "a <ts></ts> b <ts><ts/>"), (A, "ok")], 2, None),
    "reversed": ("", [(U, "Look <ts/><ts>"), (A, "ok")], 1, "stray_ts_token"),
    "spaced": ("", [(U, "Look <ts> <ts/>"), (A, "ok")], 1, "stray_ts_token"),
    "xml_end_alone": ("", [(U, "Look <ts></ts> </ts>"), (A, "ok")], 1, None),
    "two_rounds": ("Be brief.", [(U, "a <ts><ts/>"), (A, "x"), (U, "b <ts><ts/>"), (A, "y")], 2, None),
    "system_prompt": ("You analyse <ts><ts/>.", [(U, "Odd?"), (A, "ok")], 1, "placeholder_outside_user"),
    "answer": ("", [(U, "Odd? <ts><ts/>"), (A, "Yes: <ts><ts/>")], 2, "placeholder_outside_user"),
    "earlier_answer": ("", [(U, "a <ts><ts/>"), (A, "see <ts><ts/>"), (U, "b"), (A, "y")], 2, "placeholder_outside_user"),
    "stray_start": ("", [(U, "Look <ts><ts/> and <ts>"), (A, "ok")], 1, "stray_ts_token"),
    "stray_end": ("", [(U, "Look <ts/>"), (A, "ok")], 0, "stray_ts_token"),
    "count": ("", [(U, "Look <ts><ts/><ts><ts/>"), (A, "ok")], 1, "placeholder_mismatch"),
}
TS_ANY = re.compile(r"<ts>(?:<ts/>|</ts>)")


def _messages(system: str, turns: list) -> list[dict]:
    return ([{"role": "system", "content": system}] if system else []) + [{"role": r, "content": t} for r, t in turns]


def _series(n: int) -> list[list[float]]:
    return [[float((i * (k + 3)) % 11) for i in range(24)] for k in range(n)]


def _sharegpt_entry() -> dict:
    return dict(
        columns={"messages": "messages", "timeseries": "timeseries"},
        formatting="sharegpt",
        tags={"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant", "system_tag": "system"},
    )


def _api_code(system, turns, n):
    try:
        check_messages(_messages("", turns), n, system=system)
    except PlaceholderError as err:
        return err.code
    return None


def _validate_code(tmp_path, system, turns, n):
    path = tmp_path / "v.jsonl"
    path.write_text(json.dumps({"messages": _messages(system, turns), "timeseries": _series(n)}) + "\n")
    report = tmp_path / "v.report.json"
    code = tsconvert(["validate", str(path), "-q", "--report", str(report)])
    reasons = json.loads(report.read_text())["rejected_by_reason"]
    assert code == (1 if reasons else 0)
    return next(iter(reasons), None)


def _plugin_code(turns, n):
    import llamafactory.data  # noqa: F401  (LLaMA-Factory first: it imports the plugin through the hook)

    from tsplugin.llamafactory.mm_plugin import TimeSeriesPlugin
    from tsplugin.processing import TimeSeriesProcessor

    problem = placeholder_problem(turns, n)
    try:
        TimeSeriesPlugin(None, None, None).process_messages(_messages("", turns), [], [], _series(n), TimeSeriesProcessor(patch_size=8, profile="chatts-14b-0801"))
    except ValueError as err:  # the plugin appends the record to the shared message
        assert problem is not None and str(err).startswith(problem.message + ". In a record: ")
        return problem.code
    return None


def _convert_code(tmp_path, system, turns, n):
    """The same conversation as tsconvert input: each placeholder an <image> with its CSV."""
    images = [f"/plots/s{k}.PV.jpg" for k in range(n)]
    record = {"messages": _messages(TS_ANY.sub("<image>", system), [(r, TS_ANY.sub("<image>", t)) for r, t in turns]), "images": images}
    code, out = convert_dir(tmp_path, [record], {f"s{k}.PV.csv": None for k in range(n)}, "--format", "sharegpt")
    assert code == 0
    rejects = read_jsonl(out / "ds.rejects.jsonl")
    return rejects[0]["reason"] if rejects else None


@pytest.mark.parametrize("case", sorted(CASES))
def test_convert_validate_plugin_and_api_agree(case, tmp_path):
    system, turns, n, expected = CASES[case]
    assert _api_code(system, turns, n) == expected
    assert _validate_code(tmp_path, system, turns, n) == expected
    if not system:  # LLaMA-Factory hands the plugin the turns only; training checks the system prompt (below)
        assert _plugin_code(turns, n) == expected
    # tsconvert reads <image>; a <ts> already in its input is its own reason (tsconvert places them)
    assert _convert_code(tmp_path, system, turns, n) == ("ts_token_in_text" if expected == "stray_ts_token" else expected)


@pytest.mark.parametrize("case", sorted(CASES))
def test_training_agrees_and_names_the_file_and_record(case, tiny_qwen3ts, tmp_path):
    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer

    system, turns, n, expected = CASES[case]
    good = {"messages": _messages("", [(U, "fine <ts><ts/>"), (A, "ok")]), "timeseries": _series(1)}
    data = write_dataset(tmp_path / "data", "conv", [good, {"messages": _messages(system, turns), "timeseries": _series(n)}],
                         **_sharegpt_entry())
    model_args, data_args, training_args, _, _ = get_train_args(lf_args(tiny_qwen3ts, tmp_path / "o", dataset="conv", dataset_dir=str(data)))
    module = load_tokenizer(model_args)
    template = get_template_and_fix_tokenizer(module["tokenizer"], data_args)
    if expected is None:
        dataset = get_dataset(template, model_args, data_args, training_args, "sft", **module)["train_dataset"]
        assert len(dataset) == 2
        return
    with pytest.raises(ValueError) as err:
        get_dataset(template, model_args, data_args, training_args, "sft", **module)
    problem = placeholder_problem(_turns(system, turns), n, what="series in column 'timeseries'")
    assert str(err.value) == f"conv.jsonl: record 1: {problem.message} (`tsconvert validate FILE` lists every such record)."


def _turns(system, turns):
    return ([("system", system)] if system else []) + list(turns)


def test_messages_say_where_the_placeholder_stands_and_the_fix():
    problem = placeholder_problem([("system", "See <ts><ts/>"), (U, "Odd?"), (A, "ok")], 1)
    assert problem.message == (
        "1 <ts><ts/> placeholder in the system prompt; a series may only stand in a user turn (the system prompt is "
        "never expanded into series positions). Move it into the user message that asks about the series"
    )
    problem = placeholder_problem([(U, "Odd? <ts><ts/>"), (A, "<ts><ts/> and <ts></ts>")], 3)
    assert problem.message.startswith("2 <ts><ts/> placeholders in message 2 (assistant); a series may only stand in a user turn")


def test_count_placeholders_is_the_one_the_processing_module_exports():
    from tsplugin import processing

    assert processing.count_placeholders is count_placeholders
    assert count_placeholders("<ts><ts/> <ts></ts> <ts>") == 2
    assert count_placeholders("<x><x/> <x></x>", "<x>", "<x/>") == 2


def test_move_keeps_the_order_of_series():
    system, turns, moved = move_to_user_turns(
        "Plots <image>", [(U, "a <image>"), (A, "x <image>"), (U, "b"), (A, "y")], IMAGE
    )
    assert moved == 2 and system == "Plots "
    assert turns == [(U, "<image>\na <image>\n<image>"), (A, "x "), (U, "b"), (A, "y")]
    with pytest.raises(PlaceholderError, match="no user message"):
        move_to_user_turns("", [(A, "<image>")], IMAGE)


def test_converter_moves_misplaced_images_only_when_asked_and_the_result_validates(tmp_path):
    record = {
        "system": "You see <image>.",
        "conversations": [{"from": "human", "value": "Odd?"}, {"from": "gpt", "value": "Yes, <image> spikes."}],
        "images": ["/p/a.PV.jpg", "/p/b.PV.jpg"],
    }
    (tmp_path / "reject").mkdir()
    (tmp_path / "move").mkdir()
    code, out = convert_dir(tmp_path / "reject", [record], {"a.PV.csv": None, "b.PV.csv": None})
    rejects = read_jsonl(out / "ds.rejects.jsonl")
    assert [r["reason"] for r in rejects] == ["placeholder_outside_user"]
    assert rejects[0]["message"].startswith("in.json: record 0: 1 <image> placeholder in the system prompt;")
    assert rejects[0]["message"].endswith("or pass --misplaced-placeholders move.")

    code, out = convert_dir(tmp_path / "move", [record], {"a.PV.csv": None, "b.PV.csv": None}, "--misplaced-placeholders", "move")
    assert code == 0
    (line,) = read_jsonl(out / "ds.jsonl")
    assert line["input"] == "<ts><ts/>\nOdd?\n<ts><ts/>" and line["output"] == "Yes,  spikes." and line["system"] == "You see ."
    report = json.loads((out / "ds.report.json").read_text())
    assert report["notes"]["placeholders_moved"] == 2 and report["options"]["misplaced_placeholders"] == "move"
    assert tsconvert(["validate", str(out / "ds.jsonl"), "-q"]) == 0


def test_openai_image_part_in_an_answer_is_rejected(tmp_path):
    write_csv(tmp_path / "csv" / "a.PV.csv")
    record = {"messages": [
        {"role": "user", "content": [{"type": "text", "text": "Odd?"}]},
        {"role": "assistant", "content": [{"type": "image_url", "image_url": {"url": "/p/a.PV.jpg"}}]},
    ]}
    code, out = convert_dir(tmp_path, [record], {"a.PV.csv": None})
    assert [r["reason"] for r in read_jsonl(out / "ds.rejects.jsonl")] == ["placeholder_outside_user"]


def test_converters_import_no_torch():
    import subprocess
    import sys

    code = "import sys, converters.convert, converters.validate, converters.records, converters.forecast; print('torch' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "False", proc.stderr
