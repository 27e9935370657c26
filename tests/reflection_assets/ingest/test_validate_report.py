"""validate_file's report and its text summary."""

import json
from pathlib import Path

from reflection_assets.ingest.validate import format_summary, validate_file

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "ingest"


def test_report_counts_and_reasons():
    report = validate_file(FIXTURES / "bad_alpaca.jsonl")
    assert {k: report[k] for k in ("format", "rows_read", "accepted", "rejected")} == {
        "format": "alpaca",
        "rows_read": 7,
        "accepted": 1,
        "rejected": 6,
    }
    assert report["reasons"] == {
        "missing_field": 2,
        "empty_field": 1,
        "non_string_field": 1,
        "not_an_object": 1,
        "duplicate": 1,
    }
    assert report["file"] == str(FIXTURES / "bad_alpaca.jsonl")
    assert len(report["examples"]) == 5 and report["examples"][0]["location"] == "line 2"
    json.dumps(report)  # JSON-ready


def test_summary_names_totals_reasons_and_rows():
    text = format_summary(validate_file(FIXTURES / "bad_alpaca.jsonl", examples=2))
    first, *rest = text.splitlines()
    assert first.endswith("format alpaca, 7 rows read, 1 accepted, 6 rejected")
    assert "  missing_field     2" in rest
    assert rest[-2:] == ["  line 2: missing_field: no 'output' field", "  line 3: empty_field: 'instruction' is empty"]


def test_clean_file_summary_is_one_line():
    text = format_summary(validate_file(FIXTURES / "messages.jsonl"))
    assert text.endswith("format messages, 2 rows read, 2 accepted, 0 rejected") and "\n" not in text
