"""Format detection: extension and magic bytes for containers, keys for row shapes."""

from pathlib import Path

import pytest

from reflection_assets.ingest.columns import resolve_column_map
from reflection_assets.ingest.detect import binary_kind, container_of, looks_like_hub_id, record_format_of


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"instruction": "q", "output": "a"}, "alpaca"),
        ({"output": "a"}, "alpaca"),
        ({"conversations": [], "instruction": "q"}, "sharegpt"),
        ({"messages": []}, "messages"),
        ({"question": "q"}, None),
    ],
)
def test_record_format_from_keys(record, expected):
    assert record_format_of(record, resolve_column_map(None)) == expected


def test_record_format_follows_the_column_map():
    assert record_format_of({"question": "q"}, resolve_column_map({"instruction": "question"})) == "alpaca"


@pytest.mark.parametrize(
    ("name", "fmt", "head", "expected"),
    [
        ("a.csv", "auto", b"x", "csv"),
        ("a.TSV", "auto", b"x", "csv"),
        ("a.parquet", "auto", b"", "parquet"),
        ("a.bin", "auto", b"PAR1....", "parquet"),
        ("a.jsonl", "auto", b"{}", "json"),
        ("a.txt", "csv", b"{}", "csv"),
        ("a.csv", "alpaca", b"x", "csv"),  # a row shape does not change the container
    ],
)
def test_container(name, fmt, head, expected):
    assert container_of(Path(name), fmt, head) == expected


def test_binary_sniffing_leaves_text_with_a_few_bad_bytes_alone():
    text = b'{"instruction": "caf\xe9", "output": "x"}\n' + b'{"instruction": "a", "output": "b"}\n' * 20
    assert binary_kind(text) is None
    assert binary_kind(bytes(range(256))) == "binary data, not text"
    assert binary_kind(b"PK\x03\x04rest") == "a zip archive (extract it first)"


@pytest.mark.parametrize(
    ("source", "expected"),
    [("tatsu-lab/alpaca", True), ("HuggingFaceH4/ultrachat_200k", True), ("data/train.jsonl", False),
     ("train.jsonl", False), ("/abs/path", False), ("a/b/c", False), ("alpaca", False)],
)
def test_hub_ids(source, expected):
    assert looks_like_hub_id(source) is expected
