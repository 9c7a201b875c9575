"""Templates: each renders a conversation exactly as the public ChatTS code prompts the release."""

from __future__ import annotations

import copy

import pytest

import tsplugin._bootstrap  # noqa: F401  (hooks: the plugin's templates are registered on import)

QUESTION = "Is the series rising?"
ANSWER = "Yes, steadily."
# ChatTS README ("Deploy with Transformers", for ChatTS-8B and ChatTS-14B) and ChatTS-Training's `chatts` template.
CHATTS_PROMPT = (
    f"<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n{QUESTION}<|im_end|>\n"
    "<|im_start|>assistant\n"
)
NO_SYSTEM_PROMPT = f"<|im_start|>user\n{QUESTION}<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def base_tokenizer():
    from tsplugin.build.tokenizer import build_tokenizer

    return build_tokenizer()


def render(base_tokenizer, name: str, system: str | None = None) -> tuple[str, str, object]:
    from llamafactory.data import get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments

    tokenizer = copy.deepcopy(base_tokenizer)
    template = get_template_and_fix_tokenizer(tokenizer, DataArguments(template=name))
    messages = [{"role": "user", "content": QUESTION}, {"role": "assistant", "content": ANSWER}]
    prompt_ids, answer_ids = template.encode_oneturn(tokenizer, messages, system)
    decode = lambda ids: tokenizer.decode(ids, skip_special_tokens=False)  # noqa: E731
    return decode(prompt_ids), decode(answer_ids), (template, tokenizer)


@pytest.mark.parametrize(
    "name,prompt,answer",
    [
        ("chatts", CHATTS_PROMPT, f"{ANSWER}<|im_end|>\n"),
        ("chatts8b", CHATTS_PROMPT, f"{ANSWER}<|im_end|>\n"),
        ("chatts8b_nothink", NO_SYSTEM_PROMPT, f"{ANSWER}<|im_end|>\n"),
        ("chatts8b_think", NO_SYSTEM_PROMPT, f"<think>\n\n</think>\n\n{ANSWER}<|im_end|>\n"),  # only on explicit request
    ],
)
def test_template_renders_the_release_prompt(base_tokenizer, name, prompt, answer):
    got_prompt, got_answer, (template, tokenizer) = render(base_tokenizer, name)
    assert got_prompt == prompt
    assert got_answer == answer
    assert template.stop_words == ["<|im_end|>"] and tokenizer.eos_token == "<|im_end|>"


def test_given_system_prompt_replaces_the_default(base_tokenizer):
    prompt, _, _ = render(base_tokenizer, "chatts8b", system="Answer briefly.")
    assert prompt == CHATTS_PROMPT.replace("You are a helpful assistant.", "Answer briefly.")
    prompt, _, _ = render(base_tokenizer, "chatts8b_nothink", system="Answer briefly.")
    assert prompt == f"<|im_start|>system\nAnswer briefly.<|im_end|>\n{NO_SYSTEM_PROMPT}"


def test_profiles_name_registered_templates():
    from llamafactory.data.template import TEMPLATES

    from tsplugin.processing.profiles import PROFILES

    assert {p.default_template for p in PROFILES.values() if p.default_template} <= set(TEMPLATES)
