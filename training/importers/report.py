"""What an import read, kept and refused, stored with the Parquet file and printed at the end."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

MAX_EXAMPLES = 20


@dataclass
class ImportReport:
    rows_read: int = 0
    rows_kept: int = 0
    malformed: Counter[str] = field(default_factory=Counter)
    # The first few refused rows, so a maintainer can look at them in the source file.
    examples: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def refuse(self, reason: str, where: str) -> None:
        self.malformed[reason] += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(f"{where}: {reason}")

    @property
    def rows_malformed(self) -> int:
        return sum(self.malformed.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows_read": self.rows_read,
            "rows_kept": self.rows_kept,
            "rows_malformed": self.rows_malformed,
            "malformed_reasons": dict(sorted(self.malformed.items())),
            "malformed_examples": list(self.examples),
            **self.extra,
        }

    def summary(self) -> str:
        lines = [
            f"read {self.rows_read:,} rows, kept {self.rows_kept:,}, malformed {self.rows_malformed:,}"
        ]
        lines += [
            f"  malformed ({reason}): {count:,}" for reason, count in sorted(self.malformed.items())
        ]
        for key, value in self.extra.items():
            if isinstance(value, int | float | str | bool):
                lines.append(
                    f"  {key}: {value:,}" if isinstance(value, int) else f"  {key}: {value}"
                )
        return "\n".join(lines)
