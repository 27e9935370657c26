import pytest

from reflection_assets.demo_data import DEMO_TRAIN_PATH
from reflection_assets.ingest.registry import (
    DatasetSource,
    UnknownDatasetError,
    partition_key_for,
    register_source,
    resolve_source,
)


def test_partition_keys_are_readable_and_safe():
    assert partition_key_for("/in/My File (v2).jsonl") == "my_file_v2"
    assert partition_key_for("tatsu-lab/alpaca") == "alpaca"
    assert partition_key_for("data/folder/") == "folder"


def test_demo_partition_defaults_to_the_embedded_set(tmp_path):
    assert resolve_source(tmp_path / "w.duckdb", "demo").source == str(DEMO_TRAIN_PATH)


def test_registered_source_wins_and_override_wins_over_it(tmp_path):
    db = tmp_path / "w.duckdb"
    register_source(db, "mine", DatasetSource("/x/mine.csv", "csv", {"output": "answer"}))
    assert resolve_source(db, "mine") == DatasetSource("/x/mine.csv", "csv", {"output": "answer"})
    assert resolve_source(db, "mine", DatasetSource("/y.jsonl")).source == "/y.jsonl"


def test_unknown_partition_is_a_clear_error(tmp_path):
    with pytest.raises(UnknownDatasetError, match="no registered source"):
        resolve_source(tmp_path / "w.duckdb", "nope")
