"""Chat templates registered by the plugin (LLaMA-Factory `template:` names).

| name | model | chat format |
|---|---|---|
| `chatts` | ChatTS-14B (`model_type: chatts`) | ChatML; system "You are a helpful assistant." unless given; no think block |
| `chatts8b` | ChatTS-8B (`model_type: qwen3ts`) | the same as `chatts`: ChatTS-Training trains 8B with its `chatts` template and ChatTS's README prompts 8B that way |
| `chatts8b_think` | Qwen3 thinking, on explicit request | ChatML, no default system; an answer without `<think>` gets an empty think block, with loss (LLaMA-Factory's ReasoningTemplate) |
| `chatts8b_nothink` | Qwen3 ChatML without a default system turn | ChatML, no system unless given, no think block |
| `qwen_ts` | your own Qwen2/Qwen2.5 + encoder (`model_type: qwen_ts`) | Qwen2.5 ChatML |
| `qwen3_ts` | your own Qwen3 + encoder (`model_type: qwen_ts`) | Qwen3 ChatML, no thinking |

All stop on `<|im_end|>` (replacing the tokenizer's eos) and use the `timeseries` multimodal plugin:
`<ts><ts/>` in the text is one series.
"""

from __future__ import annotations

from typing import Any

from tsplugin.llamafactory.position_ids import position_template
from tsplugin.registry import Registry

CHATML_USER = "<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n"
CHATML_ASSISTANT = "{{content}}<|im_end|>\n"
CHATML_SYSTEM = "<|im_start|>system\n{{content}}<|im_end|>\n"
CHATML_OBSERVATION = "<|im_start|>user\n<tool_response>\n{{content}}\n</tool_response><|im_end|>\n<|im_start|>assistant\n"

CHATTS_SYSTEM = "You are a helpful assistant."  # ChatTS-Training `chatts` default_system, ChatTS README prompt

# name -> (default system prompt, reasoning template?); LLaMA-Factory's own registry gets them in register_all.
TEMPLATES: Registry[tuple[str, bool]] = Registry("time-series chat template")


def register_ts_template(name: str, default_system: str, reasoning: bool = False) -> None:
    """Add a ChatML time-series template (refuses duplicates)."""
    TEMPLATES.register(name, (default_system, reasoning))


register_ts_template("chatts", CHATTS_SYSTEM)
register_ts_template("chatts8b", CHATTS_SYSTEM)
register_ts_template("chatts8b_think", "", reasoning=True)
register_ts_template("chatts8b_nothink", "")
register_ts_template("qwen_ts", "You are a helpful assistant.")
register_ts_template("qwen3_ts", "")


def register_all(template_module: Any, mm_plugin_module: Any) -> None:
    """Register every template above with LLaMA-Factory's own `register_template`."""
    from llamafactory.data.formatter import FunctionFormatter, StringFormatter, ToolFormatter

    for name, (default_system, reasoning) in TEMPLATES.items():
        if name in template_module.TEMPLATES:
            continue  # already registered in this process
        # runs of `<ts>` positions become ids without the tokenizer splitting them (tsplugin.llamafactory.position_ids)
        template_class = template_module.ReasoningTemplate if reasoning else template_module.Template
        template_module.register_template(
            name=name,
            format_user=StringFormatter(slots=[CHATML_USER]),
            format_assistant=StringFormatter(slots=[CHATML_ASSISTANT]),
            format_system=StringFormatter(slots=[CHATML_SYSTEM]),
            format_function=FunctionFormatter(slots=[CHATML_ASSISTANT], tool_format="qwen"),
            format_observation=StringFormatter(slots=[CHATML_OBSERVATION]),
            format_tools=ToolFormatter(tool_format="qwen"),
            default_system=default_system,
            stop_words=["<|im_end|>"],
            replace_eos=True,
            mm_plugin=mm_plugin_module.get_mm_plugin(name="timeseries"),
            template_class=position_template(template_class),
        )
