"""Output formats: how a converted sample becomes JSON fields and which LLaMA-Factory
dataset_info.json entry reads them back. ``chatts`` is the ChatTS standard (input/output/timeseries);
``sharegpt`` keeps multi-turn conversations and system prompts (messages/timeseries)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import RejectError
from .records import Sample
from .registry import Registry


@dataclass(frozen=True)
class OutputFormat:
    """``fields(sample)`` builds the JSON fields (without timeseries); ``entry(file, has_system)`` the dataset_info
    entry; ``columns`` every field ``fields`` can write, with its type (`filetypes.arrow_type`: the Parquet columns)."""

    fields: Callable[[Sample], dict[str, Any]]
    entry: Callable[[str, bool], dict[str, Any]]
    columns: dict[str, str] = field(default_factory=dict)


OUTPUT_FORMATS: Registry[OutputFormat] = Registry("output format")


def register_output_format(name: str, fmt: OutputFormat) -> None:
    """Register an output format (refuses duplicates)."""
    OUTPUT_FORMATS.register(name, fmt)


def get_output_format(name: str) -> OutputFormat:
    """Look up an output format; unknown names list the valid ones."""
    return OUTPUT_FORMATS.get(name)


def _chatts_fields(s: Sample) -> dict[str, Any]:
    if len(s.turns) != 2:
        raise RejectError(
            "multi_turn",
            f"{len(s.turns) // 2} conversation rounds, but the ChatTS format holds one prompt and one answer. "
            "Pass --format sharegpt to keep conversations",
        )
    out = {"input": s.turns[0][1], "output": s.turns[1][1]}
    if s.system:
        out["system"] = s.system
    return out


def _chatts_entry(file_name: str, has_system: bool) -> dict[str, Any]:
    columns = {"prompt": "input", "response": "output", "timeseries": "timeseries"}
    if has_system:
        columns["system"] = "system"
    return {"file_name": file_name, "columns": columns}


def _sharegpt_fields(s: Sample) -> dict[str, Any]:
    # LLaMA-Factory's convention: a leading message whose role is the system tag is the system prompt.
    msgs = [{"role": "system", "content": s.system}] if s.system else []
    msgs += [{"role": role, "content": text} for role, text in s.turns]
    return {"messages": msgs}


def _sharegpt_entry(file_name: str, has_system: bool) -> dict[str, Any]:
    return {
        "file_name": file_name,
        "formatting": "sharegpt",
        "columns": {"messages": "messages", "timeseries": "timeseries"},
        "tags": {
            "role_tag": "role",
            "content_tag": "content",
            "user_tag": "user",
            "assistant_tag": "assistant",
            "system_tag": "system",
        },
    }


register_output_format("chatts", OutputFormat(_chatts_fields, _chatts_entry,
                                              {"input": "string", "output": "string", "system": "string"}))
register_output_format("sharegpt", OutputFormat(_sharegpt_fields, _sharegpt_entry, {"messages": "messages"}))
