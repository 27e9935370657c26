import json
import os
import time

import dagster as dg

from reflection_assets.defs.definitions import defs
from reflection_assets.defs.jobs import run_asset_selection
from reflection_assets.ingest.registry import lookup_source
from reflection_assets.paths import warehouse_path
from sensors.inbox import inbox_sensor, scan_inbox


def _old(path, age=60):
    past = time.time() - age
    os.utime(path, (past, past))


def test_new_complete_file_becomes_a_partition_and_a_run(tmp_path, monkeypatch, dagster_instance):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    monkeypatch.setenv("REFLECTION_INBOX", str(inbox))
    (inbox / "My Data.jsonl").write_text('{"instruction": "a", "output": "b"}\n')
    (inbox / "half.jsonl.part").write_text("{")
    _old(inbox / "My Data.jsonl")

    result = _sensor_tick(dagster_instance)
    assert [r.partition_key for r in result.run_requests] == ["my_data"]
    # The run names every asset of the dataset job (see jobs.run_asset_selection for why).
    assert result.run_requests[0].asset_selection == run_asset_selection(defs.resolve_job_def("dataset_job"))
    assert result.dynamic_partitions_requests[0].partition_keys == ["my_data"]
    assert result.dynamic_partitions_requests[1].partitions_def_name == "seeds"
    assert result.dynamic_partitions_requests[1].partition_keys == ["0"]  # automation trains every arm once
    config = result.run_requests[0].run_config["ops"]["raw_instructions"]["config"]
    assert config["source"].endswith("My Data.jsonl")
    assert lookup_source(warehouse_path(), "my_data").source.endswith("My Data.jsonl")

    # Same cursor, same file: nothing new.
    again = _sensor_tick(dagster_instance, result.cursor)
    assert again.run_requests == []


def test_file_still_being_written_waits_for_a_later_tick(tmp_path):
    (tmp_path / "fresh.jsonl").write_text("{}")
    found, cursor = scan_inbox(tmp_path, tmp_path / "w.duckdb", {}, now=time.time())
    assert found == [] and cursor == {}


def test_changed_file_is_ingested_again_and_name_clash_gets_a_new_key(tmp_path):
    database = tmp_path / "w.duckdb"
    first = tmp_path / "a" / "data.jsonl"
    second = tmp_path / "data.csv"
    first.parent.mkdir()
    first.write_text("{}")
    second.write_text("x")
    _old(first), _old(second)
    from reflection_assets.ingest.registry import DatasetSource, register_source

    register_source(database, "data", DatasetSource(str(first)))
    found, cursor = scan_inbox(tmp_path, database, {}, now=time.time())
    assert [k for k, _ in found] == ["data_2"]
    assert json.loads(json.dumps(cursor))
    second.write_text("xy")
    _old(second)
    found_again, _ = scan_inbox(tmp_path, database, cursor, now=time.time())
    assert len(found_again) == 1


def _sensor_tick(instance, cursor=None):
    return inbox_sensor(dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs))


def test_partial_file_waits_then_becomes_a_partition_once_complete(tmp_path, monkeypatch, dagster_instance):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    monkeypatch.setenv("REFLECTION_INBOX", str(inbox))
    partial = inbox / "big.jsonl"
    partial.write_text('{"instruction": "a", "output": "b"}\n{"instruc')  # a copy still going on
    (inbox / "other.jsonl.part").write_text("{")
    (inbox / ".hidden.jsonl").write_text("{}")
    first = _sensor_tick(dagster_instance)
    assert first.run_requests == [] and first.dynamic_partitions_requests == []

    partial.write_text('{"instruction": "a", "output": "b"}\n{"instruction": "c", "output": "d"}\n')
    _old(partial)
    second = _sensor_tick(dagster_instance, first.cursor)
    assert [r.partition_key for r in second.run_requests] == ["big"]
    assert _sensor_tick(dagster_instance, second.cursor).run_requests == []


def test_duplicate_file_under_another_name_is_skipped(tmp_path, monkeypatch, dagster_instance):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    monkeypatch.setenv("REFLECTION_INBOX", str(inbox))
    text = '{"instruction": "a", "output": "b"}\n'
    (inbox / "data.jsonl").write_text(text)
    _old(inbox / "data.jsonl")
    first = _sensor_tick(dagster_instance)
    assert [r.partition_key for r in first.run_requests] == ["data"]

    (inbox / "data copy.jsonl").write_text(text)  # the same bytes again: its rows would be selected twice
    _old(inbox / "data copy.jsonl")
    second = _sensor_tick(dagster_instance, first.cursor)
    assert second.run_requests == [] and second.dynamic_partitions_requests == []
    assert lookup_source(warehouse_path(), "data_copy") is None
    assert "data copy.jsonl" in "".join(json.loads(second.cursor))  # recorded: not reported again each tick

    (inbox / "data copy.jsonl").write_text(text + '{"instruction": "c", "output": "d"}\n')  # now it differs
    _old(inbox / "data copy.jsonl")
    third = _sensor_tick(dagster_instance, second.cursor)
    assert [r.partition_key for r in third.run_requests] == ["data_copy"]


def test_file_that_escapes_the_inbox_is_refused(tmp_path, monkeypatch, dagster_instance):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    monkeypatch.setenv("REFLECTION_INBOX", str(inbox))
    secret = tmp_path / "elsewhere" / "private.jsonl"
    secret.parent.mkdir()
    secret.write_text('{"instruction": "private", "output": "not yours"}\n')
    (inbox / "looks_fine.jsonl").symlink_to(secret)
    (inbox / "escape.jsonl").symlink_to(os.path.relpath(secret, inbox))
    (inbox / "subdir").symlink_to(secret.parent, target_is_directory=True)
    inner = inbox / "real.jsonl"
    inner.write_text('{"instruction": "a", "output": "b"}\n')
    for path in (secret, inner):
        _old(path)

    result = _sensor_tick(dagster_instance)
    assert [r.partition_key for r in result.run_requests] == ["real"]
    assert lookup_source(warehouse_path(), "looks_fine") is None and lookup_source(warehouse_path(), "escape") is None
