"""Arm datasets on disk, in the forms trainers read: Alpaca and chat JSONL, Alpaca and chat Parquet
(`datasets.load_dataset("parquet", data_files=...)`), a `datasets` folder (`load_from_disk`).

Each record keeps its row_id so a trained-on example can be traced back to its raw row. The dataset
card beside them is `selection.card`'s.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from reflection_assets.selection.frames import require, text

PAIR_COLUMNS = ["row_id", "instruction", "input", "output"]


def user_content(instruction: str, input_text: str) -> str:
    """The user turn: the instruction, then the input after a blank line when there is one."""
    return f"{instruction}\n\n{input_text}" if input_text else instruction


def alpaca_records(frame: pd.DataFrame) -> list[dict[str, str]]:
    """{"row_id", "instruction", "input", "output"} per row (Alpaca's keys plus the id)."""
    require(frame, PAIR_COLUMNS, "frame")
    cols = {c: text(frame[c]).tolist() for c in PAIR_COLUMNS}
    return [dict(zip(PAIR_COLUMNS, values)) for values in zip(*(cols[c] for c in PAIR_COLUMNS))]


def chat_records(frame: pd.DataFrame, system: str | None = None) -> list[dict[str, object]]:
    """{"row_id", "messages"} per row: optional system, user (instruction + input), assistant."""
    records = []
    for rec in alpaca_records(frame):
        messages = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": user_content(rec["instruction"], rec["input"])})
        messages.append({"role": "assistant", "content": rec["output"]})
        records.append({"row_id": rec["row_id"], "messages": messages})
    return records


def _write_jsonl(records: list[dict], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return path


def write_alpaca_jsonl(frame: pd.DataFrame, path: str | Path) -> Path:
    """Alpaca-form JSONL (UTF-8, one object a line); returns the path."""
    return _write_jsonl(alpaca_records(frame), Path(path))


def write_chat_jsonl(frame: pd.DataFrame, path: str | Path, system: str | None = None) -> Path:
    """Chat-form JSONL with a `messages` list per line (TRL's conversational format)."""
    return _write_jsonl(chat_records(frame, system), Path(path))


def _parquet_schema(shape: str):
    import pyarrow as pa

    if shape == "alpaca":
        return pa.schema([(c, pa.string()) for c in PAIR_COLUMNS])
    message = pa.struct([("role", pa.string()), ("content", pa.string())])
    return pa.schema([("row_id", pa.string()), ("messages", pa.list_(message))])


def write_parquet(records: list[dict], shape: str, path: str | Path) -> Path:
    """Records of one shape (alpaca or chat) as a Parquet file, typed even when empty."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(records, schema=_parquet_schema(shape)), path)
    return path


def parquet_names(name: str) -> dict[str, str]:
    """Config name -> the Parquet file of that shape, relative to the export folder (the card lists them)."""
    return {"alpaca": f"{name}.alpaca.parquet", "chat": f"{name}.chat.parquet"}


def save_hf_dataset(frame: pd.DataFrame, path: str | Path, system: str | None = None) -> Path:
    """A `datasets` folder (save_to_disk) with the Alpaca columns and `messages`, for load_from_disk."""
    from datasets import Dataset  # imported here: `datasets` is slow to import and only needed on export

    table = pd.DataFrame(alpaca_records(frame), columns=PAIR_COLUMNS)
    table["messages"] = [rec["messages"] for rec in chat_records(frame, system)]
    path = Path(path)
    Dataset.from_pandas(table, preserve_index=False).save_to_disk(str(path))
    return path


def export_arm(frame: pd.DataFrame, out_dir: str | Path, name: str, system: str | None = None) -> dict[str, Path]:
    """Every form under out_dir: <name>.alpaca.jsonl, <name>.chat.jsonl, <name>.alpaca.parquet,
    <name>.chat.parquet and <name>.hf/."""
    out_dir = Path(out_dir)
    parquet = parquet_names(name)
    return {
        "alpaca_jsonl": write_alpaca_jsonl(frame, out_dir / f"{name}.alpaca.jsonl"),
        "chat_jsonl": write_chat_jsonl(frame, out_dir / f"{name}.chat.jsonl", system),
        "alpaca_parquet": write_parquet(alpaca_records(frame), "alpaca", out_dir / parquet["alpaca"]),
        "chat_parquet": write_parquet(chat_records(frame, system), "chat", out_dir / parquet["chat"]),
        "hf_dataset": save_hf_dataset(frame, out_dir / f"{name}.hf", system),
    }
