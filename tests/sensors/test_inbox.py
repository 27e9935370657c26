import json
import os
import time

import dagster as dg

from reflection_assets.paths import warehouse_path
from reflection_assets.sources import lookup_source
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

    context = dg.build_sensor_context(instance=dagster_instance, cursor=None)
    result = inbox_sensor(context)
    assert [r.partition_key for r in result.run_requests] == ["my_data"]
    assert result.dynamic_partitions_requests[0].partition_keys == ["my_data"]
    config = result.run_requests[0].run_config["ops"]["raw_instructions"]["config"]
    assert config["source"].endswith("My Data.jsonl")
    assert lookup_source(warehouse_path(), "my_data").source.endswith("My Data.jsonl")

    # Same cursor, same file: nothing new.
    again = inbox_sensor(dg.build_sensor_context(instance=dagster_instance, cursor=result.cursor))
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
    from reflection_assets.sources import DatasetSource, register_source

    register_source(database, "data", DatasetSource(str(first)))
    found, cursor = scan_inbox(tmp_path, database, {}, now=time.time())
    assert [k for k, _ in found] == ["data_2"]
    assert json.loads(json.dumps(cursor))
    second.write_text("xy")
    _old(second)
    found_again, _ = scan_inbox(tmp_path, database, cursor, now=time.time())
    assert len(found_again) == 1
