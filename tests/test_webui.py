"""Series in LLaMA-Factory's web UIs, without a browser: uploads, chat state, streaming, Train tab.

The browser tests (`-m browser`, tests/test_webui_browser.py) drive the same code through chromium.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import GDSH_CSV, ROOT
from converters.writer import update_dataset_info

CSV_DIR = GDSH_CSV
CSV_A = CSV_DIR / "gdsh_second_20250601_PIC-3105.PV.csv"
TEMPLATE = "chatts8b_nothink"


# --- uploads: read as tsconvert reads them ---------------------------------------------------------


def test_upload_equals_what_tsconvert_wrote_for_the_same_csv():
    from tsplugin.webui.series_input import read_uploads

    (series,) = read_uploads([CSV_A])
    # dataset_info/gdsh_sample.jsonl is tsconvert's output for the same sample; record 0 is this CSV
    record = json.loads((ROOT / "dataset_info" / "gdsh_sample.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert "PIC-3105.PV" in record["input"]
    assert series.name == CSV_A.name
    np.testing.assert_allclose(series.values, record["timeseries"][0], rtol=0, atol=5e-5)  # JSONL keeps 4 decimals


def test_upload_errors_are_tsconverts_messages(tmp_path):
    from tsplugin.webui.series_input import SeriesInputError, read_uploads

    bad = tmp_path / "load.csv"
    bad.write_text("timestamp,load\n1,2.0\n2,x\n3,4.0\n")
    with pytest.raises(SeriesInputError, match=r"^load.csv has no column 'value' \(columns: 'timestamp', 'load'\)") as err:
        read_uploads([bad])
    # the page's field, not the command-line flag
    assert str(err.value).endswith('Type one of them in the "Value column(s)" field') and "--" not in str(err.value)
    both = tmp_path / "two.csv"
    both.write_text("timestamp,value,VALUE\n1,2.0,3.0\n")
    with pytest.raises(SeriesInputError, match=r'so the "Value column\(s\)" field names exactly one$'):
        read_uploads([both])
    (series,) = read_uploads([bad], value_cols="LOAD")  # case-insensitive, the gap interpolated
    assert series.values == (2.0, 3.0, 4.0)
    with pytest.raises(SeriesInputError, match=r"^notes.txt is not a .csv file"):
        read_uploads([tmp_path / "notes.txt"])
    empty = tmp_path / "empty.csv"
    empty.write_text("timestamp,value\n")
    with pytest.raises(SeriesInputError, match=r"^empty.csv has a header but no data rows"):
        read_uploads([empty])


def test_several_value_columns_give_several_series_in_order(tmp_path):
    from tsplugin.webui.series_input import read_uploads

    path = tmp_path / "two.csv"
    path.write_text("timestamp,a,b\n2,20,200\n1,10,100\n")  # out of order: sorted by time as tsconvert does
    assert read_uploads([path], value_cols="b, a") == [
        type(read_uploads([path], "a")[0])("two.csv: b", (100.0, 200.0)),
        type(read_uploads([path], "a")[0])("two.csv: a", (10.0, 20.0)),
    ]


def test_placeholders_are_added_only_where_missing():
    from tsplugin.webui.series_input import insert_placeholders

    assert insert_placeholders("", 2) == "<ts><ts/> <ts><ts/>"
    assert insert_placeholders("Compare", 1) == "Compare <ts><ts/>"
    assert insert_placeholders("Is <ts><ts/> flat?", 1) == "Is <ts><ts/> flat?"
    assert insert_placeholders("Is <ts><ts/> flat?", 2) == "Is <ts><ts/> flat? <ts><ts/>"


# --- the chat state ----------------------------------------------------------------------------------


def _named(*lengths):
    from tsplugin.webui.series_input import NamedSeries

    return [NamedSeries(f"s{i}.csv", tuple(float(v) for v in range(n))) for i, n in enumerate(lengths)]


def test_series_ride_in_the_chat_state_turn_by_turn():
    from tsplugin.webui import conversation as conv

    state = conv.with_pending([], _named(3))
    state = conv.with_pending(state, _named(4, 5))  # a new upload replaces the unsent one
    assert conv.pending(state) == 2
    state += [{"role": "user", "content": "<ts><ts/> vs <ts><ts/>?"}, {"role": "assistant", "content": "same"}]
    state = conv.with_pending(state, _named(6)) + [{"role": "user", "content": "and <ts><ts/>"}]
    clean, series = conv.split(state)
    assert [m["role"] for m in clean] == ["user", "assistant", "user"]
    assert [len(s) for s in series] == [4, 5, 6]
    assert [name for name, _ in conv.series_of(state)] == ["s0.csv", "s1.csv", "s0.csv"]
    answered = conv.merge_answer(state, clean, clean + [{"role": "assistant", "content": "up"}])
    assert answered[:-1] == state and answered[-1]["content"] == "up"


def test_page_messages_name_the_pages_fields_and_other_options_as_tsconverts():
    from tsplugin.webui.series_input import page_message

    assert page_message("x.csv: all 3 values are missing or non-numeric. Fix the CSV or --value-col") == (
        'x.csv: all 3 values are missing or non-numeric. Fix the CSV or the "Value column(s)" field')
    assert page_message("x.csv: 2 columns match 't'. Rename one in the CSV so --time-col names exactly one").endswith(
        'so the "Time column" field names exactly one')
    assert page_message("x.csv: '1,5' is ambiguous; pass --number-format").endswith(
        "(that option is tsconvert's: convert the CSV with tsconvert, or fix the file and upload it again)")


def test_a_turn_whose_placeholders_do_not_match_its_uploads_is_refused():
    from tsplugin.webui import conversation as conv

    state = conv.with_pending([], _named(3, 4)) + [{"role": "user", "content": "only <ts><ts/>"}]
    with pytest.raises(ValueError, match=r"user message 1 has 1 <ts><ts/> placeholder\(s\) but 2 series were uploaded for it"):
        conv.split(state)
    with pytest.raises(ValueError, match=r"user message 1 has 1 <ts><ts/> placeholder\(s\) but 0 series"):
        conv.split([{"role": "user", "content": "<ts><ts/>"}])


# --- streaming through LLaMA-Factory's own WebChatModel ----------------------------------------------


@pytest.fixture(scope="module")
def web_chat(tiny_qwen3ts):
    from llamafactory.chat import ChatModel
    from llamafactory.webui.chatter import WebChatModel
    from llamafactory.webui.manager import Manager

    from tsplugin.chat import TimeSeriesChat

    chatter = WebChatModel(Manager(), lazy_init=True)
    ChatModel.__init__(chatter, dict(model_name_or_path=str(tiny_qwen3ts), template=TEMPLATE, infer_dtype="float32", do_sample=False))
    return chatter, TimeSeriesChat.from_pretrained(tiny_qwen3ts, template=TEMPLATE)


def _stream(chatter, chatbot, state, new_tokens=12):
    # inputs in LLaMA-Factory's order: lang, system, tools, image, video, audio, max_new_tokens, top_p,
    # temperature, skip_special_tokens, escape_html, enable_thinking
    return list(chatter.stream(chatbot, state, "en", "", "", None, None, None, new_tokens, 0.7, 0.95, True, True, False))


def test_webchat_answer_streams_and_equals_tsplugin_chat(web_chat):
    from llamafactory.webui.chatter import WebChatModel

    from tsplugin.webui import conversation as conv
    from tsplugin.webui.series_input import read_uploads

    chatter, reference = web_chat
    series = read_uploads([CSV_A])
    question = "Is there a drift in <ts><ts/>?"
    chatbot, state, _ = WebChatModel.append([], conv.with_pending([], series), "user", question, True)
    steps = _stream(chatter, chatbot, state)
    assert len(steps) > 1  # streamed piece by piece
    _, final_state = steps[-1]
    expected = reference.ask(question, [list(series[0].values)], max_new_tokens=12)
    assert expected and final_state[-1] == {"role": "assistant", "content": expected}
    assert final_state[:-1] == state  # the series stay in the state for the next turn
    # next turn, text only: the first turn's series still reach the model
    chatbot2, state2 = WebChatModel.append(steps[-1][0], final_state, "user", "And now?", True)[:2]
    assert _stream(chatter, chatbot2, state2)[-1][1][-1]["role"] == "assistant"


def test_webchat_refusal_is_a_message_and_keeps_the_upload(web_chat):
    from llamafactory.webui.chatter import WebChatModel

    from tsplugin.webui import conversation as conv

    chatter, _ = web_chat
    state0 = conv.with_pending([], _named(16, 16))
    chatbot, state, _ = WebChatModel.append([], state0, "user", "one <ts><ts/> only", True)
    (shown, kept), = _stream(chatter, chatbot, state)
    # escaped: gradio renders bubbles as Markdown/HTML, where a raw <ts> is a tag that hides the rest
    assert shown[-1]["content"].startswith("Not sent: user message 1 has 1 &lt;ts&gt;&lt;ts/&gt; placeholder(s) but 2 series")
    assert kept == state0  # the unanswered message left the state; the uploads wait for a corrected one


def test_text_only_chat_is_upstreams(web_chat):
    from llamafactory.webui.chatter import WebChatModel

    chatter, reference = web_chat
    chatbot, state = WebChatModel.append([], [], "user", "hello", True)[:2]
    assert _stream(chatter, chatbot, state)[-1][1][-1]["content"] == reference.ask("hello", [], max_new_tokens=12)


# --- the UIs as LLaMA-Factory builds them -------------------------------------------------------------


@pytest.fixture(scope="module")
def llamaboard():
    from llamafactory.webui.interface import create_ui

    return create_ui().get_config_file()


def _components(config, **props):
    return [c for c in config["components"] if all(c["props"].get(k) == v for k, v in props.items())]


def test_llamaboard_has_the_series_panel_and_labels_time_series_templates(llamaboard):
    from llamafactory.data.template import TEMPLATES

    assert _components(llamaboard, elem_id="tsplugin-series-files")
    assert _components(llamaboard, elem_id="tsplugin-series-plot")
    assert len(_components(llamaboard, elem_id="tsplugin-preview-plot")) == 2  # Train and Evaluate tabs
    (choices,) = [
        [tuple(choice) for choice in c["props"]["choices"]]
        for c in llamaboard["components"]
        if ("default", "default") in [tuple(choice) for choice in c["props"].get("choices") or []]
    ]
    assert [v for _, v in choices] == list(TEMPLATES)  # same templates, same values
    for name in ("chatts", "chatts8b", "chatts8b_nothink", "qwen_ts", "qwen3_ts"):
        assert (f"{name} (time series)", name) in choices
    assert ("qwen3", "qwen3") in choices


def test_train_tab_lists_time_series_datasets_and_plots_their_preview(tmp_path):
    from llamafactory.webui.components import data
    from llamafactory.webui.control import list_datasets

    from tsplugin.webui.train_tab import template_for_path

    shutil.copy(ROOT / "dataset_info" / "dataset_info.json", tmp_path)
    update_dataset_info(tmp_path / "dataset_info.json", "plain_alpaca", {"file_name": "x.json"})
    choices = list_datasets(str(tmp_path), "Supervised Fine-Tuning").choices
    assert ("gdsh_sample (time series)", "gdsh_sample") in choices
    assert ("gdsh_sample_sharegpt (time series)", "gdsh_sample_sharegpt") in choices
    assert ("plain_alpaca", "plain_alpaca") in choices

    directory = str(ROOT / "dataset_info")
    count, samples, _ = data.get_preview(directory, ["gdsh_sample"], 0)
    assert count > 2 and len(samples) == data.PAGE_SIZE
    assert samples[0]["timeseries"] == ["<ts> #1: 4749 points (plotted)"]
    assert samples[0]["output"] == json.loads((ROOT / "dataset_info" / "gdsh_sample.jsonl").read_text().splitlines()[0])["output"]
    assert template_for_path(directory) is None


def test_preview_plot_draws_every_series_of_the_page(tmp_path):
    from llamafactory.webui.components import data

    from tsplugin.webui.plots import records_figure
    from tsplugin.webui.train_tab import page_series

    _, records, _ = data.get_preview.__wrapped__(str(ROOT / "dataset_info"), ["gdsh_sample"], 1)
    pages = page_series(records, "timeseries", data.PAGE_SIZE)
    figure = records_figure(pages, title="gdsh_sample")
    titles = [ax.get_title(loc="left") for ax in figure.axes]
    assert titles == [f"record {2 + i}: <ts> #1 ({len(r['timeseries'][0])} points)" for i, r in enumerate(records)]
    drawn = figure.axes[0].lines[0].get_ydata()
    np.testing.assert_array_equal(drawn, records[0]["timeseries"][0])
    figure.savefig(tmp_path / "preview.png")
    assert (tmp_path / "preview.png").stat().st_size > 5000


def test_a_local_time_series_model_gets_its_template(tiny_qwen3ts, tiny_chatts):
    from tsplugin.webui.train_tab import template_for_path

    assert template_for_path(str(tiny_qwen3ts)) == "chatts8b"
    assert template_for_path(str(tiny_chatts)) == "chatts"
    assert template_for_path("Qwen/Qwen3-8B") is None


def test_web_hooks_are_installed_and_fail_loudly_on_upstream_change():
    from types import ModuleType

    import llamafactory.webui.interface  # noqa: F401
    from llamafactory.webui.chatter import WebChatModel

    from tsplugin.llamafactory import hooks

    assert {m for m in hooks.HOOKS if m.startswith("llamafactory.webui")} <= hooks.applied()
    assert getattr(WebChatModel.stream, "__tsplugin__", False)
    fake = ModuleType("llamafactory.webui.components.data")
    fake.get_preview = lambda *a: None
    with pytest.raises(ImportError, match=r"llamafactory.webui.components.data has no create_preview_box, PAGE_SIZE"):
        hooks.hook_webui_data(fake)


def test_webchat_labels_every_control_in_the_users_language(tiny_qwen3ts, tmp_path, monkeypatch):
    """gradio 5.50 never delivers LLaMA-Factory's first language change to the page: without the hook's labels
    webchat showed "Dropdown", "Slider" and two buttons called "Run"."""
    import yaml
    from llamafactory.webui.interface import create_web_demo
    from llamafactory.webui.locales import LOCALES

    recipe = tmp_path / "chat.yaml"
    recipe.write_text(yaml.safe_dump(dict(model_name_or_path=str(tiny_qwen3ts), template=TEMPLATE, infer_dtype="float32")))
    monkeypatch.setattr("sys.argv", ["llamafactory-cli", str(recipe)])
    monkeypatch.setattr("llamafactory.webui.common.load_config", lambda: {"lang": "en"})
    config = create_web_demo().get_config_file()
    controls = [c for c in config["components"] if c["type"] in ("slider", "dropdown", "checkbox")]
    buttons = [c["props"].get("value") for c in config["components"] if c["type"] == "button"]
    assert len(controls) >= 6 and all(c["props"].get("label") for c in controls), controls
    assert {c["props"]["label"] for c in controls} >= {LOCALES["lang"]["en"]["label"], LOCALES["max_new_tokens"]["en"]["label"],
                                                        LOCALES["temperature"]["en"]["label"]}
    assert buttons == [LOCALES["submit_btn"]["en"]["value"], LOCALES["clear_btn"]["en"]["value"]]
