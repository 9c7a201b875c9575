"""What the eval verbs write besides their printed table: the scores as JSON (`--json OUT`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Iterable


def refuse_json_over_inputs(out: Path | None, inputs: Iterable[Path]) -> None:
    """Raise (one line from tsplugin.cli.main, exit 2) when `--json OUT` would replace one of the inputs."""
    if out is not None:
        # lazy: converters' one definition of "an output that is an input"
        from converters.paths import refuse_overwriting_inputs

        refuse_overwriting_inputs([out], list(inputs))


def write_scores_json(out: Path, payload: Any) -> int:
    """Write `payload` as indented JSON to `out` (its folder created) and say where; 0, or 1 with one line."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    except OSError as err:
        print(f"--json {out}: cannot write: {err.strerror or err}. Pick a writable path.", file=sys.stderr)
        return 1
    print(f"scores: {out}")
    return 0
