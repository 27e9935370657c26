import random
from functools import partial

import duckdb
import numpy as np
import pandas as pd
import pytest

from reflection_assets.database import connect
from reflection_assets.ingest.near_duplicate_store import SIGNATURES_TABLE, load_other_partitions, store_signatures
from reflection_assets.ingest.near_duplicates import (
    BandBuckets,
    NearDuplicateIndex,
    NearDuplicateSettings,
    shingles,
)
from reflection_assets.ingest.readers import read_dataset
from reflection_assets.ingest.validate import format_summary, validate_file
from reflection_assets.schema import Pair
from support.near_duplicate_rows import SEA, SKY, SKY_AGAIN, write_rows


def test_shingles_ignore_case_and_punctuation():
    assert shingles("Hello, World! Again.", 2) == shingles("hello world again", 2)
    assert sorted(shingles("a b c d", 3)) == [b"a b c", b"b c d"]
    assert shingles("short", 5) == [b"short"]
    assert shingles("?!", 3) == []


def test_reworded_repunctuated_pair_is_removed_with_the_row_it_repeats(tmp_path):
    source = write_rows(tmp_path / "sky.jsonl", [SKY, SEA, SKY_AGAIN])
    result = read_dataset(source, near_duplicates=NearDuplicateIndex())
    assert [pair.instruction for pair in result.accepted] == [SKY["instruction"], SEA["instruction"]]
    assert result.reason_counts() == {"near_duplicate": 1}
    (removed,) = result.rejected
    assert (removed.reason, removed.source_row, removed.location) == ("near_duplicate", 3, "line 3")
    first = result.accepted[0].row_id
    assert f"near-duplicate of row_id {first} ({source} line 1)" in removed.detail
    assert result.rows_read == 3  # every row accepted or rejected


def test_without_an_index_nothing_is_removed_and_exact_copies_stay_duplicates(tmp_path):
    source = write_rows(tmp_path / "sky.jsonl", [SKY, SKY_AGAIN, SKY])
    assert len(read_dataset(source).accepted) == 2
    checked = read_dataset(source, near_duplicates=NearDuplicateIndex())
    assert [row.reason for row in checked.rejected] == ["near_duplicate", "duplicate"]


def test_threshold_and_shingle_size_are_configurable():
    # Three words changed: a rewrite the conservative default keeps, a looser threshold removes.
    rewritten = dict(SKY, output=SKY["output"].replace("looks", "appears").replace("much", "far")
                     .replace(" day", " daytime"))
    for settings, removed in [
        (NearDuplicateSettings(), False),
        (NearDuplicateSettings(threshold=0.6), True),
        (NearDuplicateSettings(threshold=0.6, shingle_size=6), False),  # longer shingles: each change weighs more
    ]:
        index = NearDuplicateIndex(settings)
        assert index.check("a", "first", _text(SKY)) is None
        assert (index.check("b", "second", _text(rewritten)) is not None) is removed, settings
    with pytest.raises(ValueError, match="threshold"):
        NearDuplicateSettings(threshold=0.99)


def test_all_punctuation_rows_are_never_called_copies():
    index = NearDuplicateIndex()
    assert index.check("a", "x", "?!") is None and index.check("b", "y", "...") is None
    assert len(index) == 0


def test_validate_reports_each_near_duplicate_with_the_row_it_repeats(tmp_path):
    source = write_rows(tmp_path / "sky.jsonl", [SKY, SEA, SKY_AGAIN])
    report = validate_file(source)
    assert report["reasons"] == {"near_duplicate": 1}
    assert [row["source_row"] for row in report["near_duplicates"]] == [3]
    assert "line 1" in report["near_duplicates"][0]["detail"]
    assert "near-duplicates within this source (1" in format_summary(report)
    assert validate_file(source, near_duplicates=NearDuplicateSettings(enabled=False))["near_duplicates"] == []


def _text(row):
    return "\n".join([row["instruction"], row.get("input", ""), row["output"]])


def _warehouse(path, rows_by_dataset):
    frames = []
    for dataset, rows in rows_by_dataset.items():
        for i, row in enumerate(rows, 1):
            pair = Pair(row["instruction"], row["output"])
            frames.append({"dataset": dataset, "row_id": pair.content_id(), "source_file": f"{dataset}.jsonl",
                           "source_row": i, "format": "alpaca", "system": "", "history": "[]",
                           "instruction": pair.instruction, "input": "", "output": pair.output})
    with duckdb.connect(str(path)) as conn:
        conn.register("frame", pd.DataFrame(frames))
        conn.execute("CREATE TABLE raw_instructions AS SELECT * FROM frame")
    return path


def _tables(database):
    return partial(connect, database, read_only=True)


def test_other_partitions_rows_are_loaded_and_their_signatures_cached(tmp_path):
    database = _warehouse(tmp_path / "warehouse.duckdb", {"earlier": [SKY], "this": [SEA]})
    index = NearDuplicateIndex()
    assert load_other_partitions(_tables(database), database, "this", index) == 1  # not the partition being read
    match = index.check("new", "here", _text(SKY_AGAIN))
    assert match is not None and match.where == "partition earlier: earlier.jsonl row 1"
    with duckdb.connect(str(database), read_only=True) as conn:
        cached = conn.execute(f"SELECT row_id, scheme FROM {SIGNATURES_TABLE}").fetchall()
    assert cached == [(Pair(SKY["instruction"], SKY["output"]).content_id(), index.settings.scheme())]

    # The second time the signature comes from the cache: overwritten there, it no longer matches.
    with duckdb.connect(str(database)) as conn:
        conn.execute(f"UPDATE {SIGNATURES_TABLE} SET signature = ?", [bytes(4 * index.settings.num_perm)])
    again = NearDuplicateIndex()
    assert load_other_partitions(_tables(database), database, "this", again) == 1
    assert again.check("new", "here", _text(SKY_AGAIN)) is None
    # Another scheme has no cached signatures: they are computed from the text and cached beside.
    other = NearDuplicateIndex(NearDuplicateSettings(shingle_size=4))
    assert load_other_partitions(_tables(database), database, "this", other) == 1
    with duckdb.connect(str(database), read_only=True) as conn:
        assert conn.execute(f"SELECT count(DISTINCT scheme) FROM {SIGNATURES_TABLE}").fetchone()[0] == 2


def test_stored_signatures_round_trip(tmp_path):
    database = _warehouse(tmp_path / "warehouse.duckdb", {"a": [SEA]})
    index = NearDuplicateIndex()
    index.check("sky", "a.jsonl line 1", _text(SKY))
    assert store_signatures(database, index.settings.scheme(), index.signatures_from(0)) == 1
    with duckdb.connect(str(database), read_only=True) as conn:
        blob = conn.execute(f"SELECT signature FROM {SIGNATURES_TABLE} WHERE row_id = 'sky'").fetchone()[0]
    assert len(blob) == 4 * index.settings.num_perm


def test_band_buckets_hold_one_int_a_row_and_a_list_where_rows_share_a_band():
    buckets = BandBuckets(bands=3, rows=2)
    first = np.array([1, 2, 3, 4, 5, 6], dtype=np.uint32)
    shares_middle = np.array([9, 9, 3, 4, 8, 8], dtype=np.uint32)
    keys_first, keys_shares = buckets.keys(first), buckets.keys(shares_middle)
    assert keys_first[1] == keys_shares[1] and keys_first[0] != keys_shares[0]
    buckets.insert(0, keys_first)
    assert buckets.candidates(keys_shares) == {0}
    buckets.insert(1, keys_shares)
    assert buckets.candidates(keys_first) == {0, 1}
    assert buckets.candidates(buckets.keys(np.array([7, 7, 7, 7, 7, 7], dtype=np.uint32))) == set()


def test_one_copy_among_many_unrelated_rows_is_found_and_none_of_the_others():
    rng = random.Random(3)
    words = [f"w{i}" for i in range(4000)]
    rows = [" ".join(rng.choice(words) for _ in range(60)) for _ in range(2000)]
    copy = rows[700].replace(rows[700].split()[30], "changed", 1)
    index = NearDuplicateIndex()
    found = [index.check(str(i), f"line {i}", text) for i, text in enumerate([*rows, copy])]
    assert [i for i, match in enumerate(found) if match] == [2000] and found[2000].row_id == "700"
