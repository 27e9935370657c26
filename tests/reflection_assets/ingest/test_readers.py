"""read_dataset on each supported source, on small fixtures (tests/fixtures/ingest)."""

import json
from pathlib import Path

import pytest

from reflection_assets.ingest.errors import DatasetReadError
from reflection_assets.ingest.readers import ReadResult, read_dataset
from reflection_assets.ingest.reasons import REASONS
from reflection_assets.schema import RAW_COLUMNS, REJECTED_COLUMNS, Pair, Turn

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "ingest"
CSV_MAP = {"instruction": "q", "input": "ctx", "output": "a"}


def rows_of(result: ReadResult) -> list[tuple[int, str]]:
    """(source_row, "ok" or reason) for every row read, in file order."""
    seen = [(p.source_row, "ok") for p in result.provenance] + [(r.source_row, r.reason) for r in result.rejected]
    return sorted(seen)


def test_alpaca_json_array_and_jsonl_give_the_same_pairs():
    array = read_dataset(FIXTURES / "alpaca.json")
    lines = read_dataset(FIXTURES / "alpaca.jsonl")
    assert array.format == lines.format == "alpaca"
    assert array.accepted == lines.accepted
    assert [p.row_id for p in array.accepted] == [p.content_id() for p in array.accepted]
    translate = array.accepted[1]
    assert translate == Pair("Translate to French.", "Bonjour.", input="Good morning", row_id=translate.row_id)
    assert array.accepted[2].input == ""  # absent input reads as ""
    # JSON arrays count elements from 0, JSONL counts lines from 1
    assert [p.source_row for p in array.provenance] == [0, 1, 2]
    assert [p.source_row for p in lines.provenance] == [1, 2, 3]
    assert {p.source_file for p in lines.provenance} == {str(FIXTURES / "alpaca.jsonl")}


def test_sharegpt_keeps_history_system_and_drops_unanswered_trailing_turns():
    result = read_dataset(FIXTURES / "sharegpt.jsonl")
    assert result.format == "sharegpt" and not result.rejected
    multi, trailing, top_level_system = result.accepted
    assert multi.system == "You are a terse assistant."
    assert multi.history == (Turn("user", "Name a prime number."), Turn("assistant", "7."))
    assert (multi.instruction, multi.output) == ("Another one?", "11.")
    assert (trailing.instruction, trailing.output, trailing.history) == ("Say hi.", "Hi!", ())
    assert top_level_system.system == "Answer in one word."


def test_messages_with_system_prompt():
    result = read_dataset(FIXTURES / "messages.jsonl")
    assert result.format == "messages" and result.rows_read == 2
    first = result.accepted[0]
    assert first.system == "You are a helpful tutor."
    assert [t.role for t in first.history] == ["user", "assistant"]
    assert first.output == "'River' is a noun."


def test_csv_with_column_map_counts_physical_lines():
    result = read_dataset(FIXTURES / "mapped.csv", column_map=CSV_MAP)
    assert result.format == "csv"
    # header is line 1; the second record spans lines 3-4; the empty answer is on line 5
    assert rows_of(result) == [(2, "ok"), (3, "ok"), (5, "empty_field")]
    assert result.accepted[1].input == "Line one\nline two"
    assert result.rejected[0].raw_text == "Empty answer,,,z"
    assert result.rejected[0].detail == "'a' is empty"


def test_csv_missing_mapped_column_is_a_whole_file_error():
    with pytest.raises(DatasetReadError, match=r"mapped\.csv: line 1 \(header\): missing column\(s\) 'answer'"):
        read_dataset(FIXTURES / "mapped.csv", column_map={"instruction": "q", "output": "answer"})
    with pytest.raises(DatasetReadError, match="missing column"):  # identity map: no instruction column
        read_dataset(FIXTURES / "mapped.csv")


def test_tsv_and_crlf_and_bom(tmp_path):
    tsv = tmp_path / "rows.tsv"
    tsv.write_bytes("\ufeffinstruction\toutput\r\nSay yes.\tYes.\r\n".encode())
    assert read_dataset(tsv).accepted[0].output == "Yes."
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_bytes(b'\xef\xbb\xbf{"instruction": "a", "output": "b"}\r\n\r\n{"instruction": "c", "output": "d"}\r\n')
    result = read_dataset(jsonl)
    assert [p.source_row for p in result.provenance] == [1, 3]  # blank line 2 is not a row
    assert result.accepted[1].output == "d"


def test_parquet_with_column_map(tmp_path):
    pd = pytest.importorskip("pandas")
    path = tmp_path / "qa.parquet"
    frame = pd.DataFrame({"q": ["Name a fruit.", "Twice 4?", "Blank"], "a": ["Apple.", "8", ""], "n": [1, 2, 3]})
    frame.to_parquet(path)
    result = read_dataset(path, column_map={"instruction": "q", "output": "a"})
    assert result.format == "parquet"
    assert rows_of(result) == [(0, "ok"), (1, "ok"), (2, "empty_field")]
    assert json.loads(result.rejected[0].raw_text) == {"q": "Blank", "a": "", "n": 3}
    with pytest.raises(DatasetReadError, match="qa.parquet: columns: missing column"):
        read_dataset(path)


def test_parquet_with_messages_column(tmp_path):
    pd = pytest.importorskip("pandas")
    path = tmp_path / "chat.data"  # no telling extension: found by format="parquet"
    messages = [[{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]]
    pd.DataFrame({"messages": messages}).to_parquet(path)
    result = read_dataset(path, format="parquet")
    assert result.accepted[0].output == "Hello."
    assert result.provenance[0].format == "parquet"


def test_explicit_format_fixes_the_row_shape():
    result = read_dataset(FIXTURES / "alpaca.jsonl", format="messages")
    assert result.format == "messages"
    assert {r.reason for r in result.rejected} == {"missing_field"} and not result.accepted


def test_every_kind_of_bad_row_is_kept_with_its_reason():
    result = read_dataset(FIXTURES / "bad_rows.jsonl")
    assert result.rows_read == 12  # 13 lines, one blank
    assert len(result.accepted) == 1
    by_line = {r.source_row: r for r in result.rejected}
    # near_duplicate needs a NearDuplicateIndex (test_near_duplicates.py); every other reason is here
    assert {r.reason for r in result.rejected} == set(REASONS) - {"near_duplicate"}
    assert by_line[2].reason == "invalid_json" and by_line[2].raw_text.startswith('{"messages": [')
    assert by_line[3].reason == "bad_utf8" and "caf\ufffd" in by_line[3].raw_text
    assert by_line[8].reason == by_line[13].reason == "nul_byte"
    assert by_line[10].reason == "unknown_role" and "'tool'" in by_line[10].detail
    assert by_line[12].reason == "duplicate" and "bad_rows.jsonl line 1" in by_line[12].detail
    assert by_line[12].location == "line 12"


def test_bad_alpaca_rows():
    result = read_dataset(FIXTURES / "bad_alpaca.jsonl")
    assert rows_of(result) == [
        (1, "ok"),
        (2, "missing_field"),
        (3, "empty_field"),
        (4, "non_string_field"),
        (5, "missing_field"),
        (6, "not_an_object"),
        (7, "duplicate"),
    ]


def test_frames_have_exactly_the_schema_columns():
    result = read_dataset(FIXTURES / "bad_rows.jsonl")
    accepted = read_dataset(FIXTURES / "sharegpt.jsonl").accepted_frame("chats")
    assert list(accepted.columns) == RAW_COLUMNS
    assert set(accepted["dataset"]) == {"chats"} and accepted["source_row"].dtype == "int64"
    again = [Pair.from_row(row) for _, row in accepted.iterrows()]
    assert [p.content_id() for p in again] == list(accepted["row_id"])  # history survives as JSON
    rejected = result.rejected_frame("bad")
    assert list(rejected.columns) == REJECTED_COLUMNS and len(rejected) == 11
    empty = read_dataset(FIXTURES / "alpaca.json").rejected_frame("x")
    assert list(empty.columns) == REJECTED_COLUMNS and empty["source_row"].dtype == "int64"


def test_a_result_that_loses_rows_cannot_be_built():
    with pytest.raises(ValueError, match="rows_read"):
        ReadResult(accepted=[], provenance=[], rejected=[], format="alpaca", rows_read=1)


def test_folder_reads_supported_files_in_name_order_and_dedupes_across_them(tmp_path):
    (tmp_path / "b.jsonl").write_text(json.dumps({"instruction": "x", "output": "y"}) + "\n")
    (tmp_path / "a.json").write_text(json.dumps([{"instruction": "x", "output": "y"}]))
    (tmp_path / "c.csv").write_text("instruction,output\nq,a\n")
    (tmp_path / ".hidden.jsonl").write_text("not json\n")
    (tmp_path / "notes.txt").write_text("ignored\n")
    result = read_dataset(tmp_path)
    assert result.files == [str(tmp_path / n) for n in ("a.json", "b.jsonl", "c.csv")]
    assert result.format == "mixed" and result.rows_read == 3
    assert [p.format for p in result.provenance] == ["alpaca", "csv"]
    assert result.rejected[0].reason == "duplicate" and "a.json element 0" in result.rejected[0].detail


def test_folder_without_dataset_files(tmp_path):
    (tmp_path / "readme.md").write_text("# nothing here")
    with pytest.raises(DatasetReadError, match="holds no dataset files"):
        read_dataset(tmp_path)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("truncated.json", r"truncated\.json: line 8, column 20: JSON array ends early \(truncated\?\)$"),
        ("not_dataset.json", r"not_dataset\.json: the file is one JSON object, not a dataset"),
        ("number.json", r"number\.json: the file is a number, not a dataset"),
        ("unknown_shape.jsonl", r"unknown_shape\.jsonl: line 1: unrecognised row \(keys 'question', 'answer'\)"),
        ("missing.jsonl", r"missing\.jsonl: no such file or folder"),
    ],
)
def test_whole_file_failures_are_one_line(name, message):
    with pytest.raises(DatasetReadError, match=message) as caught:
        read_dataset(FIXTURES / name)
    assert "\n" not in str(caught.value)


def test_invalid_json_array_names_the_place(tmp_path):
    path = tmp_path / "data.json"
    path.write_text('[\n  {"instruction": "a", "output": "b"}\n  {"instruction": "c", "output": "d"}\n]\n')
    with pytest.raises(DatasetReadError, match=r"data\.json: line 3, column 3: invalid JSON: Expecting ',' delimiter"):
        read_dataset(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (bytes(range(256)) * 4, "binary data"),
        (b"\x89PNG\r\n\x1a\n" + bytes(64), "a PNG image"),
        (b"\x1f\x8b\x08\x00" + bytes(64), "gzip"),
        (b"", "the file is empty"),
        (b"  \n\n", "the file is empty"),
        (b"[]", "holds no rows"),
        (b"1\n2\n", "no row is a JSON object"),
    ],
)
def test_files_that_are_not_datasets(tmp_path, content, message):
    path = tmp_path / "data.jsonl"
    path.write_bytes(content)
    with pytest.raises(DatasetReadError, match=message):
        read_dataset(path)


def test_bad_arguments_are_read_errors():
    with pytest.raises(DatasetReadError, match="unknown format 'xml'"):
        read_dataset(FIXTURES / "alpaca.json", format="xml")
    with pytest.raises(DatasetReadError, match="column map: unknown field"):
        read_dataset(FIXTURES / "alpaca.json", column_map={"answer": "a"})


def test_hub_dataset_is_read_through_load_dataset(monkeypatch):
    datasets = pytest.importorskip("datasets")
    rows = [{"question": "Two plus two?", "answer": "4"}, {"question": "Empty", "answer": ""}]
    calls = []

    def fake_load(name, split):
        calls.append((name, split))
        return datasets.Dataset.from_list(rows)

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    result = read_dataset("someone/qa", column_map={"instruction": "question", "output": "answer"})
    assert calls == [("someone/qa", "train")]
    assert result.format == "hf" and rows_of(result) == [(0, "ok"), (1, "empty_field")]
    assert result.provenance[0].source_file == "someone/qa"


def test_unreachable_hub_is_a_read_error(monkeypatch):
    datasets = pytest.importorskip("datasets")

    def offline(name, split):
        raise ConnectionError(f"Couldn't reach '{name}' on the Hub\n(offline)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    expected = (
        r"^someone/qa: Hugging Face hub, split 'train': "
        r"cannot load dataset: Couldn't reach 'someone/qa' on the Hub \(offline\)$"
    )
    with pytest.raises(DatasetReadError, match=expected):
        read_dataset("someone/qa", format="hf")


def test_progress_counts_every_row_read_accepted_or_rejected():
    seen = []
    result = read_dataset(FIXTURES / "bad_rows.jsonl", progress=lambda done, total: seen.append((done, total)))
    read = len(result.accepted) + len(result.rejected)
    assert seen == [(i, read) for i in range(1, read + 1)]
