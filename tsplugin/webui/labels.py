"""The chat page's labels, set when the page is built (`llamafactory-cli webchat`, LlamaBoard's Chat tab).

LLaMA-Factory builds its components without labels and sets them from its `LOCALES` table when the
language dropdown changes; with gradio 5.50 that first change never reaches the page, so webchat showed
gradio's generic labels ("Dropdown", "Slider", two buttons both called "Run"). The `create_chat_box` hook
gives each component its `LOCALES` label, info and placeholder (and a button its text) in the user's
language (LlamaBoard's saved choice, else English) before the page is rendered. The language dropdown
still switches them as before; gradio's pin in the environment is left as it is.
"""

from __future__ import annotations

from typing import Any

DEFAULT_LANG = "en"
PROPERTIES = ("label", "info", "placeholder")  # what a LOCALES entry sets on any component


def saved_lang() -> str:
    """The language LlamaBoard saved for this user (its `lang`), else English."""
    from llamafactory.webui.common import load_config  # lazy: LLaMA-Factory's web UI (this module loads inside a hook)

    lang = (load_config() or {}).get("lang")
    return lang if isinstance(lang, str) and lang else DEFAULT_LANG


def apply_locales(elems: dict[str, Any], lang: str | None = None) -> list[str]:
    """Set each named component's LOCALES texts in `lang`; returns the names labelled. A button's `value`
    (its text) is set too; other components keep their values."""
    import gradio as gr
    from llamafactory.webui.locales import LOCALES  # lazy: LLaMA-Factory's web UI (this module loads inside a hook)

    lang = lang or saved_lang()
    done = []
    for name, component in elems.items():
        texts = LOCALES.get(name, {})
        texts = texts.get(lang) or texts.get(DEFAULT_LANG)
        if not texts:
            continue
        for key in PROPERTIES:
            if key in texts and hasattr(component, key):
                setattr(component, key, texts[key])
        if isinstance(component, gr.Button) and "value" in texts:
            component.value = texts["value"]
        done.append(name)
    return done


__all__ = ["DEFAULT_LANG", "apply_locales", "saved_lang"]
