"""Accounting for one run: every input record is counted as converted or rejected (by reason),
with series length statistics and every repaired cell. Written as NAME.report.json and printed."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class LengthStats:
    """Running min/max/mean of series lengths (bounded memory)."""

    count: int = 0
    total: int = 0
    min: int | None = None
    max: int | None = None

    def add(self, n: int) -> None:
        self.count += 1
        self.total += n
        self.min = n if self.min is None else min(self.min, n)
        self.max = n if self.max is None else max(self.max, n)

    def to_dict(self) -> dict[str, Any]:
        mean = round(self.total / self.count, 2) if self.count else None
        return {"series": self.count, "points": self.total, "min": self.min, "max": self.max, "mean": mean}


@dataclass
class Report:
    """Counts for one conversion or validation run."""

    source: str
    input: int = 0
    converted: int = 0
    rejected: Counter = field(default_factory=Counter)
    repairs: Counter = field(default_factory=Counter)
    notes: Counter = field(default_factory=Counter)
    lengths: LengthStats = field(default_factory=LengthStats)
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def n_rejected(self) -> int:
        return sum(self.rejected.values())

    def balanced(self) -> bool:
        """The invariant the whole tool is built around: converted + rejected == input."""
        return self.converted + self.n_rejected == self.input

    def to_dict(self, ok_label: str = "converted") -> dict[str, Any]:
        return {
            "source": self.source,
            "input": self.input,
            ok_label: self.converted,
            "rejected": self.n_rejected,
            "rejected_by_reason": dict(sorted(self.rejected.items())),
            "cells_repaired": sum(v for k, v in self.repairs.items() if k.startswith("cells_")),
            "repairs": dict(sorted(self.repairs.items())),
            "notes": dict(sorted(self.notes.items())),
            "lengths": self.lengths.to_dict(),
            "options": self.options,
        }

    def summary(self, ok_label: str = "converted") -> str:
        """Human lines for the terminal."""
        lines = [f"{self.source}: {self.input} records: {self.converted} {ok_label} + {self.n_rejected} rejected"]
        for code, n in sorted(self.rejected.items()):
            lines.append(f"  rejected {code}: {n}")
        cells = sum(v for k, v in self.repairs.items() if k.startswith("cells_"))
        if self.repairs:
            detail = ", ".join(f"{k} {v}" for k, v in sorted(self.repairs.items()))
            lines.append(f"  repaired: {cells} cells ({detail})")
        st = self.lengths
        if st.count:
            lines.append(f"  series: {st.count}, length min {st.min} / mean {st.total / st.count:.1f} / max {st.max}")
        for note, n in sorted(self.notes.items()):
            lines.append(f"  note {note}: {n}")
        return "\n".join(lines)
