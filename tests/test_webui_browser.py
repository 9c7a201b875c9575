"""`llamafactory-cli webchat` and `llamafactory-cli webui` in a real headless chromium.

Each test starts LLaMA-Factory's own command as a subprocess (127.0.0.1, free port) with a tiny model
from `tsplugin init-model`, does what a user does (upload a CSV, ask, read the streamed answer) and
saves a screenshot under the test's tmp dir (path printed). Marker `browser` (opt-in: `-m browser`);
skipped with the reason where chromium, chromedriver or selenium is missing. The LlamaBoard test with
`vllm` as the inference engine is marked `vllm` too: it runs in the vLLM venv (`-m vllm`) and skips elsewhere.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from browser_helpers import browser_paths, chromium, llamafactory_server
from conftest import GDSH_CSV, ROOT

pytestmark = pytest.mark.browser

CSV_DIR = GDSH_CSV
CSV_A = CSV_DIR / "gdsh_second_20250601_PIC-3105.PV.csv"  # real series shipped with the repo (4,749 points)
CSV_B = CSV_DIR / "gdsh_second_20250604_TI-2201.PV.csv"
TEMPLATE = "chatts8b_nothink"
NEW_TOKENS = 24  # a random tiny model rarely stops by itself
WAIT = 240  # seconds the browser waits for the page to react (model answers on a busy 2-core machine)


@pytest.fixture(scope="module", autouse=True)
def _needs_browser():
    browser_paths()  # skip the module early, before any model is built


@pytest.fixture(scope="module")
def cli_model(tmp_path_factory) -> Path:
    """A tiny ChatTS-8B-layout model made with the command users run, `tsplugin init-model`."""
    out = tmp_path_factory.mktemp("webui_models") / "qwen3ts"
    cli = Path(sys.executable).with_name("tsplugin")
    subprocess.run([str(cli), "init-model", "-o", str(out), "--arch", "qwen3ts", "--preset", "tiny", "--seed", "0"], check=True, capture_output=True)
    return out


def _by_css(driver, css):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, css)


def _wait(driver, condition, what: str):
    """`condition(driver)` once truthy; gradio re-renders freely, so a stale element means try again."""
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, WAIT, poll_frequency=0.5, ignored_exceptions=(StaleElementReferenceException,)).until(
            lambda d: condition(d)
        )
    except TimeoutException:
        raise AssertionError(f"the page never showed {what}") from None


def _click(driver, text: str) -> None:
    """Click the visible, enabled button labelled `text` (retried while gradio re-renders it)."""

    def clicked(d):
        for button in _by_css(d, "button"):
            if button.text.strip() == text and button.is_displayed() and button.is_enabled():
                button.click()
                return True
        return False

    _wait(driver, clicked, f"a {text!r} button to click")


def _query_box(driver):
    """The chat's query textarea: the one the upload filled with placeholders."""
    boxes = [t for t in _by_css(driver, "textarea") if "<ts><ts/>" in (t.get_attribute("value") or "")]
    return boxes[0] if boxes else None


def _submit_button(driver):
    # LLaMA-Factory's submit button: the primary button of the chat box (label "Submit", or gradio's
    # default "Run" where LLaMA-Factory's labels are not applied).
    buttons = [b for b in _by_css(driver, "button.primary, button.lg.primary") if b.is_displayed() and b.text.strip() in ("Submit", "Run")]
    return buttons[-1] if buttons else None


def _finished_answer(driver):
    """Text of the last assistant message once no component is still generating."""
    bots = [b for b in _by_css(driver, "[data-testid=bot]") if b.text.strip()]
    if not bots or _by_css(driver, ".generating"):
        return None
    return bots[-1].text.strip()


def _series_ready(driver, n: int) -> str:
    """Wait for the upload's status line: the upload event is done, its series are in the chat state (a message sent
    before that would go without them, as it would for a user who clicks Submit that fast)."""
    return _wait(driver, lambda d: f"{n} series ready" in (s := _by_css(d, "#tsplugin-series-status")[0].text) and s,
                 f"'{n} series ready'")


def _upload_and_ask(driver, files: list[Path], question: str) -> str:
    _wait(driver, lambda d: _by_css(d, "#tsplugin-series-files input[type=file]"), "the series upload box")
    _by_css(driver, "#tsplugin-series-files input[type=file]")[0].send_keys("\n".join(str(f) for f in files))
    _series_ready(driver, len(files))
    query = _wait(driver, _query_box, "placeholders in the query box after the upload")
    assert query.get_attribute("value").count("<ts><ts/>") == len(files)
    _wait(driver, lambda d: _by_css(d, "#tsplugin-series-plot img"), "the series plot")
    query.send_keys(" " + question)
    _set_max_new_tokens(driver, NEW_TOKENS)
    _wait(driver, lambda d: (button := _submit_button(d)) is not None and (button.click() or True), "the submit button")
    # settled: a stream can pause between pieces with no progress mark, and an upload made then was overwritten by the
    # stream's next state (the vLLM webchat test's second turn went without its series in about 1 run of 3)
    return _settled_answer(driver, _wait(driver, _finished_answer, "an answer from the model"))


def _set_max_new_tokens(driver, value: int) -> None:
    """LLaMA-Factory's "Maximum new tokens" slider (default 1024): its number box, as a user types it."""
    from selenium.webdriver.common.keys import Keys

    box = next(b for b in _by_css(driver, "input[type=number]") if b.is_displayed() and b.get_attribute("value") == "1024")
    box.clear()
    box.send_keys(str(value), Keys.TAB)
    _wait(driver, lambda d: box.get_attribute("value") == str(value), "the new max_new_tokens")


def _screenshot(driver, path: Path) -> None:
    driver.save_screenshot(str(path))
    print(f"screenshot: {path}")


def test_webchat_upload_ask_answer(cli_model, tmp_path):
    recipe = tmp_path / "webchat.yaml"
    recipe.write_text(yaml.safe_dump(
        {"model_name_or_path": str(cli_model), "template": TEMPLATE, "infer_dtype": "float32", "do_sample": False}
    ))
    with llamafactory_server(["webchat", str(recipe)], tmp_path, tmp_path / "webchat.log") as url, chromium(tmp_path / "profile") as driver:
        driver.get(url)
        answer = _upload_and_ask(driver, [CSV_A, CSV_B], "Which of the two series drifts?")
        assert answer and not answer.startswith("Not sent"), answer
        # the user's message is shown with its placeholders; both series are plotted beside the chat
        users = [u.text for u in _by_css(driver, "[data-testid=user]")]
        assert users and "Which of the two series drifts?" in users[-1], users
        # a CSV without the value column: tsconvert's message in the page, no traceback
        bad = tmp_path / "no_value.csv"
        bad.write_text("timestamp,load\n1,2.0\n2,3.0\n")
        _by_css(driver, "#tsplugin-series-files input[type=file]")[0].send_keys(str(bad))
        status = _wait(driver, lambda d: "no column" in (s := _by_css(d, "#tsplugin-series-status")[0].text) and s, "the CSV error")
        assert "no_value.csv has no column 'value' (columns: 'timestamp', 'load')" in status, status
        assert "Traceback" not in driver.page_source
        _screenshot(driver, tmp_path / "webchat.png")


def test_webui_train_tab_and_chat_with_base_and_adapter(cli_model, tmp_path):
    """LlamaBoard: the Train tab lists/plots the time-series data; the Chat tab loads base + LoRA adapter."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    adapter = _lora_adapter(cli_model, tmp_path / "adapter")
    # what LlamaBoard remembers of a user (llamaboard_cache/user_config.yaml): a custom local model
    cache = tmp_path / "llamaboard_cache"
    cache.mkdir()
    (cache / "user_config.yaml").write_text(yaml.safe_dump(
        {"lang": "en", "hub_name": "huggingface", "last_model": "Custom", "path_dict": {"Custom": str(cli_model)}, "cache_dir": None}
    ))
    shutil.copytree(ROOT / "dataset_info", tmp_path / "data")  # LlamaBoard's default dataset dir
    with llamafactory_server(["webui"], tmp_path, tmp_path / "webui.log") as url, chromium(tmp_path / "profile") as driver:
        driver.get(url)
        # the local time-series model got its template
        _wait(driver, lambda d: any(i.get_attribute("value") == "chatts8b (time series)" for i in _by_css(d, "input")), "the model's template")
        # Train tab: time-series datasets listed and labelled, the preview plots their series
        dataset_input = _input_labelled(driver, "Dataset")
        dataset_input.click()
        _wait(
            driver,
            lambda d: any(o.click() or True for o in _by_css(d, "ul.options li") if o.text.strip() == "gdsh_sample (time series)"),
            "the time-series dataset in the list",
        )
        dataset_input.send_keys(Keys.ESCAPE)
        _click(driver, "Preview dataset")
        _wait(driver, lambda d: _by_css(d, "#tsplugin-preview-plot img"), "the preview plot")
        assert "points (plotted)" in driver.page_source
        _screenshot(driver, tmp_path / "webui_train_preview.png")
        _click(driver, "Close")
        # Chat tab: base model + adapter (LLaMA-Factory's own checkpoint field takes a path)
        _enter_checkpoint(driver, str(adapter))
        _wait(driver, lambda d: any(t.click() or True for t in d.find_elements(By.XPATH, "//button[@role='tab' and normalize-space()='Chat']")), "the Chat tab")
        _click(driver, "Load model")
        _wait(driver, lambda d: any("Model loaded" in (t.get_attribute("value") or "") for t in _by_css(d, "textarea")), "the model loaded")
        answer = _upload_and_ask(driver, [CSV_A], "Is there an anomaly?")
        assert answer and not answer.startswith("Not sent"), answer
        _screenshot(driver, tmp_path / "webui_chat.png")
    log = (tmp_path / "webui.log").read_text(errors="replace")
    assert "Loaded adapter(s): " + str(adapter) in log, log[-3000:]


@pytest.mark.vllm  # and `browser` (the module's): run in the vLLM venv with -m vllm
def test_webchat_on_vllm_upload_ask_answer(cli_model, tmp_path, monkeypatch):
    """`llamafactory-cli webchat` with `infer_backend: vllm` in the YAML: an uploaded series is answered by vLLM;
    one too long for vLLM's context (`vllm_maxlen`) gets the engine's refusal in the page before vLLM sees it."""
    from conftest import write_csv

    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")
    recipe = tmp_path / "webchat.yaml"
    recipe.write_text(yaml.safe_dump({"model_name_or_path": str(cli_model), "template": TEMPLATE, "infer_dtype": "float32",
                                      "infer_backend": "vllm", "vllm_enforce_eager": True, "vllm_maxlen": 512}))
    short = write_csv(tmp_path / "short.csv", n=40)
    with llamafactory_server(["webchat", str(recipe)], tmp_path, tmp_path / "webchat.log") as url, chromium(tmp_path / "profile") as driver:
        driver.get(url)
        answer = _upload_and_ask(driver, [short], "Is there an anomaly?")
        assert answer and not answer.startswith("Not sent"), answer
        # 4,749 points: ~600 series positions, more than vLLM's 512-token context
        plot = _by_css(driver, "#tsplugin-series-plot img")[0].get_attribute("src")
        _by_css(driver, "#tsplugin-series-files input[type=file]")[0].send_keys(str(CSV_A))
        _series_ready(driver, 1)
        _wait(driver, lambda d: any(i.get_attribute("src") != plot for i in _by_css(d, "#tsplugin-series-plot img")), "the new series plotted")
        _wait(driver, _query_box, "a placeholder in the query box after the upload").send_keys(" And here?")
        _wait(driver, lambda d: (button := _submit_button(d)) is not None and (button.click() or True), "the submit button")
        refused = _wait(driver, lambda d: (a := _finished_answer(d)) and a.startswith("Not sent") and a, "the refusal")
        assert "this model's context holds 512" in refused and "vllm_maxlen" in refused, refused  # backticks render as code
        _screenshot(driver, tmp_path / "webchat_vllm.png")
        assert "Traceback" not in driver.page_source
    log = (tmp_path / "webchat.log").read_text(errors="replace")
    assert "Initializing a V1 LLM engine" in log, log[-3000:]


@pytest.mark.vllm  # and `browser` (the module's): run in the vLLM venv with -m vllm
def test_webui_chat_tab_with_vllm_answers_as_huggingface(cli_model, tmp_path, monkeypatch):
    """LlamaBoard's Chat tab with `vllm` chosen as the inference engine loads the model through vLLM and answers
    about an uploaded series; unloaded and loaded again with `huggingface` in the same LlamaBoard (vLLM turned
    the shared template's expand_mm_tokens off there), the same question gets the same answer (Top-p 0.01: the
    most likely token at every step, on either engine)."""
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB of KV cache for the tiny model (vLLM's CPU default: 4)
    cache = tmp_path / "llamaboard_cache"
    cache.mkdir()
    (cache / "user_config.yaml").write_text(yaml.safe_dump(
        {"lang": "en", "hub_name": "huggingface", "last_model": "Custom", "path_dict": {"Custom": str(cli_model)}, "cache_dir": None}
    ))
    answers = {}
    with llamafactory_server(["webui"], tmp_path, tmp_path / "webui.log") as url, chromium(tmp_path / "profile") as driver:
        for backend in ("vllm", "huggingface"):
            driver.get(url)  # a fresh page; the loaded engine lives in the server
            _wait(driver, lambda d: any(i.get_attribute("value") == "chatts8b (time series)" for i in _by_css(d, "input")), "the model's template")
            _open_tab(driver, "Chat")
            if answers:
                _click(driver, "Unload model")
                _wait(driver, lambda d: any("Model unloaded" in (t.get_attribute("value") or "") for t in _by_css(d, "textarea")), "the model unloaded")
                # LlamaBoard's unload goes on after that text (it empties this page's conversation, then hides the chat
                # box); a late emptying, seen on a loaded 2-core box, wiped the next upload. A fresh page has its own state.
                driver.get(url)
                _wait(driver, lambda d: any(i.get_attribute("value") == "chatts8b (time series)" for i in _by_css(d, "input")), "the model's template")
                _open_tab(driver, "Chat")
            _choose(driver, "Inference engine", backend)
            _choose(driver, "Inference data type", "float32")
            _click(driver, "Load model")
            _wait(driver, lambda d: any("Model loaded" in (t.get_attribute("value") or "") for t in _by_css(d, "textarea")), f"the model loaded ({backend})")
            _set_number(driver, "0.7", "0.01")  # Top-p
            answers[backend] = _settled_answer(driver, _upload_and_ask(driver, [CSV_A], "Is there an anomaly?"))
            assert answers[backend] and not answers[backend].startswith("Not sent"), (backend, answers[backend])
            _screenshot(driver, tmp_path / f"webui_chat_{backend}.png")
    # the same tokens; vLLM's detokenizer holds back a last token that ends inside a UTF-8 character, HF shows "\ufffd"
    assert answers["vllm"].rstrip("\ufffd") == answers["huggingface"].rstrip("\ufffd"), answers
    log = (tmp_path / "webui.log").read_text(errors="replace")
    assert "Initializing a V1 LLM engine" in log, log[-3000:]  # vLLM's engine did answer first


def _settled_answer(driver, answer: str) -> str:
    """The last answer once it stops changing: a stream can pause between pieces with no progress mark shown."""
    for _ in range(WAIT // 5):
        time.sleep(5)
        now = _finished_answer(driver)
        if now == answer:
            return answer
        answer = now or answer
    raise AssertionError(f"the answer kept changing for {WAIT}s: {answer!r}")


def _open_tab(driver, name: str) -> None:
    from selenium.webdriver.common.by import By

    xpath = f"//button[@role='tab' and normalize-space()='{name}']"
    _wait(driver, lambda d: any(t.click() or True for t in d.find_elements(By.XPATH, xpath)), f"the {name} tab")


def _choose(driver, label: str, option: str) -> None:
    """Pick `option` in the gradio dropdown labelled `label`, as a user clicks it."""
    from selenium.webdriver.common.keys import Keys

    from selenium.webdriver.common.by import By

    def field(d):  # a single-choice dropdown: its label is a span beside the input, not a <label>
        found = d.find_elements(By.XPATH, f"//div[span[normalize-space()='{label}']]//input")
        return next((f for f in found if f.is_displayed()), None)

    if _wait(driver, field, f"the {label!r} dropdown").get_attribute("value") == option:
        return
    field(driver).click()
    # an option's text may carry gradio's check mark for the current choice
    _wait(driver, lambda d: any(o.click() or True for o in _by_css(d, "ul.options li") if o.text.strip().lstrip("✓ ") == option),
          f"{option!r} in {label!r}")
    _wait(driver, lambda d: field(d).get_attribute("value") == option, f"{option!r} chosen in {label!r}")
    field(driver).send_keys(Keys.ESCAPE)


def _set_number(driver, current: str, value: str) -> None:
    """Type `value` into the visible slider number box now showing `current`."""
    from selenium.webdriver.common.keys import Keys

    box = _wait(driver, lambda d: next((b for b in _by_css(d, "input[type=number]") if b.is_displayed() and b.get_attribute("value") == current), None),
                f"a number box showing {current}")
    box.clear()
    box.send_keys(value, Keys.TAB)
    _wait(driver, lambda d: box.get_attribute("value") == value, f"the number box at {value}")


def _enter_checkpoint(driver, path: str) -> None:
    """Type `path` into LlamaBoard's Checkpoint path until it stays. The field refreshes itself from the server
    (`list_checkpoints`, value []) when it gets focus and after a model change: on a loaded machine that
    answer can land after the typed path and wipe it, and the model would load without the adapter."""
    from selenium.webdriver.common.keys import Keys

    def shown(d) -> bool:
        return any(t.text.strip() == path for t in _by_css(d, ".token span"))

    for _ in range(5):
        field = _input_labelled(driver, "Checkpoint path")
        field.click()  # focus first: its refresh is what could wipe the value
        time.sleep(1.0)  # lets that round trip land before typing
        field.send_keys(path, Keys.ENTER)
        try:
            _wait(driver, shown, "the adapter path in Checkpoint path")
        except AssertionError:
            continue
        time.sleep(2.0)  # a late refresh would clear it within this
        if shown(driver):
            return
    raise AssertionError(f"Checkpoint path kept losing {path} (LlamaBoard refreshed it 5 times)")


def _input_labelled(driver, label: str):
    from selenium.webdriver.common.by import By

    return _wait(
        driver,
        lambda d: [e for e in d.find_elements(By.XPATH, f"//label[.//span[normalize-space()='{label}']]//input") if e.is_displayed()],
        f"the {label!r} field",
    )[0]


def _lora_adapter(model_dir: Path, out: Path) -> Path:
    """A LoRA adapter on the tiny model, saved by peft as LLaMA-Factory's training saves one."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    import tsplugin.models  # noqa: F401

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft_model.save_pretrained(out)
    return out
