"""Exports read back as written: Alpaca JSONL, chat JSONL and a `datasets` folder."""

from __future__ import annotations

import json

import pandas as pd

from reflection_assets.selection.export import chat_records, export_arm, user_content, write_alpaca_jsonl

FRAME = pd.DataFrame(
    {
        "arm": "selective",
        "row_id": ["a", "b"],
        "instruction": ["Translate to French", "Say hi ✓"],
        "input": ["good morning", None],
        "output": ["bonjour", "hi\nthere"],
        "source": ["reflected", "raw"],
    }
)


def _read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_user_content():
    assert user_content("Q", "x") == "Q\n\nx"
    assert user_content("Q", "") == "Q"


def test_round_trip(tmp_path):
    from datasets import load_from_disk

    paths = export_arm(FRAME, tmp_path / "out", "selective", system="Be brief.")
    assert set(paths) == {"alpaca_jsonl", "chat_jsonl", "alpaca_parquet", "chat_parquet", "hf_dataset"}

    alpaca = _read_jsonl(paths["alpaca_jsonl"])
    assert alpaca == [
        {"row_id": "a", "instruction": "Translate to French", "input": "good morning", "output": "bonjour"},
        {"row_id": "b", "instruction": "Say hi ✓", "input": "", "output": "hi\nthere"},
    ]

    chat = _read_jsonl(paths["chat_jsonl"])
    assert chat[0]["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Translate to French\n\ngood morning"},
        {"role": "assistant", "content": "bonjour"},
    ]
    assert chat[1]["messages"][1] == {"role": "user", "content": "Say hi ✓"}

    ds = load_from_disk(str(paths["hf_dataset"]))
    assert len(ds) == 2 and ds["row_id"] == ["a", "b"]
    assert ds[0]["messages"] == chat[0]["messages"]
    assert ds[1]["output"] == "hi\nthere"


def test_chat_without_system_and_alpaca_only(tmp_path):
    assert [m["role"] for m in chat_records(FRAME)[0]["messages"]] == ["user", "assistant"]
    path = write_alpaca_jsonl(FRAME.iloc[:0], tmp_path / "nested" / "empty.jsonl")
    assert path.exists() and path.read_text() == ""
