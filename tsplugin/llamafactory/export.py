"""Record the chat template in an exported time-series model (`llamafactory-cli export`).

A model trained with `chatts8b_nothink` and exported must be served with `chatts8b_nothink`; the
release's default (`chatts8b`) would think aloud. The export recipe names the template the model was
trained with (LLaMA-Factory needs it there), so the `export_model` hook writes that name into the
exported config.json as `ts_template` (`tsplugin.chat.TEMPLATE_KEY`); `tsplugin chat` without
--template, LlamaBoard's template choice and `tsplugin inspect` read it (`tsplugin.chat.default_template`).
A key in config.json, not a file beside it, so it travels with the model (copies, Hub uploads, later
save_pretrained calls keep it). Only time-series models and time-series templates are touched.
"""

from __future__ import annotations

import json
import os
from typing import Any

from tsplugin.chat import TEMPLATE_KEY
from tsplugin.checkpoints.layouts import is_ts_config


def record_template(export_dir: str | os.PathLike, template: str, ts_templates: set[str]) -> bool:
    """Write `template` into `export_dir`/config.json as `ts_template` when the export is a time-series model
    and `template` a time-series template; atomic (a temporary file renamed over it). True when written."""
    path = os.path.join(os.fspath(export_dir), "config.json")
    if template not in ts_templates or not os.path.isfile(path):
        return False
    with open(path, encoding="utf-8") as f:
        config: Any = json.load(f)
    if not isinstance(config, dict) or not is_ts_config(config) or config.get(TEMPLATE_KEY) == template:
        return False
    config[TEMPLATE_KEY] = template
    staged = path + ".tsplugin-tmp"
    with open(staged, "w", encoding="utf-8") as f:
        f.write(json.dumps(config, indent=2, sort_keys=True) + "\n")
    os.replace(staged, path)
    return True


__all__ = ["record_template"]
