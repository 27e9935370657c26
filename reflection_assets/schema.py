"""The shared row model: what every stage reads and writes.

Row ids are content hashes of the raw pair; every derived row keeps the raw row's id, so one
query follows a sample from raw to reflected to scored to selected to trained-on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from reflection_assets.hashing import content_hash

# Column used as the DuckDB partition expression of every per-dataset table.
PARTITION_COLUMN = "dataset"

RAW_COLUMNS = [
    PARTITION_COLUMN,  # dynamic partition key (one ingested dataset)
    "row_id",  # content hash of (system, history, instruction, input, output)
    "source_file",
    "source_row",  # 1-based line (JSONL/CSV) or element index (JSON array / Parquet)
    "format",  # alpaca | sharegpt | messages | csv | parquet | hf
    "system",  # "" when absent
    "history",  # JSON list of {"role", "content"} turns before the last user turn, "[]" when none
    "instruction",
    "input",  # "" when absent
    "output",
]

REJECTED_COLUMNS = [
    PARTITION_COLUMN,
    "source_file",
    "source_row",
    "reason",  # one of ingest.reasons
    "detail",  # human-readable explanation
    "raw_text",  # the row as it was read (decoded with errors="replace" when bad UTF-8)
]


@dataclass(frozen=True)
class Turn:
    role: str  # "user" | "assistant"
    content: str


@dataclass(frozen=True)
class Pair:
    """One instruction/response pair, with optional system prompt and earlier turns."""

    instruction: str
    output: str
    input: str = ""
    system: str = ""
    history: tuple[Turn, ...] = field(default_factory=tuple)
    row_id: str = ""

    def content_id(self) -> str:
        """The stable id of this content (used for raw rows)."""
        return content_hash(
            [self.system, [[t.role, t.content] for t in self.history], self.instruction, self.input, self.output]
        )

    def history_json(self) -> str:
        return json.dumps([{"role": t.role, "content": t.content} for t in self.history], ensure_ascii=False)

    @staticmethod
    def history_from_json(text: str | None) -> tuple[Turn, ...]:
        if not text:
            return ()
        return tuple(Turn(t["role"], t["content"]) for t in json.loads(text))

    @classmethod
    def from_row(cls, row: Any) -> Pair:
        """Build from a dict / pandas row with RAW_COLUMNS-style fields."""
        get = row.get if hasattr(row, "get") else (lambda k, d=None: getattr(row, k, d))
        return cls(
            instruction=str(get("instruction", "") or ""),
            output=str(get("output", "") or ""),
            input=str(get("input", "") or ""),
            system=str(get("system", "") or ""),
            history=cls.history_from_json(get("history", "[]")),
            row_id=str(get("row_id", "") or ""),
        )
